"""Positional encodings against NumPy formulas written out per element."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import positional


def test_sinusoidal_table_matches_formula():
    T, D = 5, 6
    table = np.asarray(positional.sinusoidal_table(T, D))
    for t in range(T):
        for i in range(D // 2):
            angle = t / 10000 ** (2 * i / D)
            assert table[t, 2 * i] == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[t, 2 * i + 1] == pytest.approx(math.cos(angle), abs=1e-6)


def test_learned_table_init_and_add_positions():
    table = positional.init_learned_table(jax.random.key(0), 6, 4, stddev=0.02)
    assert table.shape == (6, 4)
    assert 0.005 < float(jnp.std(table)) < 0.05
    x = jnp.ones((2, 3, 4))
    np.testing.assert_allclose(np.asarray(positional.add_positions(x, table, offset=2)),
                               np.broadcast_to(1.0 + np.asarray(table)[None, 2:5], x.shape), rtol=1e-6)
    traced = jax.jit(positional.add_positions)(x, table, jnp.int32(1))
    expected = np.broadcast_to(1.0 + np.asarray(table)[None, 1:4], x.shape)
    np.testing.assert_allclose(np.asarray(traced), expected, rtol=1e-6)


def test_sequence_longer_than_table_raises():
    table = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="T = 5 exceeds the maximum length 4"):
        positional.add_positions(jnp.zeros((1, 5, 2)), table)
    with pytest.raises(ValueError, match="exceeds the maximum length 4"):
        positional.add_positions(jnp.zeros((1, 3, 2)), table, offset=2)
    with pytest.raises(ValueError, match="even"):
        positional.sinusoidal_table(4, 3)
    with pytest.raises(ValueError, match="offset: positions start at 0, got offset -1"):
        positional.add_positions(jnp.zeros((1, 3, 2)), table, offset=-1)


def test_traced_offset_past_the_table_reads_nan_rows():
    """Under jit the offset cannot be checked; positions outside the table are NaN rows, not clamped ones."""
    table = jnp.arange(8.0).reshape(4, 2)
    x = jnp.ones((2, 3, 2))
    add = jax.jit(positional.add_positions)
    for offset, rows in [(1, [1, 2, 3]), (2, [2, 3, None]), (3, [3, None, None]), (-1, [None, 0, 1])]:
        got = np.asarray(add(x, table, jnp.int32(offset)))
        for t, r in enumerate(rows):
            want = np.full(2, np.nan) if r is None else 1.0 + np.asarray(table)[r]
            np.testing.assert_array_equal(got[:, t], np.broadcast_to(want, (2, 2)))


def test_rotary_matches_pairwise_rotation_loop():
    B, T, N, K = 1, 3, 2, 4
    x = np.asarray(jax.random.normal(jax.random.key(1), (B, T, N, K)))
    pos = np.array([0, 2, 5])
    got = np.asarray(positional.apply_rotary(jnp.asarray(x), jnp.asarray(pos)))
    for t in range(T):
        for n in range(N):
            for i in range(K // 2):
                a = pos[t] / 10000 ** (2 * i / K)
                x1, x2 = x[0, t, n, i], x[0, t, n, i + K // 2]
                assert got[0, t, n, i] == pytest.approx(x1 * math.cos(a) - x2 * math.sin(a), abs=1e-5)
                second = x2 * math.cos(a) + x1 * math.sin(a)
                assert got[0, t, n, i + K // 2] == pytest.approx(second, abs=1e-5)


def test_rotary_scores_depend_on_relative_position_only():
    q = jax.random.normal(jax.random.key(2), (1, 1, 1, 8))
    k = jax.random.normal(jax.random.key(3), (1, 1, 1, 8))

    def score(tq, tk):
        rq = positional.apply_rotary(q, jnp.array([tq]))
        rk = positional.apply_rotary(k, jnp.array([tk]))
        return float(jnp.sum(rq * rk))

    assert score(3, 1) == pytest.approx(score(7, 5), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-4)
    # norms are preserved
    np.testing.assert_allclose(float(jnp.linalg.norm(positional.apply_rotary(q, jnp.array([9])))),
                               float(jnp.linalg.norm(q)), rtol=1e-5)


def test_sincos_2d_matches_formula():
    h, w, D = 2, 3, 8
    table = np.asarray(positional.sincos_2d_table(h, w, D))
    assert table.shape == (h * w, D)
    for r in range(h):
        for c in range(w):
            p = r * w + c
            for i in range(D // 4):
                f = 1 / 10000 ** (i / (D // 4))
                assert table[p, i] == pytest.approx(math.sin(r * f), abs=1e-6)
                assert table[p, D // 4 + i] == pytest.approx(math.cos(r * f), abs=1e-6)
                assert table[p, D // 2 + i] == pytest.approx(math.sin(c * f), abs=1e-6)
                assert table[p, 3 * D // 4 + i] == pytest.approx(math.cos(c * f), abs=1e-6)
    with pytest.raises(ValueError, match="divisible by 4"):
        positional.sincos_2d_table(2, 2, 6)
