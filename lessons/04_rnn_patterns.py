# %% [markdown]
# # 04 The RNN input/output patterns
#
# The same recurrent cell serves five shapes of problem; what changes is what goes in and what is read out:
#
# | pattern | in | out | example |
# |---|---|---|---|
# | one-to-one | [B, D] | [B, H] | one step, no sequence (a plain layer) |
# | one-to-many | [B, D] | [B, T, H] | image -> caption, seed -> generated series |
# | many-to-one | [B, T, D] | [B, H] | sentence -> sentiment |
# | many-to-many, aligned | [B, T, D] | [B, T, H] | tagging each word, next-day forecast every day |
# | many-to-many, encoder-decoder | int[B, S] | [B, T, V] | translation, spelling -> pronunciation |
#
# All of them below with a GRU cell from `seqjax.cells` and the functions of `seqjax.patterns`.

# %%
import jax
import jax.numpy as jnp
import numpy as np

from seqjax import cells, patterns

B, T, D, H = 2, 5, 3, 4
cell = cells.Cell("gru")
params = cell.init(jax.random.key(0), D, H)
rng = np.random.default_rng(0)  # inputs from NumPy: only the model's parameters come from jax.random
xs = jnp.asarray(rng.standard_normal((B, T, D)), jnp.float32)  # [B, T, D]
lengths = jnp.array([5, 3])  # the second sequence is right-padded after 3 steps

# %% [markdown]
# One-to-one: a single step of the cell from the zero state.

# %%
_, y = cell(params, cell.zero_state(params, B), xs[:, 0])
print("one-to-one:              in", xs[:, 0].shape, "-> out", y.shape)

# %% [markdown]
# One-to-many: one input, T outputs. `feedback="fixed"` feeds the same input at every step;
# `feedback="output"` would feed each output back (its readout must then map H back to D).

# %%
outs, _ = patterns.one_to_many(cell, params, xs[:, 0], T, feedback="fixed")
print("one-to-many:             in", xs[:, 0].shape, "-> out", outs.shape)

# %% [markdown]
# Many-to-one: read the whole sequence, keep one vector: the output at each sequence's last valid step
# ("last"), or the mean / max over its valid steps.

# %%
last = patterns.many_to_one(cell, params, xs, lengths=lengths, method="last")
print("many-to-one:             in", xs.shape, "-> out", last.shape)

# %% [markdown]
# Many-to-many, aligned: one output per input step, zero on padding, with the mask a loss needs.

# %%
ys, valid = patterns.many_to_many(cell, params, xs, lengths=lengths)
print("many-to-many (aligned):  in", xs.shape, "-> out", ys.shape, " valid mask", valid.shape)
print("valid =", valid.astype(int).tolist())

# %% [markdown]
# Many-to-many, encoder-decoder: the encoder reads S source tokens into a memory; the decoder writes T
# target tokens, each from the previous one (teacher forcing during training: the true previous token),
# optionally attending over the memory. Source and target lengths need not match.

# %%
S, T_out, V_src, V_tgt, E = 6, 4, 11, 13, 8
spec = patterns.Seq2SeqSpec(cell=cell, attention="dot")
s2s = patterns.init_seq2seq(jax.random.key(2), spec, V_src, V_tgt, E, H)
src = jnp.asarray(rng.integers(3, V_src, (B, S)), jnp.int32)  # int[B, S]
tgt_in = jnp.asarray(rng.integers(3, V_tgt, (B, T_out)), jnp.int32)  # int[B, T] (BOS first)
# jit compiles the whole encoder-decoder once (the spec is static: it says which cell and attention).
teacher_forcing = jax.jit(patterns.teacher_forcing, static_argnums=0, static_argnames="return_attention")
logits, weights = teacher_forcing(spec, s2s, src, jnp.array([6, 4]), tgt_in, return_attention=True)
print("encoder-decoder:         in", src.shape, "+", tgt_in.shape, "-> out", logits.shape,
      " attention", weights.shape)
