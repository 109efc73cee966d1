"""Masks as data. A padding mask is bool[B, T] with True at valid (unpadded) steps; sequences are right-padded.

The attention issue extends this module (causal, cross, prefix-LM masks); everything uses the same representation.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def lengths_to_mask(lengths: jax.Array, T: int) -> jax.Array:
    """bool[B, T]: mask[b, t] = t < lengths[b]."""
    if lengths.ndim != 1:
        raise ValueError(f"lengths: expected shape (B,), got {tuple(lengths.shape)}")
    return jnp.arange(T)[None, :] < lengths[:, None]


def check_lengths(lengths, B: int, T: int, name: str = "lengths") -> None:
    """Validate a lengths array against a [B, T] batch: shape at trace time, values when concrete.

    Out-of-range lengths would otherwise be silently clamped by JAX's indexing inside jit.
    """
    shape = tuple(np.shape(lengths))
    if shape != (B,):
        raise ValueError(f"{name}: expected shape (B,) = ({B},) to match inputs [B, T] = [{B}, {T}], got {shape}")
    if not jnp.issubdtype(jnp.asarray(lengths).dtype, jnp.integer):
        raise ValueError(f"{name}: expected an integer array, got dtype {jnp.asarray(lengths).dtype}")
    if not isinstance(lengths, jax.core.Tracer):
        values = np.asarray(lengths)
        if values.size and (values.min() < 0 or values.max() > T):
            raise ValueError(f"{name}: every length must lie in [0, T] = [0, {T}], got min {values.min()}, "
                             f"max {values.max()}")


def check_mask(mask, B: int, T: int, name: str = "mask") -> None:
    """Validate a padding mask bool[B, T] against a [B, T] batch."""
    shape = tuple(np.shape(mask))
    if shape != (B, T):
        raise ValueError(f"{name}: expected shape (B, T) = ({B}, {T}) to match the inputs, got {shape}")
