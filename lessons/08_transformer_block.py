# %% [markdown]
# # 08 The transformer block
#
# A transformer block keeps the shape [B, T, D] and changes the content, in two residual branches:
#
#     h = x + Attention(LayerNorm(x))        tokens exchange information (mixes along T)
#     y = h + MLP(LayerNorm(h))              each token is transformed on its own (D -> F -> D)
#
# (pre-LN, as GPT-2 and ViT; the original Transformer put the LayerNorm after the sum.) A model stacks L
# such blocks. Below: one block from `seqjax.nn.blocks` on a [1, 4, 8] input, with the shape at each stage,
# then a `Stack` of 2 blocks.

# %%
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax.nn import count_params
from seqjax.nn.blocks import BlockConfig, Stack, TransformerBlock

B, T, D, N, F = 1, 4, 8, 2, 32
cfg = BlockConfig(d_model=D, num_heads=N, mlp_dim=F, num_kv_heads=None, residual_dropout=0.0,
                  attention_dropout=0.0, pre_ln=True, rope=False, activation="gelu", layer_norm_epsilon=1e-6,
                  attention_implementation="auto")
block = TransformerBlock(cfg, causal=False, cross_attention=False, rngs=nnx.Rngs(0))
x = jnp.asarray(np.random.default_rng(1).standard_normal((B, T, D)), jnp.float32)  # [B, T, D]
print("x [B, T, D] =", x.shape)

# %% [markdown]
# The stages by hand, from the block's own layers.

# %%
a_in = block.ln1(x)
centred = bool(jnp.abs(a_in.mean(-1)).max() < 1e-5)  # LayerNorm centres each token's D features
print("LayerNorm(x)              ", a_in.shape, " mean over D ~ 0:", centred)
att = block.self_attn(a_in, return_weights=True)
print("attention output          ", att.out.shape, " weights [B, N, T, T]", att.weights.shape)
h = x + att.out
print("h = x + attention         ", h.shape)
hidden = block.mlp.activation(block.mlp.fc1(block.ln2(h)))
print("MLP hidden (after GELU)   ", hidden.shape, " (F = 4 D)")
y = h + block.mlp.fc2(hidden)
print("y = h + MLP               ", y.shape)

out = block(x).x
block_diff = float(jnp.max(jnp.abs(out - y)))
print("max |by hand - block(x)| =", block_diff)
print("block parameters =", count_params(block))

# %% [markdown]
# A stack of L = 2 blocks (parameters stacked on a leading [L] axis, run by `lax.scan`) and, with pre-LN,
# a final LayerNorm. The output shape is still [B, T, D]: depth never changes the shape.

# %%
stack = Stack(cfg, 2, causal=False, cross_attention=False, remat=False, rngs=nnx.Rngs(2))
print("stack output [B, T, D] =", stack(x).x.shape, " parameters =", count_params(stack))
print("a stacked kernel, fc1 [L, D, F] =", stack.layers.blocks.mlp.fc1.kernel[...].shape)
