# %% [markdown]
# # 10 Multi-head attention
#
# One attention head computes one weighting of the tokens. Multi-head attention runs N heads side by side,
# each on its own K = D / N wide slice of projected queries, keys and values, so one head can follow syntax
# while another follows meaning; the N outputs are concatenated back to N * K = D and mixed by an output
# projection W_o. Below: D = 8, N = 2, K = 4, by hand and by `seqjax.attention.multi_head_attention`.

# %%
import jax
import jax.numpy as jnp
import numpy as np

from seqjax import attention

np.set_printoptions(precision=3, suppress=True)
B, T, D, N = 1, 3, 8, 2
p = attention.init_multi_head(jax.random.key(0), D, N)  # wq [D, N, K], wk, wv [D, N, K], wo [N, K, D]
K = p.wq.shape[-1]
x = jnp.asarray(np.random.default_rng(1).standard_normal((B, T, D)), jnp.float32)  # [B, T, D]
print("D, N, K =", D, N, K, " wq [D, N, K] =", p.wq.shape, " wo [N, K, D] =", p.wo.shape)

# %% [markdown]
# Split into heads: project to [B, T, D] and reshape the last axis into N heads of K.

# %%
q = (x @ p.wq.reshape(D, N * K) + p.bq.reshape(N * K)[None, None, :]).reshape(B, T, N, K)  # [B, T, N, K]
k = (x @ p.wk.reshape(D, N * K) + p.bk.reshape(N * K)[None, None, :]).reshape(B, T, N, K)
v = (x @ p.wv.reshape(D, N * K) + p.bv.reshape(N * K)[None, None, :]).reshape(B, T, N, K)
print("q, k, v [B, T, N, K] =", q.shape)

# %% [markdown]
# Each head attends on its own: its own [T, T] weights.

# %%
heads = []
for n in range(N):
    scores = q[0, :, n] @ k[0, :, n].T / np.sqrt(K)  # [T, T]
    w = jax.nn.softmax(scores, axis=-1)
    print(f"head {n} weights [T, T] =\n", np.asarray(w))
    heads.append(w @ v[0, :, n])  # [T, K]

# %% [markdown]
# Concatenate the heads ([T, N * K] = [T, D]) and apply the output projection.

# %%
concat = jnp.concatenate(heads, axis=-1)  # [T, N * K]
print("concatenated heads [T, N * K] =", concat.shape)
y = concat @ p.wo.reshape(N * K, D) + p.bo[None, :]  # [T, D]
y_lib = attention.multi_head_attention(p, x)  # [B, T, D]
mha_diff = float(jnp.max(jnp.abs(y - y_lib[0])))
print("output [B, T, D] =", y_lib.shape)
print("max |by hand - multi_head_attention| =", mha_diff)
