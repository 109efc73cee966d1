"""Character-level language modelling on Shakespeare (seqjax/data/shakespeare.py), decoder-only transformer.

Batches: ``tokens`` int32[B, T] and ``targets`` int32[B, T] (tokens shifted left by one). The loss is the mean
next-character cross-entropy in nats per character. ``evaluate`` reports it over the whole validation text
(every non-overlapping window), beside two baselines fitted on the training text: a unigram model (character
frequencies) and an add-one smoothed bigram model, and writes a model sample to ``<workdir>/sample.txt``.

Config fields (``config.data``): ``seq_len`` T; ``max_train_chars`` / ``max_val_chars`` (0 = all; the smoke
variant uses a prefix); ``val_plays`` (tuple of play names, default shakespeare.VAL_PLAYS); ``sample_length``
(characters in sample.txt, default 300).
``config.model``: see seqjax/models/transformers.py ``char_gpt``.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import losses
from seqjax.data import shakespeare
from seqjax.models import transformers


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
    def __init__(self, config):
        self.config = config
        d = config.data
        val_plays = tuple(d.get("val_plays", shakespeare.VAL_PLAYS))
        train, val, self.vocab = shakespeare.load_shakespeare(val_plays=val_plays)
        if d.get("max_train_chars", 0):
            train = train[: d.max_train_chars]
        if d.get("max_val_chars", 0):
            val = val[: d.max_val_chars]
        self.train_ids = self.vocab.encode(train, "train text")
        self.val_ids = self.vocab.encode(val, "validation text")
        self.T = int(d.seq_len)

    def data(self):
        x, y = shakespeare.windows(self.train_ids, self.T)
        vx, vy = shakespeare.windows(self.val_ids, self.T)
        return {"train": {"tokens": x, "targets": y}, "val": {"tokens": vx, "targets": vy}}

    def model(self, rngs):
        return transformers.char_gpt(self.config.model, len(self.vocab), rngs)

    def loss(self, model, batch, key):
        logits = model(batch["tokens"], key=key)  # [B, T, V]
        loss = losses.softmax_cross_entropy(logits, batch["targets"])
        return loss, {"loss": loss, "accuracy": losses.accuracy(logits, batch["targets"])}

    def evaluate(self, model, splits, workdir):
        val, d = splits["val"], self.config.data

        @jax.jit
        def nll_sum(tokens, targets, valid):
            logits = model(tokens).astype(jnp.float32)  # [B, T, V]
            logz = jax.nn.logsumexp(logits, axis=-1)
            picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
            return jnp.sum(jnp.where(valid[:, None], logz - picked, 0.0))

        total, count, B = 0.0, 0, 64
        for i in range(0, len(val["tokens"]), B):
            tokens, targets = val["tokens"][i:i + B], val["targets"][i:i + B]
            n = len(tokens)
            # Pad the last batch to the fixed shape (one compile); padded rows are masked out of the sum.
            valid = np.arange(B) < n
            tokens = np.concatenate([tokens, np.zeros((B - n, tokens.shape[1]), tokens.dtype)])
            targets = np.concatenate([targets, np.zeros((B - n, targets.shape[1]), targets.dtype)])
            total += float(nll_sum(tokens, targets, valid))
            count += n * tokens.shape[1]
        V = len(self.vocab)
        out = {
            "val_nats_per_char": total / count,
            "val_chars": float(count),
            "baseline_unigram_nats": unigram_nats(self.train_ids, self.val_ids, V),
            "baseline_bigram_nats": bigram_nats(self.train_ids, self.val_ids, V),
        }
        prompt = "ROMEO:\n"
        ids = transformers.sample_chars(model, self.vocab.encode(prompt, "prompt"),
                                        length=int(d.get("sample_length", 300)), key=jax.random.PRNGKey(0),
                                        temperature=0.8, top_k=40)
        text = prompt + self.vocab.decode(ids)
        if workdir:
            os.makedirs(workdir, exist_ok=True)
            with open(os.path.join(workdir, "sample.txt"), "w") as f:
                f.write(text)
        return out


def build(config) -> CharLMTask:
    return CharLMTask(config)
