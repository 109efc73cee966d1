# %% [markdown]
# # 12 The transformer types
#
# The same block, three arrangements:
#
# * encoder only (BERT): bidirectional, reads a whole text; with a pooled head it classifies it
#   (`TransformerClassifier`: tokens [B, T] -> logits [B, C]);
# * decoder only (GPT): causal, predicts the next token at every position (`GPT`: [B, T] -> [B, T, V]);
# * encoder-decoder (the original Transformer, translation): the encoder reads the source, the causal
#   decoder writes the target and cross-attends to the source (`EncoderDecoder`: [B, S] + [B, T] ->
#   [B, T, V_tgt]).
#
# Tiny ones from `seqjax.models`, their parameter counts and output shapes.

# %%
import jax.numpy as jnp
from flax import nnx

from seqjax.models.encoder import TransformerClassifier
from seqjax.models.encoder_decoder import EncoderDecoder
from seqjax.models.gpt import GPT
from seqjax.nn import count_params

kw = dict(d_model=8, num_heads=2, mlp_dim=32)  # the block of lesson 08
V, C, B, S, T = 50, 2, 2, 6, 5
src = jnp.arange(B * S).reshape(B, S) % V  # int[B, S]
tgt = (jnp.arange(B * T).reshape(B, T) + 3) % V  # int[B, T]

bert = TransformerClassifier(V, C, num_layers=2, max_len=16, rngs=nnx.Rngs(0), **kw)
gpt = GPT(V, num_layers=2, max_len=16, rngs=nnx.Rngs(0), **kw)
seq2seq = EncoderDecoder(V, V, 0, 1, 2, num_encoder_layers=2, num_decoder_layers=2, max_src_len=16,
                         max_tgt_len=16, rngs=nnx.Rngs(0), **kw)

shapes = {
    "encoder (BERT-style classifier)": bert(src, jnp.array([6, 4])).shape,
    "decoder (GPT)": gpt(tgt).shape,
    "encoder-decoder": seq2seq(src, jnp.array([6, 4]), tgt).shape,
}
params = {"encoder (BERT-style classifier)": count_params(bert), "decoder (GPT)": count_params(gpt),
          "encoder-decoder": count_params(seq2seq)}
for name in shapes:
    print(f"{name:32s} parameters = {params[name]:6d}   output = {shapes[name]}")
