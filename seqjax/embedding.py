"""Token embeddings as pure functions: the table lookup and the tied output projection.

The one place token ids become vectors (the NNX `seqjax.nn.Embedding` and the RNN encoder-decoder of
`seqjax.patterns` both call `lookup`). JAX clamps an out-of-range gather index silently inside `jit`; here ids
are checked on the host when they are concrete, and under `jit` an id outside [0, V) reads a row of NaNs, so
a bad id makes the loss NaN (which the trainer stops on and names) instead of a silent wrong answer.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from seqjax.masks import check_token_ids


def lookup(table: jax.Array, ids: jax.Array, name: str = "tokens") -> jax.Array:
    """table [V, E], ids int[...] -> vectors [..., E]."""
    V = table.shape[0]
    check_token_ids(ids, V, name)
    ids = jnp.where(ids < 0, V, ids)  # negative ids would wrap around; send them out of range instead
    return jnp.take(table, ids, axis=0, mode="fill", fill_value=jnp.nan)


def attend(table: jax.Array, x: jax.Array) -> jax.Array:
    """The tied output projection: x [..., E] @ table[V, E]^T -> logits [..., V]."""
    if x.shape[-1] != table.shape[-1]:
        raise ValueError(f"x: expected last axis E = {table.shape[-1]}, got shape {tuple(x.shape)}")
    return jnp.einsum("...e,ve->...v", x, table)
