"""Sentence-level sentiment classification (many-to-one) on the movie-review sentence-polarity corpus.

Data: `seqjax.data.sentiment.load_polarity_splits(config.data.split_seed)` (80/10/10, shared with the
transformer experiment), word tokens from `WordTokenizer` fitted on the training split only (id 0 = padding,
id 1 = words unseen in training or rarer than `config.data.min_count`), right-padded to `config.data.max_len`
tokens (longer sentences are truncated; 99.7% of sentences fit in 50) with per-sentence `lengths`.

Model (`config.model_name`): "rnn_classifier" (seqjax.models.rnn_classifier) or "transformer_classifier"
(seqjax.models.encoder); both `model(tokens [B, T], lengths [B], key=None) -> logits [B, 2]` with embeddings
learned from scratch; model_args gives the vocabulary size, the classes and the <unk> id.

`evaluate` reports val/test accuracy beside two baselines computed on the same split: the majority class and a
multinomial naive Bayes over binarised unigrams (Laplace smoothing), the classic bag-of-words reference for
this corpus; and writes a PNG of a 2-D PCA of the learned embeddings of frequent sentiment words.
"""
from __future__ import annotations

import json
import os

import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax import losses
from seqjax.data.sentiment import load_polarity_splits
from seqjax.data.tokenize import WordTokenizer
from seqjax.task import Figure, predict

POSITIVE_WORDS = ("good", "great", "best", "funny", "fun", "beautiful", "wonderful", "excellent", "enjoyable",
                  "entertaining", "charming", "brilliant", "perfect", "delightful", "moving", "fascinating",
                  "powerful", "touching", "smart", "love", "terrific", "masterpiece", "compelling",
                  "engrossing")
NEGATIVE_WORDS = ("bad", "worst", "boring", "dull", "stupid", "mess", "flat", "tedious", "awful", "lame",
                  "fails", "unfunny", "pointless", "tiresome", "mediocre", "predictable", "annoying", "waste",
                  "bland", "silly", "lacks", "poorly", "clumsy", "tired")


def naive_bayes(train_ids: np.ndarray, train_lengths: np.ndarray, train_labels: np.ndarray, V: int,
                alpha: float = 1.0):
    """Fit multinomial naive Bayes on binarised unigram counts; returns predict(ids, lengths) -> labels."""

    def presence(ids, lengths):
        x = np.zeros((len(ids), V), dtype=np.float32)  # [N, V]: word present in the sentence
        valid = np.arange(ids.shape[1])[None, :] < lengths[:, None]
        rows = np.broadcast_to(np.arange(len(ids))[:, None], ids.shape)
        x[rows[valid], ids[valid]] = 1.0
        x[:, :2] = 0.0  # padding and unknown words carry no evidence
        return x

    x = presence(train_ids, train_lengths)
    log_prior = np.log(np.bincount(train_labels, minlength=2) / len(train_labels))  # [2]
    counts = np.stack([x[train_labels == c].sum(0) for c in (0, 1)]) + alpha  # [2, V]
    log_lik = np.log(counts / counts.sum(axis=1, keepdims=True))

    def predict(ids, lengths):
        return np.argmax(presence(ids, lengths) @ log_lik.T + log_prior, axis=1)

    return predict


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """[N, D] -> [N, 2]: projections on the two leading principal axes (SVD of the centred matrix)."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def embedding_table(model: nnx.Module, vocab_size: int) -> np.ndarray:
    """The model's token embedding matrix [V, D]: its first 2-D parameter with `vocab_size` rows."""
    for _, value in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        arr = np.asarray(value.get_value() if hasattr(value, "get_value") else value.value)
        if arr.ndim == 2 and arr.shape[0] == vocab_size:
            return arr
    raise ValueError(f"model has no [V={vocab_size}, D] embedding parameter")


def polarity_data(split_seed: int, min_count: int, max_train: int, max_eval: int):
    """(splits {name: (texts, labels)}, WordTokenizer fitted on the training texts): the sentences and the
    vocabulary of every task on the polarity corpus (the masked-LM pretraining task shares them, so its
    encoder's embedding rows mean the same words)."""
    raw = load_polarity_splits(split_seed)
    if max_train:  # smoke runs: a subset (the test split stays whole unless max_eval is set)
        raw["train"] = (raw["train"][0][:max_train], raw["train"][1][:max_train])
    if max_eval:
        for k in ("val", "test"):
            raw[k] = (raw[k][0][:max_eval], raw[k][1][:max_eval])
    return raw, WordTokenizer.fit(raw["train"][0], min_count=min_count)


