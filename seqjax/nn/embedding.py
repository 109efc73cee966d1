"""Token and position embeddings as NNX modules over `seqjax.embedding` and `seqjax.positional`."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax import embedding, positional
from seqjax.nn.params import Kernel, Position

POSITIONS = ("learned", "sinusoidal", "rope", "sincos2d")


class Embedding(nnx.Module):
    """Token ids int[...] -> vectors [..., E] (table [V, E], a `Kernel`); `attend`: the tied output layer."""

    def __init__(self, num_embeddings: int, features: int, *, init_scale: float, rngs: nnx.Rngs):
        """Entries start N(0, init_scale^2)."""
        self.num_embeddings, self.features = num_embeddings, features
        self.table = Kernel(init_scale * jax.random.normal(rngs.params(), (num_embeddings, features)),
                            ("vocab", "embed"))

    def __call__(self, ids: jax.Array) -> jax.Array:
        return embedding.lookup(self.table[...], ids)

    def attend(self, x: jax.Array) -> jax.Array:
        """x [..., E] -> logits [..., V]."""
        return embedding.attend(self.table[...], x)


class PositionEmbedding(nnx.Module):
    """Positions added to x [B, T, D]: a learned [T_max, D] table, the fixed sinusoidal one, fixed 2-D sin-cos
    for a `grid` of patches (leading rows beyond the grid, e.g. a class token, get zeros), or nothing for
    "rope" (rotary positions are applied inside attention)."""

    def __init__(self, kind: str, max_len: int, d_model: int, *, grid: tuple[int, int] | None = None,
                 rngs: nnx.Rngs):
        if kind not in POSITIONS:
            raise ValueError(f"positions: expected one of {POSITIONS}, got {kind!r}")
        if (kind == "sincos2d") != (grid is not None):
            raise ValueError(f"positions={kind!r}: a patch grid is given with 'sincos2d' and only then")
        self.kind, self.max_len, self.d_model, self.grid = kind, max_len, d_model, grid
        if grid is not None and grid[0] * grid[1] > max_len:
            raise ValueError(f"grid: {grid[0]} x {grid[1]} patches exceed max_len = {max_len}")
        self.table = (Position(positional.init_learned_table(rngs.params(), max_len, d_model),
                               ("length", "embed"))
                      if kind == "learned" else None)

    def fixed_table(self) -> jax.Array:
        if self.kind == "sinusoidal":
            return positional.sinusoidal_table(self.max_len, self.d_model)
        P = self.grid[0] * self.grid[1]
        return jnp.concatenate([jnp.zeros((self.max_len - P, self.d_model)),
                                positional.sincos_2d_table(*self.grid, self.d_model)], axis=0)

    def __call__(self, x: jax.Array, offset: int | jax.Array = 0) -> jax.Array:
        positional.check_length(x.shape[1], self.max_len, "tokens")
        if self.kind == "rope":
            return x
        table = self.table[...] if self.kind == "learned" else self.fixed_table()
        return positional.add_positions(x, table, offset)


def init_scale(features: int) -> float:
    """The default embedding init scale 1/sqrt(E) (entries of unit-norm rows on average)."""
    return float(1.0 / np.sqrt(features))
