"""Attention masks against explicit Python-loop definitions."""
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import masks


def test_causal_mask_matches_loop():
    T, S, off = 3, 5, 2
    got = np.asarray(masks.causal_mask(T, S, offset=off))
    assert got.shape == (1, 1, T, S)
    for t in range(T):
        for s in range(S):
            assert got[0, 0, t, s] == (s <= t + off)
    assert np.array_equal(np.asarray(masks.causal_mask(4))[0, 0], np.tril(np.ones((4, 4), bool)))


def test_padding_and_cross_masks_match_loop():
    lengths = jnp.array([2, 4, 0])
    T = 4
    kv = masks.lengths_to_attention_mask(lengths, T)
    full = masks.lengths_to_attention_mask(lengths, T, mask_queries=True)
    assert kv.shape == (3, 1, 1, T) and full.shape == (3, 1, T, T)
    for b, n in enumerate([2, 4, 0]):
        for t in range(T):
            for s in range(T):
                assert bool(kv[b, 0, 0, s]) == (s < n)
                assert bool(full[b, 0, t, s]) == (s < n and t < n)
    q_mask = jnp.array([[True, False], [True, True], [False, False]])
    cross = masks.cross_attention_mask(masks.lengths_to_mask(lengths, T), q_mask)
    assert cross.shape == (3, 1, 2, T)
    for b, n in enumerate([2, 4, 0]):
        for t in range(2):
            for s in range(T):
                assert bool(cross[b, 0, t, s]) == (bool(q_mask[b, t]) and s < n)


def test_prefix_lm_mask_matches_loop():
    prefix = jnp.array([0, 2, 5])
    T = 5
    got = np.asarray(masks.prefix_lm_mask(prefix, T))
    assert got.shape == (3, 1, T, T)
    for b, p in enumerate([0, 2, 5]):
        for t in range(T):
            for s in range(T):
                assert got[b, 0, t, s] == (s < p or s <= t)
    # a zero-length prefix is exactly causal
    assert np.array_equal(got[0, 0], np.asarray(masks.causal_mask(T))[0, 0])


def test_combine_masks_is_logical_and():
    causal = masks.causal_mask(4)
    pad = masks.lengths_to_attention_mask(jnp.array([3, 1]), 4)
    got = masks.combine_masks(None, causal, pad)
    assert got.shape == (2, 1, 4, 4)
    expected = np.asarray(causal) & np.asarray(pad)
    assert np.array_equal(np.asarray(got), expected)
    assert masks.combine_masks(None, None) is None


def test_bad_masks_raise():
    with pytest.raises(ValueError, match="do not broadcast"):
        masks.combine_masks(jnp.ones((2, 1, 4, 4), bool), jnp.ones((3, 1, 4, 4), bool))
    with pytest.raises(ValueError, match="rank 4"):
        masks.combine_masks(jnp.ones((4, 4), bool))
    with pytest.raises(ValueError, match=r"broadcastable to \[B, N, T, S\]"):
        masks.check_attention_mask(jnp.ones((2, 1, 3, 4), bool), 2, 2, 4, 4)
    with pytest.raises(ValueError, match="prefix_lengths"):
        masks.prefix_lm_mask(jnp.ones((2, 1), jnp.int32), 4)