class SentimentTask:
    """Arguments (config.data): split_seed of the 80/10/10 split; max_len tokens per sentence (longer ones are
    truncated); min_count (rarer training words become <unk>); max_train / max_eval (0 = all; smoke
    variants use subsets)."""

    HEADLINE = (Figure("test_accuracy", "test accuracy", "higher", unit="%",
                       baselines=(("test_naive_bayes_accuracy", "naive Bayes"),
                                  ("test_majority_accuracy", "majority class"))),)

    def __init__(self, *, split_seed: int = 0, max_len: int = 50, min_count: int = 1, max_train: int = 0,
                 max_eval: int = 0):
        """The config keys (arguments without a default come from the data).

        Args:
            split_seed: seed of the 80/10/10 train/val/test split.
            max_len: T, tokens per sentence (longer ones are truncated).
            min_count: training words seen fewer times become <unk>.
            max_train: use only the first N training sentences (0 = all).
            max_eval: use only the first N val and test sentences (0 = all).
        """
        raw, self.tokenizer = polarity_data(split_seed, min_count, max_train, max_eval)
        self.texts = {k: v[0] for k, v in raw.items()}
        self._splits = {}
        for name, (texts, labels) in raw.items():
            ids, lengths = self.tokenizer.encode(texts, max_len=max_len)
            self._splits[name] = {"tokens": ids, "lengths": lengths, "labels": labels.astype(np.int32)}

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def data(self):
        return self._splits

    def model_args(self):
        return {"vocab_size": self.vocab_size, "num_classes": 2, "unk_id": self.tokenizer.unk_id}

    def loss(self, model, batch, key):
        logits = model(batch["tokens"], batch["lengths"], key=key)  # [B, 2]
        loss = losses.softmax_cross_entropy(logits, batch["labels"])
        return loss, {"accuracy": losses.accuracy(logits, batch["labels"])}

    def predict(self, model, split: dict, batch_size: int = 256) -> np.ndarray:
        """Predicted labels int[N] of a split."""
        return predict(lambda m, b: jnp.argmax(m(b["tokens"], b["lengths"]), axis=-1), model,
                       {"tokens": split["tokens"], "lengths": split["lengths"]}, batch_size)

    def evaluate(self, model, splits, workdir: str) -> dict[str, float]:
        out = {}
        train = splits["train"]
        nb = naive_bayes(train["tokens"], train["lengths"], train["labels"], self.vocab_size)
        majority = int(np.bincount(train["labels"], minlength=2).argmax())
        for name in ("val", "test"):
            if name not in splits:
                continue
            s = splits[name]
            out[f"{name}_accuracy"] = float(np.mean(self.predict(model, s) == s["labels"]))
            out[f"{name}_naive_bayes_accuracy"] = float(np.mean(nb(s["tokens"], s["lengths"]) == s["labels"]))
            out[f"{name}_majority_accuracy"] = float(np.mean(s["labels"] == majority))
        out["vocab_size"] = float(self.vocab_size)
        os.makedirs(workdir, exist_ok=True)
        try:
            out["embedding_plot_words"] = float(self.plot_embeddings(model, workdir))
        except ValueError as e:  # a model without a plain embedding table: report, do not fail the run
            print(f"embedding plot skipped: {e}")
        with open(os.path.join(workdir, "sentiment_evaluation.json"), "w") as f:
            json.dump(out, f, indent=1)
        return out

    def plot_embeddings(self, model, workdir: str) -> int:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        table = embedding_table(model, self.vocab_size)
        words = [(w, 1) for w in POSITIVE_WORDS if w in self.tokenizer.stoi]
        words += [(w, 0) for w in NEGATIVE_WORDS if w in self.tokenizer.stoi]
        if len(words) < 3:
            raise ValueError(f"only {len(words)} of the sentiment words are in the vocabulary")
        xy = pca_2d(table[[self.tokenizer.stoi[w] for w, _ in words]].astype(np.float64))
        fig, ax = plt.subplots(figsize=(8, 6.5))
        for (w, label), (x, y) in zip(words, xy, strict=True):
            color = "tab:blue" if label else "tab:red"
            ax.scatter(x, y, c=color, s=14)
            ax.annotate(w, (x, y), fontsize=8, color=color, xytext=(2, 2), textcoords="offset points")
        ax.set_title("Learned word embeddings, 2-D PCA (blue: positive words, red: negative)")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        fig.tight_layout()
        fig.savefig(os.path.join(workdir, "sentiment_embeddings_pca.png"), dpi=90)
        plt.close(fig)
        return len(words)

