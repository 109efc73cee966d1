"""Losses against NumPy references written from their definitions."""
import numpy as np
import pytest

from seqjax import losses


def np_smoothed_ce(logits, labels, where, e):
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    V = logits.shape[-1]
    target = np.full(logits.shape, e / V)
    np.put_along_axis(target, labels[..., None], 1 - e + e / V, axis=-1)
    per = -(target * logp).sum(-1)
    return (per * where).sum() / where.sum()


@pytest.mark.parametrize("e", [0.0, 0.1, 0.5])
def test_cross_entropy_with_label_smoothing_matches_numpy(e):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 7)).astype(np.float32) * 3
    labels = rng.integers(0, 7, (3, 5))
    where = rng.random((3, 5)) < 0.7
    got = losses.softmax_cross_entropy(logits, labels, where, label_smoothing=e)
    np.testing.assert_allclose(got, np_smoothed_ce(logits, labels, where, e), rtol=1e-5)


def test_label_smoothing_range_is_checked():
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.softmax_cross_entropy(np.zeros((2, 3)), np.zeros(2, int), label_smoothing=1.0)
