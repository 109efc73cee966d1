"""BLEU/chrF plumbing (hand-checked BLEU, file round trip) and the baselines (IBM Model 1 vs a slow EM)."""
import json
import math

import numpy as np
import pytest

from seqjax.data.tokenize import join_words, split_words
from seqjax.translation_baselines import IBMModel1, copy_source
from seqjax.translation_metrics import (
    TranslationScores,
    alignment_error_rate,
    corpus_scores,
    read_sentence_scores,
    sentence_scores,
    write_sentence_scores,
)


def test_scores_identical_and_hand_checked():
    assert corpus_scores(["Le gros chien rouge aboie."] * 2, ["Le gros chien rouge aboie."] * 2) == \
        pytest.approx(TranslationScores(100.0, 100.0))
    # Matches 4/6 unigrams ("le" clipped to one), 3/5 bigrams, 2/4 trigrams, 1/3 4-grams; equal lengths, so
    # no brevity penalty: BLEU = (4/6 * 3/5 * 2/4 * 1/3) ** (1/4).
    s = corpus_scores(["le chat est sur le tapis"], ["le chat est sur la table"])
    assert s.bleu == pytest.approx(100 * (4 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    assert 0 < s.chrf < 100
    assert corpus_scores(["xyz"], ["le chat"]) == (0.0, 0.0)
    # Brevity penalty: a 4-word prefix of an 8-word reference, all n-grams match: BLEU = exp(1 - 8/4).
    assert corpus_scores(["le chat est sur"], ["le chat est sur la table de bois"]).bleu == \
        pytest.approx(100 * math.exp(1 - 8 / 4))


def test_sentence_scores_and_file(tmp_path):
    hyps = ["le chat est sur le tapis", "Dieu créa.", ""]
    refs = ["le chat est sur la table", "Dieu créa.", "oui"]
    scores = sentence_scores(hyps, refs)
    assert scores[1] == pytest.approx((100.0, 100.0)) and scores[2] == (0.0, 0.0)
    assert scores[0].bleu == pytest.approx(corpus_scores(hyps[:1], refs[:1]).bleu)
    path = tmp_path / "scores.jsonl"
    written = write_sentence_scores(path, ["the cat\tis", "God created.", "yes"], hyps, refs)
    rows = read_sentence_scores(path)
    assert [r["source"] for r in rows] == ["the cat\tis", "God created.", "yes"]
    assert [(r["bleu"], r["chrf"]) for r in rows] == [tuple(s) for s in written] == [tuple(s) for s in scores]
    assert [r["hypothesis"] for r in rows] == hyps and [r["index"] for r in rows] == [0, 1, 2]
    assert "créa" in path.read_text(encoding="utf-8") and json.loads(path.read_text().splitlines()[1])


def test_score_errors(tmp_path):
    with pytest.raises(ValueError, match="references: 1 sentences for 2 hypotheses"):
        corpus_scores(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty"):
        sentence_scores([], [])
    with pytest.raises(TypeError, match="single str"):
        corpus_scores("a b", "a b")
    with pytest.raises(ValueError, match="sources: 1 sentences"):
        write_sentence_scores(tmp_path / "x.jsonl", ["a"], ["a", "b"], ["a", "b"])
    with pytest.raises(FileNotFoundError, match="y.jsonl"):
        read_sentence_scores(tmp_path / "y.jsonl")


def test_alignment_error_rate_hand_computed():
    # Sentence 1: A = {(0,0), (1,2), (2,1)}, S = {(0,0), (1,1)}, P = S + {(1,2)}: |A&S| = 1, |A&P| = 2.
    # Sentence 2: A = {(0,0)}, S = {(0,0)}: |A&S| = |A&P| = 1.  AER = 1 - (1+2+1+1) / (3+1 + 2+1) = 2/7.
    a = [{(0, 0), (1, 2), (2, 1)}, [(0, 0)]]
    s = [{(0, 0), (1, 1)}, {(0, 0)}]
    assert alignment_error_rate(a, s, [{(1, 2)}, set()]) == pytest.approx(2 / 7)
    assert alignment_error_rate(a, s) == pytest.approx(1 - (2 + 2) / (4 + 3))  # P = S: 1 - F1
    assert alignment_error_rate(s, s) == 0.0 and alignment_error_rate([{(5, 5)}], [{(0, 0)}]) == 1.0
    with pytest.raises(ValueError, match="2, 1, 1 sentences"):
        alignment_error_rate(a, s[:1])
    with pytest.raises(ValueError, match="nothing to score"):
        alignment_error_rate([set()], [set()])


def test_split_and_join_words():
    text = "L'Éternel dit: (oui) au-dessus, 12 ans!"
    assert split_words(text) == ["L", "'", "Éternel", "dit", ":", "(", "oui", ")", "au-dessus", ",", "12",
                                 "ans", "!"]
    assert join_words(split_words(text)) == text
    assert copy_source(("a b", "c")) == ["a b", "c"]


CORPUS = [("the dog", "le chien"), ("the cat", "le chat"), ("a dog", "un chien"),
          ("the big dog", "le gros chien"), ("a big cat", "un gros chat"), ("the red cat", "le chat rouge"),
          ("a red dog", "un chien rouge")]
PAIRS = [(e.split(), f.split()) for e, f in CORPUS]


def slow_ibm1(pairs, iterations):
    """IBM Model 1 EM written out with dicts and loops, as in the textbook; returns t and the likelihoods."""
    t = {}
    V = len({f for _, fs in pairs for f in fs})
    lls = []
    for it in range(iterations + 1):
        count, total, ll = {}, {}, 0.0
        for es, fs in pairs:
            es = [None, *es]
            for f in fs:
                z = sum(t.get((f, e), 1.0 / V if it == 0 else 0.0) for e in es)
                ll += math.log(z / len(es))
                for e in es:
                    d = t.get((f, e), 1.0 / V if it == 0 else 0.0) / z
                    count[f, e] = count.get((f, e), 0.0) + d
                    total[e] = total.get(e, 0.0) + d
        lls.append(ll)
        if it < iterations:
            t = {(f, e): c / total[e] for (f, e), c in count.items()}
    return t, lls


def test_ibm1_matches_slow_em_and_learns_the_words():
    model = IBMModel1().fit(PAIRS, iterations=15)
    t, lls = slow_ibm1(PAIRS, 15)
    np.testing.assert_allclose(model.log_likelihoods, lls, rtol=1e-10)
    lls_fast = model.log_likelihoods
    assert all(b > a for a, b in zip(lls_fast[:-1], lls_fast[1:], strict=True))  # EM climbs every iteration
    for (f, e), p in t.items():
        assert model.prob(f, e) == pytest.approx(p, rel=1e-9, abs=1e-12)
    for e, f in [("the", "le"), ("dog", "chien"), ("cat", "chat"), ("a", "un"), ("big", "gros"),
                 ("red", "rouge")]:
        assert model.best_translation(e) == f
    assert model.translate_words("the big red dog barks".split()) == ["le", "gros", "rouge", "chien", "barks"]
    assert model.translate("the big red dog barks.") == "le gros rouge chien barks."
    assert model.align("the red dog".split(), "le chien rouge".split()) == {(0, 0), (2, 1), (1, 2)}
    assert model.align("the dog".split(), "le zèbre".split()) == {(0, 0)}  # an unseen word has no link
    assert model.prob("chien", "zebra") == 0.0 and model.best_translation("zebra") is None


def test_ibm1_errors():
    with pytest.raises(RuntimeError, match="call fit"):
        IBMModel1().translate_words(["a"])
    with pytest.raises(ValueError, match="iterations"):
        IBMModel1().fit(PAIRS, iterations=0)
    with pytest.raises(TypeError, match="pairs\\[0\\]"):
        IBMModel1().fit([("the dog", "le chien")], iterations=1)
    with pytest.raises(ValueError, match="no pair"):
        IBMModel1().fit([([], ["le"])], iterations=1)
