# %% [markdown]
# # 11 Bidirectional vs causal attention
#
# An encoder (BERT) lets every token see every other token: bidirectional. A decoder that generates text
# (GPT) must not see the future, so token t may attend only to positions s <= t: a causal mask, the lower
# triangle. Masks in seqjax are bool, True = may attend, shaped to broadcast against [B, N, T, S].

# %%
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax import attention, masks
from seqjax.models.encoder import Encoder
from seqjax.models.gpt import GPT

T = 4
causal = masks.causal_mask(T)  # [1, 1, T, T]
print("causal mask [1, 1, T, T] =", causal.shape)
print(np.asarray(causal[0, 0]).astype(int))
valid = jnp.array([[True, True, True, False]])  # one sequence of 3 tokens, right-padded to T = 4
padding = masks.padding_mask(valid)  # [B, 1, 1, T]: every query may see every valid key
print("bidirectional (padding) mask, broadcast to [T, T]:")
print(np.asarray(jnp.broadcast_to(padding[0, 0], (T, T))).astype(int))
print("causal AND padding:")
print(np.asarray(masks.combine_masks(causal, padding)[0, 0]).astype(int))

# %% [markdown]
# Why the mask matters, by a Jacobian: how much output t moves when input s moves, for causal attention.
# The entries above the diagonal are exactly zero.

# %%
x = jnp.asarray(np.random.default_rng(0).standard_normal((1, T, 1, 4)), jnp.float32)  # [B, T, N, K]
f = lambda x: attention.dot_product_attention(x, x, x, causal=True, implementation="xla_autodiff")
jac = jax.jit(jax.jacobian(f))(x)  # [B, T, N, K, B, T, N, K]
sensitivity = jnp.sqrt(jnp.sum(jac[0, :, 0, :, 0, :, 0, :] ** 2, axis=(1, 3)))  # [T (output), T (input)]
print("|d out_t / d x_s| (row t, column s) =")
print(np.asarray(sensitivity))
print("above the diagonal max =", float(jnp.max(jnp.triu(sensitivity, 1))))

# %% [markdown]
# The same with whole models: change the LAST token and compare the outputs at the earlier positions. The
# GPT (causal) gives the same outputs there; the encoder (bidirectional) changes all of them.

# %%
kw = dict(d_model=8, num_heads=2, num_layers=2, mlp_dim=32, max_len=16)  # the sizes of lessons 08, 12
gpt = GPT(50, rngs=nnx.Rngs(0), **kw)
enc = Encoder(50, rngs=nnx.Rngs(0), **kw)
a = jnp.array([[3, 7, 5, 9]])
b = a.at[0, -1].set(11)  # only the last token differs
gpt_change = jnp.max(jnp.abs(gpt(a) - gpt(b)), axis=-1)[0]  # per position [T]
enc_change = jnp.max(jnp.abs(enc(a) - enc(b)), axis=-1)[0]
print("GPT (causal) max change per position     =", np.asarray(gpt_change))
print("Encoder (bidirectional) change per position =", np.asarray(enc_change))
causal_change_before_last = float(jnp.max(gpt_change[:-1]))
print("causal output change before the last token =", causal_change_before_last)
