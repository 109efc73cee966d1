"""Dropout as pure functions: standard (a fresh mask per element) and variational (one mask per sequence).

`key=None` means evaluation: the input is returned unchanged.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout: zero each element with probability `rate`, scale survivors by 1/(1-rate)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def dropout_mask(key: jax.Array | None, rate: float, shape: tuple[int, ...],
                 dtype=jnp.float32) -> jax.Array | None:
    """A scaled keep-mask of `shape` (values 0 or 1/(1-rate)), or None when dropout is off.

    Variational (recurrent) dropout draws this once per sequence, shape [B, H], and multiplies the same mask
    into every time step, as in Gal & Ghahramani (2016).
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    if key is None or rate == 0.0:
        return None
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return keep.astype(dtype) / (1.0 - rate)
