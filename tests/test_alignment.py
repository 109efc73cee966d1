"""AER and hard alignments (seqjax.alignment): a hand-computed case and the in-graph counts against sets."""
import numpy as np
import pytest

from seqjax import alignment
from seqjax.translation_metrics import alignment_error_rate


def test_aer_from_counts_hand_computed():
    # A = {(0,0), (1,1), (2,2), (3,3)}, S = {(0,0), (1,1), (2,3)}, P = S + {(2,2)}:
    # |A&S| = 2, |A&P| = 3, |A| = 4, |S| = 3  ->  1 - 5/7
    assert alignment.aer_from_counts(2, 3, 4, 3) == pytest.approx(2 / 7)
    w = np.eye(4)[None]  # [1, T=4, S=4]: target word t attends to source word t
    sure = np.zeros((1, 4, 4), bool)
    sure[0, [0, 1, 3], [0, 1, 2]] = True  # [b, t, s]
    possible = np.zeros_like(sure)
    possible[0, 2, 2] = True
    counts = np.asarray(alignment.aer_counts(w, sure, possible, np.ones((1, 4), bool)))
    np.testing.assert_array_equal(counts, [2, 3, 4, 3])
    # The source's last position is not a word (EOS): the argmax of target word 3 moves off it.
    w = np.array([[[0.9, 0.1, 0.0], [0.2, 0.3, 0.5]]])  # [1, T=2, S=3]
    sure = np.zeros((1, 2, 3), bool)
    sure[0, 1, 1] = True
    counts = alignment.aer_counts(w, sure, sure, np.ones((1, 2), bool), np.array([[True, True, False]]))
    np.testing.assert_array_equal(np.asarray(counts), [1, 1, 2, 1])  # links (0, 0) and (1, 1)
    with pytest.raises(ValueError, match="undefined"):
        alignment.aer_from_counts(0, 0, 0, 0)


def test_hard_alignment_and_word_attention():
    w = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])
    assert alignment.hard_alignment(w) == {(0, 0), (2, 1), (1, 2)}
    # Target tokens 0, 1 form word 0 (mean of rows), token 2 is word 1; source tokens 1, 2 form word 1 (sum).
    words = alignment.word_attention(w, tgt_words=[0, 0, 1], src_words=[0, 1, 1])
    np.testing.assert_allclose(words, [[0.4, 0.6], [0.2, 0.8]])
    assert alignment.hard_alignment(w, [0, 0, 1], [0, 1, 1]) == {(1, 0), (1, 1)}
    with pytest.raises(ValueError, match="tgt_words"):
        alignment.word_attention(w, tgt_words=[0, 1])


def test_aer_counts_in_graph_match_sets():
    rng = np.random.default_rng(0)
    B, T, S = 3, 5, 4
    w = rng.random((B, T, S))
    sure, possible = rng.random((B, T, S)) < 0.3, rng.random((B, T, S)) < 0.2
    valid = np.arange(T)[None] < np.array([5, 3, 1])[:, None]
    links = {"a": [], "s": [], "p": []}
    for b in range(B):
        n = valid[b].sum()
        links["a"].append(alignment.hard_alignment(w[b, :n]))
        links["s"].append({(j, i) for i, j in zip(*np.nonzero(sure[b, :n]), strict=True)})
        links["p"].append({(j, i) for i, j in zip(*np.nonzero(possible[b, :n]), strict=True)})
    counts = np.asarray(alignment.aer_counts(w, sure, possible, valid))
    assert counts[2] == valid.sum() and counts[3] == sum(map(len, links["s"]))  # one link per target word
    assert float(alignment.aer_from_counts(*counts)) == pytest.approx(
        alignment_error_rate(links["a"], links["s"], links["p"]))
