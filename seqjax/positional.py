"""Positional encodings as pure functions: sinusoidal, learned tables, rotary (RoPE), 2-D sin-cos for patches.

Tables are [T_max, D]; `add_positions` checks the sequence fits the table (JAX would otherwise clamp the
gather silently inside jit), and under jit, where a traced offset cannot be checked, positions past the table
read rows of NaNs (as out-of-range token ids do in `seqjax.embedding`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def sinusoidal_table(T: int, D: int, base: float = 10000.0, dtype=jnp.float32) -> jax.Array:
    """[T, D] table of Vaswani et al. (2017): PE[t, 2i] = sin(t / base^(2i/D)), PE[t, 2i+1] = cos(same)."""
    if D % 2 != 0:
        raise ValueError(f"D: sinusoidal encodings need an even width, got D = {D}")
    pos = np.arange(T, dtype=np.float64)[:, None]  # [T, 1]
    inv_freq = base ** (-np.arange(0, D, 2, dtype=np.float64) / D)  # [D/2]
    angles = pos * inv_freq[None, :]  # [T, D/2]
    table = np.stack([np.sin(angles), np.cos(angles)], axis=-1).reshape(T, D)  # sin/cos interleaved
    return jnp.asarray(table, dtype)


def init_learned_table(key: jax.Array, T: int, D: int, stddev: float = 0.02, dtype=jnp.float32) -> jax.Array:
    """[T, D] learned position table, initialised N(0, stddev^2) as in GPT-2/BERT."""
    return (stddev * jax.random.normal(key, (T, D), jnp.float32)).astype(dtype)


def check_length(T: int, T_max: int, name: str = "inputs") -> None:
    """Raise when a length-T sequence does not fit a T_max-long position table or cache."""
    if T > T_max:
        raise ValueError(f"{name}: sequence length T = {T} exceeds the maximum length {T_max} of the "
                         f"position table / cache")


def add_positions(x: jax.Array, table: jax.Array, offset: int | jax.Array = 0) -> jax.Array:
    """x [B, T, D] + table[offset : offset + T] (offset may be traced, e.g. a KV-cache index).

    The static check is T <= T_max; a concrete offset is also checked (0 <= offset, T + offset <= T_max). A
    traced offset cannot raise: the rows of positions outside [0, T_max) are NaN, so the result is loud.
    """
    if x.ndim != 3 or table.ndim != 2 or x.shape[-1] != table.shape[-1]:
        raise ValueError(f"x, table: expected [B, T, D] and [T_max, D], got {tuple(x.shape)}, "
                         f"{tuple(table.shape)}")
    T = x.shape[1]
    check_length(T, table.shape[0], "x")
    T_max = table.shape[0]
    if not isinstance(offset, jax.core.Tracer):
        if int(offset) < 0:
            raise ValueError(f"offset: positions start at 0, got offset {int(offset)}")
        check_length(T + int(offset), T_max, "x (with offset)")
    # A gather rather than dynamic_slice, which would clamp the start and silently reuse the last rows.
    pos = offset + jnp.arange(T)  # [T]
    pos = jnp.where(pos < 0, T_max, pos)  # negative positions would wrap around; send them out of range
    rows = jnp.take(table, pos, axis=0, mode="fill", fill_value=jnp.nan)  # [T, D]
    return x + rows[None].astype(x.dtype)


def rotary_inv_freq(K: int, base: float = 10000.0) -> jax.Array:
    """[K/2] rotation frequencies base^(-2i/K) of RoPE (Su et al., 2021)."""
    if K % 2 != 0:
        raise ValueError(f"K: rotary embeddings need an even head width, got K = {K}")
    return jnp.asarray(base ** (-np.arange(0, K, 2, dtype=np.float64) / K), jnp.float32)


def apply_rotary(x: jax.Array, positions: jax.Array, base: float = 10000.0) -> jax.Array:
    """Rotate x [B, T, N, K] by angle positions[b, t] * inv_freq[i] in each plane (x[i], x[i + K/2]).

    The half-split ("GPT-NeoX") layout: the first K/2 features pair with the last K/2. positions is int[B, T]
    or int[T]. Applied to q and k, the score q_t . k_s depends only on t - s.
    """
    if x.ndim != 4:
        raise ValueError(f"x: expected [B, T, N, K], got {tuple(x.shape)}")
    B, T, N, K = x.shape
    inv_freq = rotary_inv_freq(K, base)
    positions = jnp.asarray(positions)
    if positions.ndim == 1:
        positions = jnp.broadcast_to(positions[None, :], (B, positions.shape[0]))
    if positions.shape != (B, T):
        raise ValueError(f"positions: expected shape (B, T) = ({B}, {T}) or (T,), "
                         f"got {tuple(positions.shape)}")
    angles = positions.astype(jnp.float32)[:, :, None] * inv_freq[None, None, :]  # [B, T, K/2]
    cos = jnp.cos(angles)[:, :, None, :]  # [B, T, 1, K/2]
    sin = jnp.sin(angles)[:, :, None, :]
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)  # [B, T, N, K/2] each
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def sincos_2d_table(height: int, width: int, D: int, base: float = 10000.0, dtype=jnp.float32) -> jax.Array:
    """[height * width, D] fixed 2-D sin-cos table for a grid of patches in row-major order (MAE / ViT-S/16).

    The first D/2 features encode the row, the last D/2 the column, each as a 1-D table of width D/2 laid out
    [sin..., cos...].
    """
    if D % 4 != 0:
        raise ValueError(f"D: 2-D sin-cos encodings need a width divisible by 4, got D = {D}")
    inv_freq = base ** (-np.arange(D // 4, dtype=np.float64) / (D // 4))  # [D/4]

    def one_d(pos):  # [P] -> [P, D/2]
        angles = pos[:, None] * inv_freq[None, :]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    rows, cols = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64),
                             indexing="ij")  # [height, width] each
    table = np.concatenate([one_d(rows.reshape(-1)), one_d(cols.reshape(-1))], axis=1)
    return jnp.asarray(table, dtype)

