# %% [markdown]
# # 02 Words as vectors: "I am learning ."
#
# A network reads numbers, so text goes through three steps: split it into tokens, give each token an id in a
# vocabulary, and turn each id into a vector. The vector can be a one-hot row (V wide, a single 1) or a row
# of a learned embedding table [V, E]; multiplying the one-hot row by the table picks that same row, so an
# embedding lookup is a one-hot matmul without the zeros.

# %%
import jax.numpy as jnp
import numpy as np

from seqjax import embedding
from seqjax.data.tokenize import WordTokenizer, word_split

np.set_printoptions(precision=3, suppress=True)

# %% [markdown]
# Tokenize. `word_split` lower-cases and keeps punctuation as its own token.

# %%
sentence = "I am learning ."
tokens = word_split(sentence)
print("tokens =", tokens)

# %% [markdown]
# Vocabulary. `WordTokenizer.fit` reserves id 0 for padding and id 1 for unknown words, then numbers the
# words by falling frequency in the texts it is fitted on.

# %%
corpus = ["I am learning .", "I am here .", "you are learning fast ."]
tok = WordTokenizer.fit(corpus)
print("vocabulary (id: word) =", dict(enumerate(tok.itos)))
ids, lengths = tok.encode([sentence, "I am learning jax ."])  # "jax" was never seen -> <unk>
print("ids of 'I am learning .' =", ids[0].tolist())
print("ids of 'I am learning jax .' =", ids[1].tolist(), " lengths =", lengths.tolist())
V = len(tok)
print("V =", V)

# %% [markdown]
# One-hot: each token is a V-wide row with one 1. It says which word, nothing about meaning: every pair of
# different words is equally far apart.

# %%
T = int(lengths[0])
one_hot = np.eye(V, dtype=np.float32)[ids[0, :T]]  # [T, V]
print("one-hot [T, V] =", one_hot.shape)
print(one_hot)

# %% [markdown]
# Embedding: a table [V, E] of learned vectors (random here, before training); looking up the ids gives
# [T, E]. The same rows come out of one_hot @ table.

# %%
E = 4
table = jnp.asarray(0.5 * np.random.default_rng(0).standard_normal((V, E)), jnp.float32)  # [V, E]
vectors = embedding.lookup(table, jnp.asarray(ids[0, :T]))  # [T, E]
print("embedding table [V, E] =", table.shape)
print("lookup vectors [T, E] =")
print(np.asarray(vectors))
diff = float(jnp.max(jnp.abs(jnp.asarray(one_hot) @ table - vectors)))
print("max |one_hot @ table - lookup| =", diff)
