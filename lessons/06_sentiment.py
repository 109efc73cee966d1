# %% [markdown]
# # 06 Sentiment analysis: many-to-one
#
# Sentiment analysis reads a sentence and outputs one label (negative / positive): the many-to-one
# pattern. The pipeline: tokenize, look up embeddings, run a recurrent layer, pool its outputs to one
# vector, and map it to two logits whose softmax gives the probabilities. The data are real movie-review
# sentences shipped with seqjax (10,568 labelled by human raters). A real run trains for minutes
# (`experiments/sentiment_rnn.py`, 78% test accuracy); here a small model trains for a few dozen steps,
# enough to see the loss fall.

# %%
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax import losses
from seqjax.data import sentiment
from seqjax.data.tokenize import WordTokenizer
from seqjax.models.rnn_classifier import RNNClassifier

splits = sentiment.load_polarity_splits(seed=0)
texts, labels = splits["train"]
texts, labels = texts[:1024], labels[:1024]  # a small slice keeps the lesson in seconds
tok = WordTokenizer.fit(texts, min_count=2)
print("training sentences =", len(texts), " vocabulary V =", len(tok))
print("example:", repr(texts[0]), "label", int(labels[0]))

# %% [markdown]
# Tokenize: ids int[B, T], right-padded with 0, and each sentence's length int[B] so the model reads only
# the valid steps.

# %%
ids, lengths = tok.encode(texts, max_len=24)
print("ids [B, T] =", ids.shape, " first row:", ids[0].tolist())
print("lengths [B] (first 8) =", lengths[:8].tolist())

# %% [markdown]
# The model: embedding [V, E] -> GRU (H) -> mean of the valid outputs [B, H] -> Dense -> logits [B, 2].

# %%
model = RNNClassifier(len(tok), 2, tok.unk_id, embed_dim=32, hidden_size=32, cell="gru", pool="mean",
                      rngs=nnx.Rngs(0))
graphdef, params = nnx.split(model)


def loss_fn(params, ids, lengths, labels):
    logits = nnx.merge(graphdef, params)(ids, lengths)  # [B, 2]
    return losses.softmax_cross_entropy(logits, labels)


eval_loss = jax.jit(loss_fn)


@jax.jit
def sgd_step(params, ids, lengths, labels, lr):
    loss, grads = jax.value_and_grad(loss_fn)(params, ids, lengths, labels)
    return jax.tree.map(lambda p, g: p - lr * g, params, grads), loss


# %% [markdown]
# A few steps of plain gradient descent on minibatches of 128.

# %%
data = jnp.asarray(ids), jnp.asarray(lengths), jnp.asarray(labels)
probe = tuple(a[:128] for a in data)  # a fixed batch of the training shape: one compiled evaluation
first_loss = float(eval_loss(params, *probe))
rng = np.random.default_rng(0)
for _ in range(60):
    batch = rng.choice(len(texts), 128, replace=False)
    params, loss = sgd_step(params, *(a[batch] for a in data), 1.0)
last_loss = float(eval_loss(params, *probe))
print(f"loss on 128 training sentences: before = {first_loss:.4f}, after 60 steps = {last_loss:.4f}")

# %% [markdown]
# Probabilities for new sentences: softmax of the logits, P(negative), P(positive).

# %%
model = nnx.merge(graphdef, params)
examples = ["a wonderful , moving film .", "a dull and boring mess .", "the plot is predictable but fun ."]
ex_ids, ex_lengths = tok.encode(examples)
probs = np.asarray(jax.nn.softmax(model(jnp.asarray(ex_ids), jnp.asarray(ex_lengths)), axis=-1))
for text, p in zip(examples, probs, strict=True):
    print(f"P(neg), P(pos) = {p[0]:.3f}, {p[1]:.3f}   {text!r}")
