"""The five input/output patterns of recurrent networks, each on a small synthetic problem, trained together.

| pattern               | problem                                                        | metric            |
|-----------------------|----------------------------------------------------------------|-------------------|
| one-to-one            | (a, b) uniform in [-1, 1]^2 -> is a * b > 0 (an XOR of signs)  | accuracy          |
| one-to-many           | (phase, frequency) -> sin(frequency * t + phase), t = 0..T-1   | MSE               |
| many-to-one           | bits of random length 1..T -> how many are 1 (T + 1 classes)   | accuracy          |
| many-to-many, aligned | digits of random length 1..T -> running maximum at each step   | per-step accuracy |
| many-to-many, enc-dec | digits of random length 1..T -> the same digits reversed       | exact match       |

One model holds five independent sub-models (seqjax.models.patterns.PatternModels); the training loss is the
sum of the five losses, so one run trains all five. Each problem has a trivial baseline reported beside it:
majority class (one-to-one, many-to-one), zero prediction (one-to-many), "output the current digit"
(aligned), "copy without reversing" (enc-dec). `evaluate` prints and saves the table.
"""
from __future__ import annotations

import json
import os

import numpy as np

from seqjax import losses, masks, task
from seqjax.dropout import split_keys

PATTERNS = ("one_to_one", "one_to_many", "many_to_one", "many_to_many", "seq2seq")
DIGITS = 10
PAD, BOS, EOS = 0, 1, 2  # seq2seq token ids; digit d is token d + 3


def make_data(n: int, T: int, seed: int) -> dict[str, np.ndarray]:
    """All five problems, n examples each, as one dict of arrays with leading dimension n."""
    rng = np.random.default_rng(seed)
    out = {}
    # one-to-one
    ab = rng.uniform(-1, 1, size=(n, 2))
    out["o2o_x"] = ab.astype(np.float32)
    out["o2o_y"] = (ab[:, 0] * ab[:, 1] > 0).astype(np.int32)
    # one-to-many: phase in [0, 2 pi), frequency in [0.2, 0.8] rad/step (periods of 8 to 31 steps)
    phase, freq = rng.uniform(0, 2 * np.pi, n), rng.uniform(0.2, 0.8, n)
    out["o2m_x"] = np.stack([np.sin(phase), np.cos(phase), freq], axis=1).astype(np.float32)  # [n, 3]
    out["o2m_y"] = np.sin(freq[:, None] * np.arange(T)[None, :] + phase[:, None]).astype(np.float32)  # [n, T]
    # many-to-one
    lengths = rng.integers(1, T + 1, n).astype(np.int32)
    valid = np.arange(T)[None, :] < lengths[:, None]
    bits = (rng.random((n, T)) < 0.5) & valid
    out["m2o_x"], out["m2o_lengths"] = bits.astype(np.int32), lengths
    out["m2o_y"] = bits.sum(axis=1).astype(np.int32)
    # many-to-many aligned
    lengths = rng.integers(1, T + 1, n).astype(np.int32)
    valid = np.arange(T)[None, :] < lengths[:, None]
    digits = np.where(valid, rng.integers(0, DIGITS, (n, T)), 0)
    out["m2m_x"], out["m2m_lengths"] = digits.astype(np.int32), lengths
    out["m2m_y"] = np.maximum.accumulate(digits, axis=1).astype(np.int32)
    # encoder-decoder: reverse
    lengths = rng.integers(1, T + 1, n).astype(np.int32)
    valid = np.arange(T)[None, :] < lengths[:, None]
    tokens = np.where(valid, rng.integers(0, DIGITS, (n, T)) + 3, PAD).astype(np.int32)
    reversed_ = np.zeros((n, T + 1), np.int32)
    for i in range(n):
        reversed_[i, : lengths[i]] = tokens[i, : lengths[i]][::-1]
        reversed_[i, lengths[i]] = EOS
    out["s2s_src"], out["s2s_src_lengths"] = tokens, lengths
    out["s2s_tgt_out"] = reversed_  # [n, T + 1]: reversed digits, EOS, padding
    out["s2s_tgt_in"] = np.concatenate([np.full((n, 1), BOS, np.int32), reversed_[:, :-1]], axis=1)
    out["s2s_tgt_in"] = np.where(out["s2s_tgt_in"] == EOS, PAD, out["s2s_tgt_in"])
    out["s2s_tgt_lengths"] = lengths + 1
    return out


