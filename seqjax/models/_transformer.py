"""What the transformer models share: the token + position embedding front end and its checks."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax import decoding, masks, positional
from seqjax.dropout import dropout
from seqjax.nn.blocks import BlockConfig
from seqjax.nn.embedding import Embedding, PositionEmbedding

# Embedding tables start N(0, 0.02^2), as GPT-2 and BERT.
EMBED_INIT_SCALE = 0.02


class TokenEmbedder(nnx.Module):
    """tokens int[B, T] -> token embedding + positions, then `embed_dropout` (active iff key): [B, T, D]."""

    def __init__(self, vocab_size: int, cfg: BlockConfig, *, positions: str, max_len: int,
                 embed_dropout: float, rngs: nnx.Rngs):
        self.embed = Embedding(vocab_size, cfg.d_model, init_scale=EMBED_INIT_SCALE, rngs=rngs)
        self.pos = PositionEmbedding(positions, max_len, cfg.d_model, rngs=rngs)
        self.embed_dropout = embed_dropout

    def add_positions(self, x: jax.Array, *, offset=0, key: jax.Array | None = None) -> jax.Array:
        """Token vectors x [B, T, D] -> with positions and embedding dropout."""
        return dropout(self.pos(x, offset), self.embed_dropout, key)

    def __call__(self, tokens: jax.Array, *, offset=0, key: jax.Array | None = None) -> jax.Array:
        return self.add_positions(self.embed(tokens), offset=offset, key=key)


def block_config(*, d_model: int, num_heads: int, mlp_dim: int, num_kv_heads: int | None,
                 residual_dropout: float, attention_dropout: float, pre_ln: bool, positions: str,
                 activation: str, layer_norm_epsilon: float, attention_implementation: str) -> BlockConfig:
    return BlockConfig(d_model=d_model, num_heads=num_heads, mlp_dim=mlp_dim, num_kv_heads=num_kv_heads,
                       residual_dropout=residual_dropout, attention_dropout=attention_dropout, pre_ln=pre_ln,
                       rope=positions == "rope", activation=activation, layer_norm_epsilon=layer_norm_epsilon,
                       attention_implementation=attention_implementation)


def check_cache_room(cache: decoding.KVCache, t: int) -> None:
    """t new tokens must fit the stacked cache [L, B, S_max, M, K]; the index is checked when concrete."""
    S_max = cache.k.shape[2]
    positional.check_length(t, S_max, "tokens (cache)")
    if not isinstance(cache.index, jax.core.Tracer) and int(cache.index[0]) + t > S_max:
        raise ValueError(f"tokens: writing {t} positions at index {int(cache.index[0])} exceeds the cache "
                         f"length S_max = {S_max}")


def valid_or_all(lengths: jax.Array | None, mask: jax.Array | None, B: int, T: int,
                 name: str = "lengths") -> jax.Array:
    """Padding validity bool[B, T] from lengths or mask (validated, at most one), all True when neither."""
    valid = masks.valid_mask(lengths, mask, B, T, name)
    return jnp.ones((B, T), bool) if valid is None else valid
