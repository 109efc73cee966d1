# %% [markdown]
# # 07 The embedding space
#
# An embedding table gives every word a vector [E]; training moves the vectors so that words used the same
# way end up pointing the same way. Two tools to look at the space: cosine similarity
# cos(a, b) = a . b / (|a| |b|) (1 = same direction, 0 = unrelated, -1 = opposite), and PCA, which projects
# the E-dimensional vectors onto the two directions of largest spread so they can be plotted.
#
# The tiny model: the mean of a sentence's word vectors -> Dense -> 2 logits, trained for 100
# full-batch steps on movie-review sentiment. Sentiment is the only signal it learns from, so the space it
# learns separates positive words from negative ones.

# %%
import os
import pathlib

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")  # files only: the lessons run headless
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from seqjax import losses, patterns
from seqjax.data import sentiment
from seqjax.data.tokenize import WordTokenizer
from seqjax.nn import Dense, Embedding

np.set_printoptions(precision=3, suppress=True)
HERE = pathlib.Path(globals().get("__file__", "lessons/07_embedding_space.py")).resolve().parent
FIGURES = pathlib.Path(os.environ.get("SEQJAX_LESSON_FIGURES", HERE / "figures"))

texts, labels = sentiment.load_polarity_splits(seed=0)["train"]
texts, labels = texts[:3000], labels[:3000]  # a slice keeps the lesson in seconds
tok = WordTokenizer.fit(texts, min_count=3)
ids, lengths = tok.encode(texts, max_len=32)
E = 16
print("sentences =", len(texts), " V =", len(tok), " E =", E)


class BagOfEmbeddings(nnx.Module):
    """tokens int[B, T], lengths int[B] -> logits [B, 2]: the mean of the valid words' vectors, then Dense."""

    def __init__(self, V: int, E: int, *, rngs: nnx.Rngs):
        self.embed = Embedding(V, E, init_scale=0.1, rngs=rngs)
        self.head = Dense(E, 2, axes=("embed", "classes"), rngs=rngs)

    def __call__(self, tokens, lengths):
        return self.head(patterns.pool(self.embed(tokens), lengths=lengths, method="mean"))


graphdef, params = nnx.split(BagOfEmbeddings(len(tok), E, rngs=nnx.Rngs(0)))
data = jnp.asarray(ids), jnp.asarray(lengths), jnp.asarray(labels)


@jax.jit
def step(params, lr):
    def loss_fn(params):
        return losses.softmax_cross_entropy(nnx.merge(graphdef, params)(*data[:2]), data[2])

    loss, grads = jax.value_and_grad(loss_fn)(params)
    # Sign descent: every parameter moves by lr against its gradient's sign, so the rare words' rows (whose
    # gradients are tiny) learn as fast as the head; rows of words absent from the data do not move.
    return jax.tree.map(lambda p, g: p - lr * jnp.sign(g), params, grads), loss


for i in range(100):
    params, loss = step(params, 0.01)
    if i in (0, 99):
        print(f"step {i + 1:3d} loss = {float(loss):.4f}")

# %% [markdown]
# Cosine similarity between a few word vectors of the trained table.

# %%
table = np.asarray(nnx.merge(graphdef, params).embed.table[...])  # [V, E]
words = ["good", "great", "fun", "beautiful", "bad", "boring", "dull", "worst"]
vecs = table[[tok.stoi[w] for w in words]]  # [8, E]
unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
cosine = unit @ unit.T  # [8, 8]
print("cosine similarity")
print("           " + " ".join(f"{w[:8]:>8s}" for w in words))
for w, row in zip(words, cosine, strict=True):
    print(f"{w:>10s} " + " ".join(f"{v:8.3f}" for v in row))
print("cos(good, great) =", round(float(cosine[0, 1]), 3), " cos(good, bad) =", round(float(cosine[0, 4]), 3))

# %% [markdown]
# PCA: centre the vectors and project them on the top two right-singular vectors.

# %%
centred = vecs - vecs.mean(axis=0)
_, sv, vt = np.linalg.svd(centred, full_matrices=False)
coords = centred @ vt[:2].T  # [8, 2]
explained = sv[:2] ** 2 / np.sum(sv ** 2)
print("PCA explained variance (PC1, PC2) =", explained)
for w, (a, b) in zip(words, coords, strict=True):
    print(f"  {w:>10s}  PC1 = {a:+.3f}  PC2 = {b:+.3f}")

# %%
FIGURES.mkdir(parents=True, exist_ok=True)
fig, ax = plt.subplots(figsize=(4, 3))
ax.scatter(coords[:, 0], coords[:, 1], s=10)
for w, (a, b) in zip(words, coords, strict=True):
    ax.annotate(w, (a, b), fontsize=8)
ax.set_xlabel("PC1")
ax.set_ylabel("PC2")
fig.tight_layout()
fig.savefig(FIGURES / "07_embedding_space.png", dpi=80)
plt.close(fig)