class PatternsTask:
    """The five problems on sequences of up to `seq_len` steps: `n_train` training examples, `n_eval` each for
    val and test, drawn with seeds `data_seed`, +1, +2. Model: `pattern_models`."""

    # The table's key figure for each pattern: the model against its trivial baseline.
    HEADLINE = (
        task.Figure("test_one_to_one_accuracy", "one-to-one accuracy", "higher", unit="%",
                    baselines=(("test_one_to_one_baseline", "majority class"),)),
        task.Figure("test_one_to_many_mse", "one-to-many MSE", "lower",
                    baselines=(("test_one_to_many_baseline", "zero prediction"),)),
        task.Figure("test_many_to_one_accuracy", "many-to-one accuracy", "higher", unit="%",
                    baselines=(("test_many_to_one_baseline", "majority class"),)),
        task.Figure("test_many_to_many_accuracy", "many-to-many accuracy per step", "higher", unit="%",
                    baselines=(("test_many_to_many_baseline", "current digit"),)),
        task.Figure("test_seq2seq_exact_match", "encoder-decoder exact match", "higher", unit="%",
                    baselines=(("test_seq2seq_baseline", "copy without reversing"),)),
    )

    def __init__(self, *, seq_len: int = 8, n_train: int = 20_000, n_eval: int = 2_000, data_seed: int = 0):
        """The config keys (arguments without a default come from the data).

        Args:
            seq_len: T, the longest sequence of the five problems.
            n_train: training examples.
            n_eval: val and test examples each.
            data_seed: seed of the training data (val: +1, test: +2).
        """
        self.T = int(seq_len)
        self._splits = {"train": make_data(n_train, self.T, data_seed),
                        "val": make_data(n_eval, self.T, data_seed + 1),
                        "test": make_data(n_eval, self.T, data_seed + 2)}

    def data(self):
        return self._splits

    def model_args(self) -> dict[str, int]:
        return {"seq_len": self.T, "vocab_size": DIGITS + 3, "pad_id": PAD, "bos_id": BOS, "eos_id": EOS}

    def loss(self, model, batch, key):
        keys = split_keys(key, 5)
        metrics = {}
        # one-to-one
        logits = model.one_to_one(batch["o2o_x"], key=keys[0])  # [B, 2]
        l1 = losses.softmax_cross_entropy(logits, batch["o2o_y"])
        metrics["one_to_one_accuracy"] = losses.accuracy(logits, batch["o2o_y"])
        # one-to-many
        wave = model.one_to_many(batch["o2m_x"], key=keys[1])  # [B, T]
        l2 = losses.mse(wave, batch["o2m_y"])
        metrics["one_to_many_mse"] = l2
        # many-to-one
        logits = model.many_to_one(batch["m2o_x"], batch["m2o_lengths"], key=keys[2])  # [B, T + 1]
        l3 = losses.softmax_cross_entropy(logits, batch["m2o_y"])
        metrics["many_to_one_accuracy"] = losses.accuracy(logits, batch["m2o_y"])
        # many-to-many aligned
        logits = model.many_to_many(batch["m2m_x"], batch["m2m_lengths"], key=keys[3])  # [B, T, 10]
        valid = masks.lengths_to_mask(batch["m2m_lengths"], self.T)
        l4 = losses.softmax_cross_entropy(logits, batch["m2m_y"], valid)
        metrics["many_to_many_accuracy"] = losses.accuracy(logits, batch["m2m_y"], valid)
        # encoder-decoder
        logits = model.seq2seq(batch["s2s_src"], batch["s2s_src_lengths"], batch["s2s_tgt_in"], key=keys[4])
        valid = masks.lengths_to_mask(batch["s2s_tgt_lengths"], self.T + 1)
        l5 = losses.softmax_cross_entropy(logits, batch["s2s_tgt_out"], valid)
        metrics["seq2seq_token_accuracy"] = losses.accuracy(logits, batch["s2s_tgt_out"], valid)
        return l1 + l2 + l3 + l4 + l5, metrics

    def results(self, model, split: dict[str, np.ndarray]) -> dict[str, float]:
        """Test-time metrics with decoding (greedy for seq2seq) and each problem's trivial baseline."""
        T = self.T

        def run(m, b):
            return (m.one_to_one(b["o2o_x"]), m.one_to_many(b["o2m_x"]),
                    m.many_to_one(b["m2o_x"], b["m2o_lengths"]), m.many_to_many(b["m2m_x"], b["m2m_lengths"]),
                    m.translate(b["s2s_src"], b["s2s_src_lengths"], T + 1))

        o2o, o2m, m2o, m2m, gen = task.predict(run, model, split, batch_size=512)
        s = split
        valid = np.arange(self.T)[None, :] < s["m2m_lengths"][:, None]
        tgt_valid = np.arange(self.T + 1)[None, :] < s["s2s_tgt_lengths"][:, None]
        # Sequence-level exact match: every target token, EOS included, and nothing checked past EOS.
        exact = np.all((gen == s["s2s_tgt_out"]) | ~tgt_valid, axis=1)
        copy = np.concatenate([s["s2s_src"], np.zeros_like(s["s2s_src"][:, :1])], axis=1)
        copy[np.arange(len(copy)), s["s2s_src_lengths"]] = EOS
        copy_exact = np.all((copy == s["s2s_tgt_out"]) | ~tgt_valid, axis=1)
        majority = lambda y: np.mean(y == np.bincount(y).argmax())
        return {
            "one_to_one_accuracy": float(np.mean(o2o.argmax(-1) == s["o2o_y"])),
            "one_to_one_baseline": float(majority(s["o2o_y"])),
            "one_to_many_mse": float(np.mean((o2m - s["o2m_y"]) ** 2)),
            "one_to_many_baseline": float(np.mean(s["o2m_y"] ** 2)),
            "many_to_one_accuracy": float(np.mean(m2o.argmax(-1) == s["m2o_y"])),
            "many_to_one_baseline": float(majority(s["m2o_y"])),
            "many_to_many_accuracy": float(np.sum((m2m.argmax(-1) == s["m2m_y"]) & valid) / valid.sum()),
            "many_to_many_baseline": float(np.sum((s["m2m_x"] == s["m2m_y"]) & valid) / valid.sum()),
            "seq2seq_exact_match": float(np.mean(exact)),
            "seq2seq_baseline": float(np.mean(copy_exact)),
        }

    def evaluate(self, model, splits, workdir: str) -> dict[str, float]:
        res = self.results(model, splits["test"])
        rows = [("one-to-one", "sign XOR", "accuracy", "one_to_one"),
                ("one-to-many", "sine from phase/freq", "MSE", "one_to_many"),
                ("many-to-one", "count ones", "accuracy", "many_to_one"),
                ("many-to-many aligned", "running max", "accuracy/step", "many_to_many"),
                ("many-to-many enc-dec", "reverse digits", "exact match", "seq2seq")]
        lines = ["| pattern | problem | metric | model | baseline |", "|---|---|---|---|---|"]
        for pattern, problem, metric, key in rows:
            value = res[f"{key}_mse" if key == "one_to_many" else
                        f"{key}_exact_match" if key == "seq2seq" else f"{key}_accuracy"]
            lines.append(f"| {pattern} | {problem} | {metric} | {value:.4g} | {res[f'{key}_baseline']:.4g} |")
        table = "\n".join(lines)
        print(table, flush=True)
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "patterns_results.md"), "w") as f:
            f.write(table + "\n")
        with open(os.path.join(workdir, "patterns_results.json"), "w") as f:
            json.dump(res, f, indent=1)
        return {f"test_{k}": v for k, v in res.items()}

