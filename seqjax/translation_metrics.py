"""BLEU and chrF with sacrebleu, on detokenised text: the standard, comparable translation figures.

    scores = corpus_scores(hypotheses, references)          # TranslationScores(bleu=..., chrf=...), 0-100
    write_sentence_scores(workdir / "test_scores.jsonl", sources, hypotheses, references)

Hypotheses and references are plain sentences as a reader would see them (decoded subwords, not pieces):
sacrebleu applies its own tokenisation, so figures are comparable across tokenizers and papers. Settings are
sacrebleu's defaults: BLEU with the "13a" tokenizer, exponential smoothing, case-sensitive, one reference;
chrF with character 6-grams and beta 2 (chrF, not chrF++). Per-sentence BLEU uses effective n-gram order (a
short sentence is not zero merely for lacking 4-grams), so its mean differs from corpus BLEU.

``alignment_error_rate`` scores word alignments (from attention or IBM Model 1) against gold links.
"""
from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterable, Sequence
from typing import NamedTuple


class TranslationScores(NamedTuple):
    bleu: float  # 0-100
    chrf: float  # 0-100


def _sacrebleu():
    try:
        from sacrebleu.metrics import BLEU, CHRF
    except ImportError as e:  # pragma: no cover - sacrebleu is a dependency
        raise ImportError("translation metrics need the PyPI package sacrebleu: pip install sacrebleu") from e
    return BLEU, CHRF


def _check(hypotheses: Sequence[str], references: Sequence[str], *others: tuple[str, Sequence[str]]) -> None:
    for name, seq in (("hypotheses", hypotheses), ("references", references), *others):
        if isinstance(seq, str):
            raise TypeError(f"{name}: expected a sequence of sentences, got a single str")
        bad = [i for i, s in enumerate(seq) if not isinstance(s, str)]
        if bad:
            raise TypeError(f"{name}[{bad[0]}]: expected str, got {type(seq[bad[0]]).__name__}")
    if not len(hypotheses):
        raise ValueError("hypotheses: empty; nothing to score")
    for name, seq in (("references", references), *others):
        if len(seq) != len(hypotheses):
            raise ValueError(f"{name}: {len(seq)} sentences for {len(hypotheses)} hypotheses")


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str]) -> TranslationScores:
    """Corpus BLEU and chrF of `hypotheses` against one reference each."""
    _check(hypotheses, references)
    BLEU, CHRF = _sacrebleu()
    refs = [list(references)]
    return TranslationScores(float(BLEU().corpus_score(list(hypotheses), refs).score),
                             float(CHRF().corpus_score(list(hypotheses), refs).score))


def sentence_scores(hypotheses: Sequence[str], references: Sequence[str]) -> list[TranslationScores]:
    """Sentence BLEU (effective order) and chrF of each hypothesis against its reference."""
    _check(hypotheses, references)
    BLEU, CHRF = _sacrebleu()
    bleu, chrf = BLEU(effective_order=True), CHRF()
    return [TranslationScores(float(bleu.sentence_score(h, [r]).score),
                              float(chrf.sentence_score(h, [r]).score))
            for h, r in zip(hypotheses, references, strict=True)]


def write_sentence_scores(path: str | os.PathLike, sources: Sequence[str], hypotheses: Sequence[str],
                          references: Sequence[str]) -> list[TranslationScores]:
    """Write one JSON line per sentence and return the scores.

    Each line is {"index", "source", "hypothesis", "reference", "bleu", "chrf"}.

    JSON Lines rather than TSV: a sentence may contain tabs or quotes. Written atomically (a temporary file
    renamed into place), so a reader never sees half a file.
    """
    _check(hypotheses, references, ("sources", sources))
    scores = sentence_scores(hypotheses, references)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for i, (s, h, r, sc) in enumerate(zip(sources, hypotheses, references, scores, strict=True)):
            row = {"index": i, "source": s, "hypothesis": h, "reference": r, "bleu": sc.bleu, "chrf": sc.chrf}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return scores


def read_sentence_scores(path: str | os.PathLike) -> list[dict]:
    """The rows written by `write_sentence_scores`, in order."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No sentence-score file at {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON line ({e})") from e
    return rows


Link = tuple[int, int]  # (source index, target index), 0-based


def alignment_error_rate(predicted: Iterable[Iterable[Link]], sure: Iterable[Iterable[Link]],
                         possible: Iterable[Iterable[Link]] | None = None) -> float:
    """Corpus AER (Och & Ney, 2003) in [0, 1]: 1 - (|A & S| + |A & P|) / (|A| + |S|), counts summed.

    Args:
      predicted: per sentence, the predicted links A.
      sure: per sentence, the gold sure links S.
      possible: per sentence, the gold possible links P (S is added to them); None: P = S, and AER is then
        1 - F1 of A against S.
    """
    predicted, sure = [set(a) for a in predicted], [set(s) for s in sure]
    possible = sure if possible is None else [set(p) for p in possible]
    if not (len(predicted) == len(sure) == len(possible)):
        raise ValueError(f"predicted, sure, possible: {len(predicted)}, {len(sure)}, {len(possible)} "
                         "sentences; expected as many of each")
    n_a = n_s = hits = 0
    for a, s, p in zip(predicted, sure, possible, strict=True):
        n_a, n_s = n_a + len(a), n_s + len(s)
        hits += len(a & s) + len(a & (p | s))
    if n_a + n_s == 0:
        raise ValueError("alignment_error_rate: no predicted and no gold link; nothing to score")
    return 1.0 - hits / (n_a + n_s)
