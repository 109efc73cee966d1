# %% [markdown]
# # 03 The recurrent neuron, unrolled
#
# A recurrent neuron reads one step at a time and feeds its own previous output back in:
#
#     Y_t = f(W_x X_t + W_y Y_{t-1} + b),   Y_0 = 0
#
# "Unrolling through time" is just running that line in a loop over t. Below: the loop written by hand in
# NumPy, then the same computation by `seqjax.scan.unroll` with a simple-RNN cell (`jax.lax.scan` inside),
# and their difference. Shapes: X [B, T, D], Y [B, T, H]; the library keeps row vectors, so W_x X_t is
# written X_t @ w_x with w_x [D, H].

# %%
import jax
import jax.numpy as jnp
import numpy as np

from seqjax import cells, scan

np.set_printoptions(precision=4, suppress=True)

B, T, D, H = 1, 4, 2, 3
cell = cells.Cell("rnn", activation="tanh")
params = cell.init(jax.random.key(0), D, H)  # RNNParams(w_x [D, H], w_h [H, H], b [H])
xs = np.array([[[1.0, 0.0], [0.5, -1.0], [0.0, 1.0], [-1.0, 0.5]]], dtype=np.float32)  # [B, T, D]
print("X [B, T, D] =", xs.shape)
print("w_x [D, H] =\n", np.asarray(params.w_x))
print("w_h [H, H] =\n", np.asarray(params.w_h))

# %% [markdown]
# By hand: a Python loop, one step per time step, the previous output fed back.

# %%
w_x, w_h, b = (np.asarray(p, dtype=np.float64) for p in params)
y = np.zeros((B, H))
loop = []
for t in range(T):
    y = np.tanh(xs[:, t] @ w_x + y @ w_h + b)  # Y_t = f(W_x X_t + W_y Y_{t-1} + b)
    loop.append(y)
    print(f"h_{t + 1} =", y[0])
loop = np.stack(loop, axis=1)  # [B, T, H]

# %% [markdown]
# By the library: `scan.unroll` runs the same cell over all T steps in one `lax.scan` (the input product
# X @ w_x is done for all steps at once, outside the loop) and returns every output plus the final state.

# %%
ys, final = scan.unroll(cell, params, jnp.asarray(xs))  # ys [B, T, H], final.h [B, H]
print("scan ys [B, T, H] =", ys.shape)
print(np.asarray(ys[0]))
max_diff = float(np.max(np.abs(np.asarray(ys) - loop)))
print("max |loop - scan| =", max_diff)
print("final state equals the last output:", bool(jnp.array_equal(final.h, ys[:, -1])))
