"""Multi-head attention as an NNX module over `seqjax.attention` (pure functions first, module on top)."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax import attention as attn_lib
from seqjax import decoding, positional
from seqjax import masks as masks_lib
from seqjax.nn.params import ParamTree

# Config values of the attention kernel; "auto" lets seqjax.attention choose (a vendor kernel on GPU/TPU where
# its constraints hold, else by the size of the scores).
IMPLEMENTATIONS = ("auto", *(i for i in attn_lib.IMPLEMENTATIONS if i is not None),
                   *attn_lib.VENDOR_IMPLEMENTATIONS)


def check_implementation(implementation: str) -> str | None:
    """A config's attention implementation -> the argument of `attention.dot_product_attention`."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"attention_implementation: expected one of {IMPLEMENTATIONS}, "
                         f"got {implementation!r}")
    return None if implementation == "auto" else implementation


class AttentionOutput(NamedTuple):
    out: jax.Array  # [B, T, D]
    cache: decoding.KVCache | None  # the updated cache in decode mode
    weights: jax.Array | None  # [B, N, T, S] when return_weights


class MultiHeadAttention(nnx.Module):
    """Self- or cross-attention with grouped-query heads, attention dropout, optional RoPE and a KV cache.

    Parameters: a ParamTree of `attention.MultiHeadParams`: wq [D, N, K], wk/wv [Dc, M, K], wo [N, K, D] and
    biases bq [N, K], bk/bv [M, K], bo [D]. The dropout rate and the kernel (`implementation`, see
    `attention.dot_product_attention`) are fixed at construction.
    """

    def __init__(self, d_model: int, num_heads: int, *, num_kv_heads: int | None, context_dim: int | None,
                 attention_dropout: float, rope: bool, implementation: str, use_bias: bool = True,
                 rope_base: float = 10000.0, rngs: nnx.Rngs):
        N, M, K = attn_lib.head_dims(d_model, num_heads, num_kv_heads)
        self.num_heads, self.num_kv_heads, self.head_dim = N, M, K
        if rope and self.head_dim % 2:
            raise ValueError(f"rope: needs an even head width, got K = {self.head_dim}")
        self.params = ParamTree(attn_lib.init_multi_head(rngs.params(), d_model, num_heads,
                                                         num_kv_heads=num_kv_heads, context_dim=context_dim,
                                                         use_bias=use_bias))
        self.attention_dropout = attention_dropout
        self.implementation = check_implementation(implementation)
        self.rope, self.rope_base = rope, rope_base

    def project_context(self, context: jax.Array) -> decoding.CrossKV:
        """context [B, S, Dc] -> keys and values [B, S, M, K], to pass as `context` at each decode step."""
        return decoding.CrossKV(*attn_lib.project_kv(self.params.get(), context))

    def __call__(self, x: jax.Array, context: jax.Array | decoding.CrossKV | None = None,
                 mask: jax.Array | None = None, *, causal: bool = False, positions: jax.Array | None = None,
                 cache: decoding.KVCache | None = None, key: jax.Array | None = None,
                 return_weights: bool = False) -> AttentionOutput:
        """x [B, T, D] attends over context [B, S, Dc] (None: over itself), or over `project_context`'s
        keys/values of it.

        positions: int[B, T] or [T] for RoPE (default 0..T-1, or cache.index.. in decode mode).
        cache: self-attention decode mode: the T new keys/values are written at cache.index and the queries
        attend causally over everything cached so far; `causal` is then implied.
        """
        p = self.params.get()
        q = attn_lib.project_q(p, x)
        if isinstance(context, decoding.CrossKV):
            k, v = context
            if k.shape[0] != x.shape[0] or k.shape[2:] != (self.num_kv_heads, self.head_dim):
                raise ValueError(f"context: projected keys must be [B, S, M, K] = [{x.shape[0]}, S, "
                                 f"{self.num_kv_heads}, {self.head_dim}], got {tuple(k.shape)}")
        else:
            k, v = attn_lib.project_kv(p, x if context is None else context)
        if self.rope and context is None:
            if positions is None:
                start = 0 if cache is None else cache.index
                positions = start + jnp.arange(x.shape[1])
            q = positional.apply_rotary(q, positions, self.rope_base)
            k = positional.apply_rotary(k, positions, self.rope_base)
        if cache is not None:
            if context is not None:
                raise ValueError("cache: the KV cache is for self-attention; cross-attention takes `context`")
            index = cache.index
            cache = decoding.cache_update(cache, k, v)
            k, v = cache.k, cache.v
            mask = masks_lib.combine_masks(mask, decoding.cache_attention_mask(index, x.shape[1], k.shape[1]))
            causal = False
        res = attn_lib.dot_product_attention(q, k, v, mask, causal=causal,
                                             dropout_rate=self.attention_dropout, key=key,
                                             return_weights=return_weights,
                                             implementation=self.implementation)
        o, w = res if return_weights else (res, None)
        return AttentionOutput(attn_lib.project_out(p, o), cache, w)
