"""Masked-language-model pretraining (BERT-style) in the vocabulary of the sentiment task, for fine-tuning.

Text (no labels anywhere): the training sentences of the polarity corpus's split (`split_seed`; never its val
or test sentences), and with `sources="mr,shakespeare"` also the speeches of Shakespeare's 38 plays
(`seqjax.data.shakespeare`, speaker names dropped), cut into windows of at most `max_len` words. Words are
ids of THE sentiment vocabulary (`tasks.sentiment.polarity_data`: fitted on the same training sentences with
the same `min_count`), so a pretrained encoder's embedding rows mean the words a sentiment classifier reads;
words outside it (most of Shakespeare's rarer ones) are <unk>, which is input context but never a target.

Objective (`seqjax.corruption.mlm_corrupt`): each valid non-special word is a target with probability
`rate`; targets become [MASK] (80%), a random word (10%) or stay (10%); the loss is the cross-entropy at the
targets only. Validation (`val`): the polarity split's validation sentences, masked with a fixed key so the
figure is comparable between evaluations. The model is `seqjax.models.masked_lm.MaskedLM`; fine-tune with
experiments/sentiment_transformer.py:pretrained (train.init_from + train.init_from_params="encoder").
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import losses
from seqjax.corruption import mlm_corrupt
from seqjax.data import shakespeare
from seqjax.data.tokenize import pad_sequences, word_split
from seqjax.masks import lengths_to_mask
from seqjax.task import Figure, predict
from seqjax.tasks.sentiment import polarity_data

SOURCES = ("mr", "shakespeare")
EVAL_KEY_SEED = 0  # the fixed masking of every evaluation


@functools.cache
def _shakespeare_speeches() -> tuple[str, ...]:
    return tuple(shakespeare.speeches(shakespeare.load_plays()))


def _shakespeare_windows(T: int, limit: int) -> list[list[str]]:
    """The first `limit` (0 = all) windows of at most T words of the speeches, in play order."""
    out = []
    for speech in _shakespeare_speeches():
        out += windows([word_split(speech)], T)
        if limit and len(out) >= limit:
            return out[:limit]
    return out


def windows(token_lists, T: int) -> list[list[str]]:
    """Each token list cut into consecutive windows of at most T tokens (the last one shorter)."""
    return [toks[i:i + T] for toks in token_lists for i in range(0, len(toks), T)]


class MaskedLMTask:
    """Arguments (config.data): split_seed, min_count, max_train as for the sentiment task (they fix the
    vocabulary and the MR sentences); max_len words per sequence; sources, comma-separated of "mr",
    "shakespeare"; max_other: at most this many sequences from the non-MR sources (0 = all); max_eval
    validation sentences (0 = all); rate, the masking rate."""

    HEADLINE = (Figure("val_masked_accuracy", "val masked-word accuracy", "higher", unit="%",
                       baselines=(("val_unigram_accuracy", "most frequent word"),)),
                Figure("val_masked_nats", "val masked-word loss", "lower", unit=" nats",
                       baselines=(("val_unigram_nats", "unigram"),)))

    def __init__(self, *, split_seed: int = 0, min_count: int = 1, max_train: int = 0, max_len: int = 50,
                 sources: str = "mr,shakespeare", max_other: int = 0, max_eval: int = 0, rate: float = 0.15):
        """The config keys (arguments without a default come from the data).

        Args:
            split_seed: seed of the polarity corpus's 80/10/10 split (as the sentiment task's).
            min_count: training words seen fewer times become <unk> (as the sentiment task's).
            max_train: use only the first N polarity training sentences, for text and vocabulary (0 = all).
            max_len: T, words per sequence (longer sentences and speeches are cut into windows).
            sources: comma-separated text sources, of "mr" (the polarity training sentences) and
                "shakespeare" (the plays' speeches).
            max_other: at most this many sequences from the sources other than "mr" (0 = all).
            max_eval: use only the first N validation sentences (0 = all).
            rate: probability that a word is a target (then 80% [MASK], 10% random, 10% unchanged).
        """
        names = [s.strip() for s in sources.split(",") if s.strip()]
        bad = [s for s in names if s not in SOURCES]
        if bad or not names:
            raise ValueError(f"sources: expected a comma-separated subset of {SOURCES}, got {sources!r}")
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"rate: must lie in (0, 1], got {rate}")
        raw, self.tokenizer = polarity_data(split_seed, min_count, max_train, max_eval)
        self.rate, self.T = float(rate), int(max_len)
        texts = {"mr": [word_split(t) for t in raw["train"][0]]} if "mr" in names else {}
        if "shakespeare" in names:
            texts["shakespeare"] = _shakespeare_windows(self.T, max_other)
        self.counts = {k: len(v) for k, v in texts.items()}
        train = [self.tokenizer.tokens_to_ids(w) for seqs in texts.values() for w in windows(seqs, self.T)]
        val = [self.tokenizer.tokens_to_ids(w) for w in windows(map(word_split, raw["val"][0]), self.T)]
        self._splits = {}
        for name, seqs in (("train", train), ("val", val)):
            ids, lengths = pad_sequences(seqs, self.T, self.tokenizer.pad_id)
            self._splits[name] = {"tokens": ids, "lengths": lengths}
        self.padded_lengths = {"tokens": "lengths"}

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def data(self):
        return self._splits

    def model_args(self):
        return {"vocab_size": self.vocab_size}

    def corrupt(self, key, tokens, lengths, mask_id: int):
        """(corrupted tokens, targets bool[B, T]) of a batch; <pad> and <unk> are never targets."""
        valid = lengths_to_mask(lengths, tokens.shape[1])
        return mlm_corrupt(key, tokens, valid, rate=self.rate, mask_id=mask_id, vocab_size=self.vocab_size,
                           special_ids=(self.tokenizer.pad_id, self.tokenizer.unk_id))

    def target_capacity(self, B: int, T: int) -> int:
        """K, the rows of a [B, T] batch the loss scores: the mean number of targets if every position were
        valid plus 4 standard deviations (a batch exceeds it with probability ~3e-5; its surplus targets
        are then left out of that step's loss and counted in the metric `targets_cut`)."""
        n = B * T
        return int(min(n, np.ceil(self.rate * n + 4.0 * np.sqrt(n * self.rate * (1.0 - self.rate))) + 1))

    def loss(self, model, batch, key):
        k_mask, k_model = jax.random.split(key) if key is not None else (jax.random.key(EVAL_KEY_SEED), None)
        tokens, lengths = batch["tokens"], batch["lengths"]
        B, T = tokens.shape
        corrupted, targets = self.corrupt(k_mask, tokens, lengths, model.mask_id)
        h = model.hidden(corrupted, lengths, key=k_model).reshape(B * T, -1)  # [B * T, D]
        K = self.target_capacity(B, T)
        (rows,) = jnp.nonzero(targets.reshape(-1), size=K, fill_value=0)  # [K]: the targets' rows first
        n = jnp.sum(targets)
        scored = jnp.arange(K) < n  # [K]: real targets (the fill rows repeat row 0)
        logits = model.head(h[rows])  # [K, V]
        labels = tokens.reshape(-1)[rows]
        loss = losses.softmax_cross_entropy(logits, labels, where=scored)
        return loss, {"masked_accuracy": losses.accuracy(logits, labels, where=scored),
                      "targets": n.astype(jnp.float32),
                      "targets_cut": jnp.maximum(n - K, 0).astype(jnp.float32)}

    def evaluate(self, model, splits, workdir: str) -> dict[str, float]:
        """Masked-word accuracy and loss on the validation sentences (fixed masks), beside a unigram model of
        the training words (its accuracy: always the most frequent word)."""
        val = splits["val"]
        key = jax.random.key(EVAL_KEY_SEED)

        def fn(m, b):
            corrupted, targets = self.corrupt(key, b["tokens"], b["lengths"], m.mask_id)
            logp = jax.nn.log_softmax(m(corrupted, b["lengths"]).astype(jnp.float32), axis=-1)
            picked = jnp.take_along_axis(logp, b["tokens"][..., None], axis=-1)[..., 0]
            return {"targets": targets, "logp": picked, "hit": jnp.argmax(logp, -1) == b["tokens"]}

        out = predict(fn, model, {"tokens": val["tokens"], "lengths": val["lengths"]})
        t = out["targets"]
        train = splits["train"]
        valid = np.arange(train["tokens"].shape[1])[None, :] < train["lengths"][:, None]
        counts = np.bincount(train["tokens"][valid], minlength=self.vocab_size).astype(np.float64)
        counts[[self.tokenizer.pad_id, self.tokenizer.unk_id]] = 0.0  # never targets
        unigram = np.log((counts + 1.0) / (counts + 1.0).sum())  # add-one smoothing: unseen words have mass
        words = val["tokens"][t]
        return {"val_masked_accuracy": float(np.mean(out["hit"][t])),
                "val_masked_nats": float(-np.mean(out["logp"][t])),
                "val_unigram_accuracy": float(np.mean(words == np.argmax(counts))),
                "val_unigram_nats": float(-np.mean(unigram[words])), "val_targets": float(t.sum()),
                **{f"train_sequences_{k}": float(v) for k, v in self.counts.items()},
                "vocab_size": float(self.vocab_size)}
