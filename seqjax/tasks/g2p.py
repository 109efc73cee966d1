"""Grapheme-to-phoneme conversion on CMUdict: spelling -> ARPAbet phonemes, an encoder-decoder task.

Data: `seqjax.data.cmudict.load_cmudict_splits(config.data.split_seed)` (first pronunciation, stress stripped
unless `config.data.keep_stress`, alphabetic words of <= `config.data.max_word_len` letters, split by word so
test words are never seen). Source letters are padded to S = max_word_len; targets are
`tgt_in = <bos> p1 .. pn` and `tgt_out = p1 .. pn <eos>` padded to T = longest pronunciation + 1.

Model (`config.model.family`): "recurrent" -> `seqjax.models.recurrent.g2p_rnn`, "transformer" ->
`seqjax.models.transformers.g2p_transformer`; both
`model(src [B,S], src_lengths [B], tgt_in [B,T], key=None) -> logits [B,T,V]` (teacher forcing) and
`model.generate(src, src_lengths, max_len, beam_size=1) -> tokens [B, max_len]`.

`evaluate` decodes the held-out words (greedy, or beam search with `config.eval.beam_size`) and reports
WER (a word is wrong if any phoneme differs from its first pronunciation, the training target), PER (total
edit distance / total reference length), `wer_any` (wrong only if it matches none of the word's listed
pronunciations, as most CMUdict papers score), plus example predictions in the workdir.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from seqjax import losses, masks
from seqjax.data.cmudict import load_pronunciations, split_by_word
from seqjax.data.tokenize import BOS, EOS, PAD, CharVocab


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
    # For train.length_buckets: words average 7.4 letters and 7.3 target tokens, padded to 20 and 20.
    padded_lengths = {"src": "src_lengths", "tgt_in": "tgt_lengths", "tgt_out": "tgt_lengths"}

    def __init__(self, config):
        self.config = config
        d = config.data
        # Every listed pronunciation is kept for `wer_any`; the first is the training target. The split is
        # that of load_cmudict_splits (same words, same order, same permutation).
        every = load_pronunciations(keep_stress=d.keep_stress, max_len=d.max_word_len)
        raw = split_by_word(list(every), list(every.values()), d.split_seed)
        for name, key in (("train", "max_train"), ("val", "max_eval"), ("test", "max_eval")):
            if d.get(key, 0):  # smoke runs: subsets
                raw[name] = (raw[name][0][: d[key]], raw[name][1][: d[key]])
        self.words = {k: v[0] for k, v in raw.items()}
        self.alternates = {k: v[1] for k, v in raw.items()}
        self.prons = {k: [alts[0] for alts in v] for k, v in self.alternates.items()}
        # Vocabularies from all splits' symbols: the alphabet and phoneme set are closed; this leaks nothing.
        specials = (PAD, BOS, EOS)
        self.src_vocab = CharVocab.fit([w for ws in self.words.values() for w in ws], specials=specials)
        self.tgt_vocab = CharVocab.fit([p for ps in self.prons.values() for p in ps], specials=specials)
        self.S = int(d.max_word_len)
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

    def model(self, rngs: nnx.Rngs) -> nnx.Module:
        family = self.config.model.get("family", "recurrent")
        V_src, V_tgt = len(self.src_vocab), len(self.tgt_vocab)
        if family == "transformer":
            from seqjax.models import transformers

            # The vocabularies themselves, so the builder can read the pad/bos/eos ids (it also takes sizes).
            return transformers.g2p_transformer(self.config.model, self.src_vocab, self.tgt_vocab, rngs)
        if family == "recurrent":
            from seqjax.models import recurrent

            return recurrent.g2p_rnn(self.config.model, V_src, V_tgt, rngs, bos_id=self.tgt_vocab.bos_id,
                                     eos_id=self.tgt_vocab.eos_id)
        raise ValueError(f"config.model.family: expected 'recurrent' or 'transformer', got {family!r}")

    def loss(self, model, batch, key):
        logits = model(batch["src"], batch["src_lengths"], batch["tgt_in"], key=key)  # [B, T, V]
        valid = masks.lengths_to_mask(batch["tgt_lengths"], batch["tgt_out"].shape[1])  # [B, T]
        # Smoothing regularises training only (key=None is evaluation), so val loss stays the plain NLL.
        smoothing = float(self.config.model.get("label_smoothing", 0.0)) if key is not None else 0.0
        loss = losses.softmax_cross_entropy(logits, batch["tgt_out"], valid, label_smoothing=smoothing)
        return loss, {"token_accuracy": losses.accuracy(logits, batch["tgt_out"], valid)}

    def decode(self, model, split: dict, beam_size: int = 1, batch_size: int = 256) -> list[list[str]]:
        """Phoneme lists predicted for every word of `split` (each cut at its first <eos>)."""
        graphdef, state = nnx.split(model)
        max_len = self.T

        @jax.jit
        def run(state, src, src_lengths):
            return nnx.merge(graphdef, state).generate(src, src_lengths, max_len, beam_size=beam_size)

        rows = []
        for i in range(0, len(split["src"]), batch_size):
            rows.append(np.asarray(run(state, split["src"][i:i + batch_size],
                                       split["src_lengths"][i:i + batch_size])))
        tokens = np.concatenate(rows)
        return [s.split() for s in self.tgt_vocab.decode(tokens, join=" ")]

    def evaluate(self, model, splits, workdir: str) -> dict[str, float]:
        beam = int(self.config.get("eval", {}).get("beam_size", 1))
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


def build(config) -> G2PTask:
    return G2PTask(config)
