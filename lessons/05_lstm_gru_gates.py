# %% [markdown]
# # 05 LSTM and GRU gates
#
# A plain RNN overwrites its state at every step, so gradients through long sequences vanish. Gated cells
# decide, per unit and per step, how much to keep and how much to write:
#
# LSTM (gates stacked i, f, g, o, as PyTorch):
#
#     i = sigmoid(.)  input gate: how much of the candidate to write
#     f = sigmoid(.)  forget gate: how much of the old cell state c to keep
#     g = tanh(.)     candidate values
#     o = sigmoid(.)  output gate: how much of tanh(c) to show as h
#     c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)
#
# GRU (gates r, z, n):
#
#     r = sigmoid(.)  reset: how much of h_{t-1} the candidate sees
#     z = sigmoid(.)  update: how much of h_{t-1} to keep
#     n = tanh(W_in x + b_in + r * (W_hn h + b_hn))   candidate
#     h_t = (1 - z) * n + z * h_{t-1}
#
# Each "(.)" is x_t @ w_x + h_{t-1} @ w_h + b for that gate's slice of the stacked weights. One step of
# each for a tiny input, gates printed, and h checked against `seqjax.cells`.

# %%
import jax
import jax.numpy as jnp
import numpy as np

from seqjax import cells

np.set_printoptions(precision=4, suppress=True)
D, H = 2, 3
x = jnp.array([[1.0, -0.5]])  # x_1 [B, D], B = 1
sigmoid = jax.nn.sigmoid

# %% [markdown]
# LSTM. The forget-gate bias starts at 1, so f starts near sigmoid(1) = 0.73: remember by default.

# %%
lstm = cells.Cell("lstm")
p = lstm.init(jax.random.key(0), D, H)  # w_x [D, 4H], w_h [H, 4H], b [4H]
state = lstm.zero_state(p, 1)._replace(c=jnp.full((1, H), 0.5))  # start from a non-zero cell state
pre = x @ p.w_x + state.h @ p.w_h + p.b[None, :]  # [B, 4H] gate pre-activations
pi, pf, pg, po = jnp.split(pre, 4, axis=-1)
i, f, g, o = sigmoid(pi), sigmoid(pf), jnp.tanh(pg), sigmoid(po)
c = f * state.c + i * g
h = o * jnp.tanh(c)
for name, val in (("i", i), ("f", f), ("g", g), ("o", o), ("c_1", c), ("h_1", h)):
    print(f"LSTM {name:3s} =", np.asarray(val[0]))
new_state, h_lib = lstm(p, state, x)
lstm_diff = float(jnp.max(jnp.abs(h - h_lib)) + jnp.max(jnp.abs(c - new_state.c)))
print("LSTM max |hand - seqjax.cells| =", lstm_diff)

# %% [markdown]
# GRU. No separate cell state: z interpolates between the old h and the candidate n.

# %%
gru = cells.Cell("gru")
q = gru.init(jax.random.key(1), D, H)  # w_x [D, 3H], w_h [H, 3H], b_x, b_h [3H]
h0 = jnp.full((1, H), 0.5)
xp = x @ q.w_x + q.b_x[None, :]  # [B, 3H] input half of the three gates
hp = h0 @ q.w_h + q.b_h[None, :]  # [B, 3H] recurrent half
r = sigmoid(xp[:, :H] + hp[:, :H])
z = sigmoid(xp[:, H:2 * H] + hp[:, H:2 * H])
n = jnp.tanh(xp[:, 2 * H:] + r * hp[:, 2 * H:])
h1 = (1 - z) * n + z * h0
for name, val in (("r", r), ("z", z), ("n", n), ("h_1", h1)):
    print(f"GRU {name:3s} =", np.asarray(val[0]))
_, h1_lib = gru(q, cells.HiddenState(h0), x)
gru_diff = float(jnp.max(jnp.abs(h1 - h1_lib)))
print("GRU max |hand - seqjax.cells| =", gru_diff)
