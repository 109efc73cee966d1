"""AER and hard alignments (seqjax.alignment): a hand-computed case and the in-graph counts against sets."""
import numpy as np
import pytest

from seqjax import alignment


def test_aer_hand_computed():
    sure = {(0, 0), (1, 1), (2, 3)}
    possible = {(2, 2)}  # united with sure
    predicted = {(0, 0), (1, 1), (2, 2), (3, 3)}
    # |A&S| = 2, |A&P| = 3, |A| = 4, |S| = 3  ->  1 - 5/7
    assert alignment.aer(predicted, sure, possible) == pytest.approx(2 / 7)
    assert alignment.aer(sure, sure) == 0.0
    assert alignment.aer(sure | possible, sure, possible) == 0.0  # a possible link is no error
    assert alignment.aer({(5, 5)}, sure) == 1.0
    # Corpus AER sums the counts: (2 + 3 + 1 + 1) / (4 + 3 + 1 + 1) = 7/9, not the mean of 2/7 and 0.
    assert alignment.corpus_aer([predicted, {(0, 0)}], [sure, {(0, 0)}], [possible, ()]) == \
        pytest.approx(1 - 7 / 9)
    with pytest.raises(ValueError, match="undefined"):
        alignment.aer((), ())
    with pytest.raises(ValueError, match="equal numbers"):
        alignment.corpus_aer([()], [(), ()])


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
    totals = np.zeros(4)
    for b in range(B):
        n = valid[b].sum()
        a = alignment.hard_alignment(w[b, :n])
        s = {(j, i) for i, j in zip(*np.nonzero(sure[b, :n]), strict=True)}
        p = {(j, i) for i, j in zip(*np.nonzero(possible[b, :n]), strict=True)}
        totals += alignment._counts(a, s, p)
    np.testing.assert_array_equal(np.asarray(alignment.aer_counts(w, sure, possible, valid)), totals)
