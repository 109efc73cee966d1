"""Grapheme-to-phoneme conversion on CMUdict: spelling -> ARPAbet phonemes, an encoder-decoder task.

Data: `seqjax.data.cmudict.load_cmudict_splits(split_seed)` (first pronunciation, stress stripped
unless `keep_stress`, alphabetic words of <= `max_word_len` letters, split by word so
test words are never seen). Source letters are padded to S = max_word_len; targets are
`tgt_in = <bos> p1 .. pn` and `tgt_out = p1 .. pn <eos>` padded to T = longest pronunciation + 1.

Model (`config.model_name`): "rnn_seq2seq" (seqjax.models.rnn_seq2seq) or "encoder_decoder"
(seqjax.models.encoder_decoder); both `model(src [B,S], src_lengths [B], tgt_in [B,T], key=None) -> logits
[B,T,V]` (teacher forcing) and `model.translate(src, src_lengths, max_len, beam_size=1) -> tokens
[B, max_len]`; model_args gives the vocabulary sizes and the target's pad/bos/eos ids.

`evaluate` decodes the held-out words (greedy, or beam search with `config.data.beam_size`) and reports
WER (a word is wrong if any phoneme differs from its first pronunciation, the training target), PER (total
edit distance / total reference length), `wer_any` (wrong only if it matches none of the word's listed
pronunciations, as most CMUdict papers score), plus example predictions in the workdir.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

from seqjax import losses, masks
from seqjax.data.cmudict import load_pronunciations, split_by_word
from seqjax.data.tokenize import BOS, EOS, PAD, CharVocab
from seqjax.task import Figure, predict


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (unit cost insert/delete/substitute) between two symbol sequences."""
    prev = list(range(len(hyp) + 1))  # distances from ref[:0] to every prefix of hyp
    for i, r in enumerate(ref, start=1):
        cur = [i]
        for j, h in enumerate(hyp, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


def wer_per(refs: Sequence[Sequence], hyps: Sequence[Sequence]) -> tuple[float, float]:
    """(WER, PER): the fraction of words with any error, and total edit distance / total reference length."""
    if len(refs) != len(hyps) or not refs:
        raise ValueError(f"refs, hyps: expected equal non-zero counts, got {len(refs)} and {len(hyps)}")
    wrong = sum(list(r) != list(h) for r, h in zip(refs, hyps, strict=True))
    dist = sum(edit_distance(r, h) for r, h in zip(refs, hyps, strict=True))
    return wrong / len(refs), dist / max(1, sum(len(r) for r in refs))


def wer_any(alternates: Sequence[Sequence[Sequence]], hyps: Sequence[Sequence]) -> float:
    """The fraction of words whose hypothesis matches none of the word's listed pronunciations (the scoring
    of most CMUdict G2P papers; `wer_per` scores against the first pronunciation only, as trained)."""
    if len(alternates) != len(hyps) or not hyps:
        raise ValueError(f"alternates, hyps: expected equal non-zero counts, got {len(alternates)} and "
                         f"{len(hyps)}")
    return sum(all(list(r) != list(h) for r in alts) for alts, h in zip(alternates, hyps, strict=True)) \
        / len(hyps)


class G2PTask:
    """Arguments (config.data): split_seed of the 90/5/5 split by word; keep_stress (stress digits on
    vowels); max_word_len letters (longer words are dropped; the source width S); max_train / max_eval
    (0 = all; smoke variants use subsets); label_smoothing of the training loss; beam_size of the final
    evaluation's decoding (1 = greedy)."""

    # No baselines: evaluate computes none for G2P, so the lines give the model's error rates alone.
    HEADLINE = (Figure("test_wer", "test WER (words with any phoneme wrong)", "lower", unit="%",
                       also=(("test_wer_any", "WER against any listed pronunciation"),)),
                Figure("test_per", "test PER (phoneme edits / reference phonemes)", "lower", unit="%"))

    # For train.length_buckets: words average 7.4 letters and 7.3 target tokens, padded to 20 and 20.
    padded_lengths = {"src": "src_lengths", "tgt_in": "tgt_lengths", "tgt_out": "tgt_lengths"}

    def __init__(self, *, split_seed: int = 0, keep_stress: bool = False, max_word_len: int = 20,
                 max_train: int = 0, max_eval: int = 0, label_smoothing: float = 0.0, beam_size: int = 1):
        # Every listed pronunciation is kept for `wer_any`; the first is the training target. The split is
        # that of load_cmudict_splits (same words, same order, same permutation).
        """The config keys (arguments without a default come from the data).

        Args:
            split_seed: seed of the 90/5/5 split by word.
            keep_stress: keep the stress digits on vowels (more phonemes).
            max_word_len: S, the longest word kept (longer ones are dropped).
            max_train: use only the first N training words (0 = all).
            max_eval: use only the first N val and test words (0 = all).
            label_smoothing: label smoothing of the training loss (evaluation loss is plain).
            beam_size: beams of the final evaluation's decoding (1 = greedy).
        """
        every = load_pronunciations(keep_stress=keep_stress, max_len=max_word_len)
        raw = split_by_word(list(every), list(every.values()), split_seed)
        for name, limit in (("train", max_train), ("val", max_eval), ("test", max_eval)):
            if limit:  # smoke runs: subsets
                raw[name] = (raw[name][0][:limit], raw[name][1][:limit])
        self.label_smoothing, self.beam_size = float(label_smoothing), int(beam_size)
        self.words = {k: v[0] for k, v in raw.items()}
        self.alternates = {k: v[1] for k, v in raw.items()}
        self.prons = {k: [alts[0] for alts in v] for k, v in self.alternates.items()}
        # Vocabularies from all splits' symbols: the alphabet and phoneme set are closed; this leaks nothing.
        specials = (PAD, BOS, EOS)
        self.src_vocab = CharVocab.fit([w for ws in self.words.values() for w in ws], specials=specials)
        self.tgt_vocab = CharVocab.fit([p for ps in self.prons.values() for p in ps], specials=specials)
        self.S = int(max_word_len)
        self.T = max(len(p) for ps in self.prons.values() for p in ps) + 1
        self._splits = {k: self._encode(self.words[k], self.prons[k]) for k in raw}

    def _encode(self, words, prons):
        src, src_lengths = self.src_vocab.encode(words, max_len=self.S)
        tgt_in, _ = self.tgt_vocab.encode(prons, add_bos=True, max_len=self.T)
        tgt_out, tgt_lengths = self.tgt_vocab.encode(prons, add_eos=True, max_len=self.T)
        return {"src": src, "src_lengths": src_lengths, "tgt_in": tgt_in, "tgt_out": tgt_out,
                "tgt_lengths": tgt_lengths}

    def data(self):
        return self._splits

    def model_args(self):
        return {"src_vocab_size": len(self.src_vocab), "tgt_vocab_size": len(self.tgt_vocab),
                "pad_id": self.tgt_vocab.pad_id, "bos_id": self.tgt_vocab.bos_id,
                "eos_id": self.tgt_vocab.eos_id}

    def loss(self, model, batch, key):
        logits = model(batch["src"], batch["src_lengths"], batch["tgt_in"], key=key)  # [B, T, V]
        valid = masks.lengths_to_mask(batch["tgt_lengths"], batch["tgt_out"].shape[1])  # [B, T]
        # Smoothing regularises training only (key=None is evaluation), so val loss stays the plain NLL.
        smoothing = self.label_smoothing if key is not None else 0.0
        loss = losses.softmax_cross_entropy(logits, batch["tgt_out"], valid, label_smoothing=smoothing)
        return loss, {"token_accuracy": losses.accuracy(logits, batch["tgt_out"], valid)}

    def decode(self, model, split: dict, beam_size: int = 1, batch_size: int = 256) -> list[list[str]]:
        """Phoneme lists predicted for every word of `split` (each cut at its first <eos>)."""
        tokens = predict(lambda m, b: m.translate(b["src"], b["src_lengths"], self.T, beam_size=beam_size),
                         model, {"src": split["src"], "src_lengths": split["src_lengths"]}, batch_size)
        return [s.split() for s in self.tgt_vocab.decode(tokens, join=" ")]

    def evaluate(self, model, splits, workdir: str) -> dict[str, float]:
        beam = self.beam_size
        out, examples = {}, {}
        for name in ("val", "test"):
            if name not in splits:
                continue
            hyps = self.decode(model, splits[name], beam_size=beam)
            wer, per = wer_per(self.prons[name], hyps)
            out[f"{name}_wer"], out[f"{name}_per"] = wer, per
            out[f"{name}_wer_any"] = wer_any(self.alternates[name], hyps)
            triples = list(zip(self.words[name], self.prons[name], hyps, strict=True))[:40]
            examples[name] = [{"word": w, "ref": " ".join(r), "hyp": " ".join(h)} for w, r, h in triples]
        out["beam_size"] = float(beam)
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "g2p_examples.json"), "w") as f:
            json.dump({"metrics": out, "examples": examples}, f, indent=1)
        return out

