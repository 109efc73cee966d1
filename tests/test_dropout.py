"""Dropout masks: the 16-bit draw against a NumPy rebuild from the same random bits, its rate, its mean."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import dropout


def test_keep_mask_matches_numpy_rebuild_from_the_same_bits():
    key, shape, rate = jax.random.key(3), (3, 5, 7), 0.3  # odd size: the last 32-bit draw is half used
    n = int(np.prod(shape))
    bits = np.asarray(jax.random.bits(key, ((n + 1) // 2,), jnp.uint32))
    u16 = bits.astype("<u4").view("<u2")[:n].reshape(shape)  # low half first, as bitcast on little-endian
    np.testing.assert_array_equal(np.asarray(dropout.keep_mask(key, rate, shape)), u16 >= round(rate * 65536))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_rate_and_unbiased_scale(rate):
    x = jnp.ones((64, 256))
    y = np.asarray(dropout.dropout(x, rate, jax.random.key(1)))
    dropped = np.mean(y == 0)
    assert abs(dropped - rate) < 4 * np.sqrt(rate * (1 - rate) / y.size)
    np.testing.assert_allclose(np.unique(y[y != 0]), 1 / dropout.keep_probability(rate), rtol=1e-6)
    assert abs(dropout.keep_probability(rate) - (1 - rate)) <= 2 ** -17
    # Independent draws under different keys, identical under the same key.
    z = np.asarray(dropout.dropout(x, rate, jax.random.key(2)))
    assert (z != y).any()
    np.testing.assert_array_equal(y, np.asarray(dropout.dropout(x, rate, jax.random.key(1))))


def test_eval_and_bad_rate():
    x = jnp.arange(6.0)
    assert dropout.dropout(x, 0.5, None) is x
    assert dropout.dropout_mask(None, 0.5, (2, 3)) is None
    with pytest.raises(ValueError, match="rate"):
        dropout.dropout(x, 1.0, jax.random.key(0))
