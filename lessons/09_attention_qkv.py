# %% [markdown]
# # 09 Attention as queries, keys and values: "The big dog"
#
# Each token asks a question (its query q), advertises what it holds (its key k) and offers content (its
# value v), all three linear maps of its embedding: Q = X W_q, K = X W_k, V = X W_v. Token t's output is a
# weighted average of all values, weighted by how well its query matches each key:
#
#     scores = Q K^T / sqrt(K)        [T, T]
#     weights = softmax(scores)       each row sums to 1
#     out = weights V                 [T, K]
#
# Three tokens, hand-chosen 4-dimensional embeddings and projections, every table printed, and the result
# checked against `seqjax.attention.dot_product_attention`.

# %%
import os
import pathlib

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")  # files only: the lessons run headless
import matplotlib.pyplot as plt
import numpy as np

from seqjax import attention

np.set_printoptions(precision=3, suppress=True)
HERE = pathlib.Path(globals().get("__file__", "lessons/09_attention_qkv.py")).resolve().parent
FIGURES = pathlib.Path(os.environ.get("SEQJAX_LESSON_FIGURES", HERE / "figures"))

tokens = ["The", "big", "dog"]
# Embeddings X [T, D]: features (is-determiner, is-adjective, is-noun, size).
X = np.array([[1.0, 0.0, 0.0, 0.0],
              [0.0, 1.0, 0.0, 1.0],
              [0.0, 0.0, 1.0, 0.5]])
# Projections [D, K]. The noun's query looks for adjectives and determiners; the adjective's key answers.
W_q = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
W_k = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
W_v = np.array([[0.1, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])


def show(name, rows, cols, m):
    print(f"{name}")
    print("        " + " ".join(f"{c:>7s}" for c in cols))
    for r, row in zip(rows, m, strict=True):
        print(f"  {r:>5s} " + " ".join(f"{v:7.3f}" for v in row))


# %% [markdown]
# Q, K, V: one row per token.

# %%
Q, K, V = X @ W_q, X @ W_k, X @ W_v  # each [T, K]
cols = ["k0", "k1", "k2"]
show("Q = X W_q", tokens, cols, Q)
show("K = X W_k", tokens, cols, K)
show("V = X W_v", tokens, cols, V)

# %% [markdown]
# Scores: query row t against key column s, scaled by sqrt(K) so the softmax does not saturate as K grows.

# %%
scores = Q @ K.T / np.sqrt(K.shape[1])  # [T, S]
show("scores = Q K^T / sqrt(K)   (row: query, column: key)", tokens, tokens, scores)
weights = np.exp(scores - scores.max(axis=1, keepdims=True))
weights /= weights.sum(axis=1, keepdims=True)
show("weights = softmax(scores) (rows sum to 1)", tokens, tokens, weights)
print("'dog' attends most to:", tokens[int(np.argmax(weights[2]))])
out = weights @ V  # [T, K]
show("out = weights V", tokens, cols, out)

# %% [markdown]
# The library: q, k, v as [B, T, N, K] with B = 1 and N = 1 head.

# %%
as_bt_nk = lambda m: jnp.asarray(m, jnp.float32)[None, :, None, :]  # [T, K] -> [1, T, 1, K]
lib_out, lib_w = attention.dot_product_attention(as_bt_nk(Q), as_bt_nk(K), as_bt_nk(V), return_weights=True)
out_diff = float(np.max(np.abs(np.asarray(lib_out[0, :, 0]) - out)))
weights_diff = float(np.max(np.abs(np.asarray(lib_w[0, 0]) - weights)))
print("max |hand out - library out| =", out_diff)
print("max |hand weights - library weights| =", weights_diff)

# %%
FIGURES.mkdir(parents=True, exist_ok=True)
fig, ax = plt.subplots(figsize=(3, 3))
ax.imshow(weights, cmap="Blues", vmin=0, vmax=1)
ax.set_xticks(range(3), tokens)
ax.set_yticks(range(3), tokens)
ax.set_xlabel("key")
ax.set_ylabel("query")
for i in range(3):
    for j in range(3):
        ax.text(j, i, f"{weights[i, j]:.2f}", ha="center", va="center", fontsize=8)
fig.tight_layout()
fig.savefig(FIGURES / "09_attention_qkv.png", dpi=80)
plt.close(fig)
