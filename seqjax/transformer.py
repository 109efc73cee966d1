"""Transformer modules in Flax NNX: attention, blocks, a scanned layer stack, and four model types.

- `Encoder` (bidirectional, BERT-style) and `TransformerClassifier` (CLS or mean pooling on top of it);
- `DecoderOnly` (causal, GPT-style) with optional tied embeddings and KV-cached `generate`;
- `EncoderDecoder` (translation-style, cross-attention) with greedy and beam-search `generate`;
- `ViT` (patches + class token + encoder), with `patchify` / `unpatchify`.

The numerics live in the pure core (seqjax.attention, masks, positional, decoding); these modules hold
parameters and wire the pieces. Depth is a `jax.lax.scan` over a `LayerStack` whose parameters carry a leading
[L] axis, so compile time does not grow with the number of layers. Dropout is active iff a `key` is given.
With `return_attention=True` a forward pass also returns every layer's and head's attention weights, stacked
[L, B, N, T, S]; the default path never computes them.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax import attention as attn_lib
from seqjax import decoding, positional
from seqjax import masks as masks_lib
from seqjax.dropout import dropout
from seqjax.layers import Embedding
from seqjax.masks import check_token_ids

# What a scanned layer keeps for its backward pass: matmul outputs, and the attention weights and output
# that the hand-written attention backward reads (recomputing them would rerun the attention forward).
_policies = jax.checkpoint_policies
_LAYER_POLICY = _policies.save_from_both_policies(
    _policies.dots_saveable, _policies.save_only_these_names(attn_lib.RESIDUAL_NAME))


def _keys(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    return [None] * n if key is None else list(jax.random.split(key, n))


# ---------------------------------------------------------------------------------------------------------
# Attention and blocks
# ---------------------------------------------------------------------------------------------------------


class AttentionOutput(NamedTuple):
    out: jax.Array  # [B, T, D]
    cache: decoding.KVCache | None  # the updated cache in decode mode
    weights: jax.Array | None  # [B, N, T, S] when return_weights


class MultiHeadAttention(nnx.Module):
    """Self- or cross-attention with grouped-query heads, attention dropout, optional RoPE and a KV cache.

    Parameters are those of `seqjax.attention.MultiHeadParams`: wq [D, N, K], wk/wv [Dc, M, K], wo [N, K, D].
    """

    def __init__(self, d_model: int, num_heads: int, *, num_kv_heads: int | None = None,
                 head_dim: int | None = None, context_dim: int | None = None, dropout_rate: float = 0.0,
                 use_bias: bool = True, rope: bool = False, rope_base: float = 10000.0, rngs: nnx.Rngs):
        self.num_heads, self.num_kv_heads, self.head_dim = attn_lib.head_dims(
            d_model, num_heads, num_kv_heads, head_dim)
        if rope and self.head_dim % 2:
            raise ValueError(f"rope: needs an even head width, got K = {self.head_dim}")
        p = attn_lib.init_multi_head(rngs.params(), d_model, num_heads, num_kv_heads=num_kv_heads,
                                     head_dim=head_dim, context_dim=context_dim, use_bias=use_bias)
        self.wq, self.wk, self.wv, self.wo = (nnx.Param(a) for a in (p.wq, p.wk, p.wv, p.wo))
        self.bq, self.bk, self.bv, self.bo = (None if a is None else nnx.Param(a)
                                              for a in (p.bq, p.bk, p.bv, p.bo))
        self.dropout_rate = dropout_rate
        self.rope, self.rope_base = rope, rope_base

    def params(self) -> attn_lib.MultiHeadParams:
        get = lambda p: None if p is None else p[...]
        return attn_lib.MultiHeadParams(*(get(p) for p in (self.wq, self.wk, self.wv, self.wo,
                                                           self.bq, self.bk, self.bv, self.bo)))

    def init_cache(self, batch_size: int, max_len: int, dtype=jnp.float32) -> decoding.KVCache:
        return decoding.init_cache(batch_size, max_len, self.num_kv_heads, self.head_dim, dtype)

    def project_context(self, context: jax.Array) -> decoding.CrossKV:
        """context [B, S, Dc] -> keys and values [B, S, M, K], to pass as `context` at each decode step."""
        return decoding.CrossKV(*attn_lib.project_kv(self.params(), context))

    def __call__(self, x: jax.Array, context: jax.Array | decoding.CrossKV | None = None,
                 mask: jax.Array | None = None, *,
                 causal: bool = False, positions: jax.Array | None = None,
                 cache: decoding.KVCache | None = None,
                 key: jax.Array | None = None, return_weights: bool = False,
                 implementation: str | None = None) -> AttentionOutput:
        """x [B, T, D] attends over context [B, S, Dc] (None: over itself), or over `project_context`'s
        keys/values of it.

        positions: int[B, T] or [T] for RoPE (default 0..T-1, or cache.index.. in decode mode).
        cache: self-attention decode mode: the T new keys/values are written at cache.index and the queries
        attend causally over everything cached so far; `causal` is then implied.
        """
        p = self.params()
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
        res = attn_lib.dot_product_attention(q, k, v, mask, causal=causal, dropout_rate=self.dropout_rate,
                                             key=key, return_weights=return_weights,
                                             implementation=implementation)
        o, w = res if return_weights else (res, None)
        return AttentionOutput(attn_lib.project_out(p, o), cache, w)


class MLP(nnx.Module):
    """Position-wise feed-forward D -> F -> D with GELU."""

    def __init__(self, d_model: int, mlp_dim: int, *, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(d_model, mlp_dim, rngs=rngs)
        self.fc2 = nnx.Linear(mlp_dim, d_model, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.gelu(self.fc1(x)))


class BlockOutput(NamedTuple):
    x: jax.Array  # [B, T, D]
    cache: decoding.KVCache | None
    weights: dict[str, jax.Array]  # "self" [B, N, T, T or S_max], "cross" [B, N, T, S]; empty by default


class TransformerBlock(nnx.Module):
    """Self-attention (+ optional cross-attention) + MLP, each a residual branch.

    Pre-LN (default): x + f(LN(x)), as GPT-2/ViT; post-LN: LN(x + f(x)), as the original Transformer/BERT.
    Dropout: `attention_dropout_rate` on attention weights, `dropout_rate` on each branch's output.
    """

    def __init__(self, d_model: int, num_heads: int, mlp_dim: int, *, cross_attention: bool = False,
                 num_kv_heads: int | None = None, dropout_rate: float = 0.0,
                 attention_dropout_rate: float = 0.0,
                 pre_ln: bool = True, rope: bool = False, rngs: nnx.Rngs):
        self.self_attn = MultiHeadAttention(d_model, num_heads, num_kv_heads=num_kv_heads,
                                            dropout_rate=attention_dropout_rate, rope=rope, rngs=rngs)
        self.ln1 = nnx.LayerNorm(d_model, rngs=rngs)
        self.cross_attn = (MultiHeadAttention(d_model, num_heads, num_kv_heads=num_kv_heads,
                                              dropout_rate=attention_dropout_rate, rngs=rngs)
                           if cross_attention else None)
        self.ln_cross = nnx.LayerNorm(d_model, rngs=rngs) if cross_attention else None
        self.mlp = MLP(d_model, mlp_dim, rngs=rngs)
        self.ln2 = nnx.LayerNorm(d_model, rngs=rngs)
        self.dropout_rate, self.pre_ln = dropout_rate, pre_ln

    def _residual(self, x, ln, f, key):
        """Pre-LN: x + drop(f(LN(x))); post-LN: LN(x + drop(f(x)))."""
        if self.pre_ln:
            y, aux = f(ln(x))
            return x + dropout(y, self.dropout_rate, key), aux
        y, aux = f(x)
        return ln(x + dropout(y, self.dropout_rate, key)), aux

    def __call__(self, x: jax.Array, mask: jax.Array | None = None, *, causal: bool = False,
                 context: jax.Array | None = None, context_mask: jax.Array | None = None,
                 cache: decoding.KVCache | None = None, key: jax.Array | None = None,
                 return_attention: bool = False, implementation: str | None = None) -> BlockOutput:
        """x [B, T, D]; mask broadcastable to [B, N, T, T]; context [B, S, D], context_mask [B, N, T, S]."""
        k_attn, k_res1, k_cross, k_res2, k_res3 = _keys(key, 5)
        weights = {}

        def self_branch(h):
            r = self.self_attn(h, None, mask, causal=causal, cache=cache, key=k_attn,
                               return_weights=return_attention, implementation=implementation)
            return r.out, r

        x, r = self._residual(x, self.ln1, self_branch, k_res1)
        new_cache = r.cache
        if return_attention:
            weights["self"] = r.weights
        if self.cross_attn is not None:
            if context is None:
                raise ValueError("context: this block has cross-attention and needs the encoder output")

            def cross_branch(h):
                r = self.cross_attn(h, context, context_mask, key=k_cross, return_weights=return_attention,
                                    implementation=implementation)
                return r.out, r

            x, r = self._residual(x, self.ln_cross, cross_branch, k_res2)
            if return_attention:
                weights["cross"] = r.weights
        x, _ = self._residual(x, self.ln2, lambda h: (self.mlp(h), None), k_res3)
        return BlockOutput(x, new_cache, weights)


class EncoderBlock(TransformerBlock):
    """Bidirectional self-attention + MLP (no cross-attention)."""

    def __init__(self, d_model: int, num_heads: int, mlp_dim: int, **kwargs):
        super().__init__(d_model, num_heads, mlp_dim, cross_attention=False, **kwargs)


class DecoderBlock(TransformerBlock):
    """Causal self-attention (+ cross-attention over an encoder output when cross_attention=True) + MLP."""

    def __call__(self, x, mask=None, **kwargs) -> BlockOutput:
        return super().__call__(x, mask, causal=kwargs.pop("causal", True), **kwargs)


class LayerStack(nnx.Module):
    """L blocks of identical structure with parameters stacked on a leading [L] axis, run by jax.lax.scan.

    `make_block(rngs)` builds one block; it is called once per layer and the parameters are stacked, so every
    parameter gets shape [L, ...]. remat=True rematerialises each layer in the backward pass.
    """

    def __init__(self, make_block: Callable[[nnx.Rngs], nnx.Module], num_layers: int, *, remat: bool = False,
                 rngs: nnx.Rngs):
        if num_layers < 1:
            raise ValueError(f"num_layers: must be >= 1, got {num_layers}")
        # Blocks are built one by one (eager initialiser ops are cached across layers and models, where a
        # vmapped or jitted initialiser would compile afresh for every stack) and their states stacked.
        keys = jax.random.split(rngs.params(), num_layers)
        blocks = [nnx.split(make_block(nnx.Rngs(params=k))) for k in keys]
        states = jax.tree.map(lambda *leaves: jnp.stack(leaves), *(state for _, state in blocks))
        self.blocks = nnx.merge(blocks[0][0], states)
        self.num_layers, self.remat = num_layers, remat

    def __call__(self, x: jax.Array, *, cache: decoding.KVCache | None = None, key: jax.Array | None = None,
                 per_layer: dict[str, Any] | None = None, **block_kwargs) -> BlockOutput:
        """Apply the L blocks in order; cache (if any) is stacked [L, ...]; weights come back as [L, ...].

        per_layer: block arguments that differ by layer, each stacked [L, ...] (e.g. the decoder's projected
        cross-attention keys/values); block_kwargs go to every layer as they are. Equivalent to:
            for l in range(L):
                x, cache[l], weights[l] = block[l](x, cache=cache[l], key=keys[l],
                                                   **{k: a[l] for k, a in per_layer.items()}, **block_kwargs)
        """
        graphdef, state = nnx.split(self.blocks)
        keys = None if key is None else jax.random.split(key, self.num_layers)
        per_layer = per_layer or {}
        for name, tree in per_layer.items():
            if name in block_kwargs or any(a.shape[0] != self.num_layers for a in jax.tree.leaves(tree)):
                raise ValueError(f"per_layer[{name!r}]: expected arrays stacked [L = {self.num_layers}, ...] "
                                 "and a name not also given to every layer")

        def body(x, xs):
            layer_state, layer_key, layer_cache, layer_args = xs
            out = nnx.merge(graphdef, layer_state)(x, cache=layer_cache, key=layer_key, **layer_args,
                                                   **block_kwargs)
            return out.x, (out.cache, out.weights)

        if self.remat:
            body = jax.checkpoint(body)
        else:
            # Keep only matmul outputs (and attention's residuals) per layer: the elementwise intermediates
            # (GELU, LayerNorm) are recomputed in the backward pass rather than stacked [L, ...] in memory,
            # which made the scanned train step ~30% slower than an unrolled loop on CPU.
            body = jax.checkpoint(body, policy=_LAYER_POLICY)
        x, (cache, weights) = jax.lax.scan(body, x, (state, keys, cache, per_layer))
        return BlockOutput(x, cache, weights)


# ---------------------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------------------


class PositionEmbedding(nnx.Module):
    """Additive positions: a learned [T_max, D] table or the fixed sinusoidal one; 'rope' adds nothing."""

    def __init__(self, kind: str, max_len: int, d_model: int, *, rngs: nnx.Rngs):
        if kind not in ("learned", "sinusoidal", "rope"):
            raise ValueError(f"positions: expected 'learned', 'sinusoidal' or 'rope', got {kind!r}")
        self.kind, self.max_len, self.d_model = kind, max_len, d_model
        self.table = (nnx.Param(positional.init_learned_table(rngs.params(), max_len, d_model))
                      if kind == "learned" else None)

    def __call__(self, x: jax.Array, offset: int | jax.Array = 0) -> jax.Array:
        positional.check_length(x.shape[1], self.max_len, "tokens")
        if self.kind == "rope":
            return x
        table = self.table[...] if self.kind == "learned" else positional.sinusoidal_table(self.max_len,
                                                                                            self.d_model)
        return positional.add_positions(x, table, offset)


def _valid_mask(lengths, mask, B: int, T: int, name: str = "lengths") -> jax.Array | None:
    """Padding mask bool[B, T] from lengths int[B] or mask bool[B, T] (at most one), validated; or None."""
    if lengths is not None and mask is not None:
        raise ValueError(f"{name}, mask: pass at most one")
    if lengths is not None:
        masks_lib.check_lengths(lengths, B, T, name)
        return masks_lib.lengths_to_mask(lengths, T)
    if mask is not None:
        masks_lib.check_mask(mask, B, T)
        return mask.astype(bool)
    return None


def _check_cache_room(cache: decoding.KVCache, t: int) -> None:
    """t new tokens must fit the stacked cache [L, B, S_max, M, K]; the index is checked when concrete."""
    S_max = cache.k.shape[2]
    positional.check_length(t, S_max, "tokens (cache)")
    if not isinstance(cache.index, jax.core.Tracer) and int(cache.index[0]) + t > S_max:
        raise ValueError(f"tokens: writing {t} positions at index {int(cache.index[0])} exceeds the cache "
                         f"length S_max = {S_max}")


def _block_kwargs(num_kv_heads, dropout_rate, attention_dropout_rate, pre_ln, rope) -> dict[str, Any]:
    return dict(num_kv_heads=num_kv_heads, dropout_rate=dropout_rate,
                attention_dropout_rate=attention_dropout_rate,
                pre_ln=pre_ln, rope=rope)


class EncoderStack(nnx.Module):
    """Scanned encoder blocks + final LayerNorm (pre-LN) over x [B, T, D]."""

    def __init__(self, d_model: int, num_heads: int, num_layers: int, mlp_dim: int, *,
                 num_kv_heads: int | None = None, dropout_rate: float = 0.0,
                 attention_dropout_rate: float = 0.0,
                 pre_ln: bool = True, rope: bool = False, remat: bool = False, rngs: nnx.Rngs):
        kw = _block_kwargs(num_kv_heads, dropout_rate, attention_dropout_rate, pre_ln, rope)
        self.layers = LayerStack(lambda r: EncoderBlock(d_model, num_heads, mlp_dim, rngs=r, **kw),
                                 num_layers, remat=remat, rngs=rngs)
        self.ln_f = nnx.LayerNorm(d_model, rngs=rngs) if pre_ln else None

    def __call__(self, x, mask=None, *, key=None, return_attention=False, implementation=None):
        out = self.layers(x, mask=mask, key=key, return_attention=return_attention,
                          implementation=implementation)
        h = out.x if self.ln_f is None else self.ln_f(out.x)
        return h, (out.weights.get("self") if return_attention else None)


# ---------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------


class Encoder(nnx.Module):
    """Bidirectional (BERT-style) encoder: tokens int[B, T] (+ lengths) -> hidden states [B, T, D]."""

    def __init__(self, vocab_size: int, d_model: int, num_heads: int, num_layers: int, mlp_dim: int,
                 max_len: int, *, positions: str = "learned", num_kv_heads: int | None = None,
                 dropout_rate: float = 0.0, attention_dropout_rate: float = 0.0, pre_ln: bool = True,
                 remat: bool = False, rngs: nnx.Rngs):
        self.embed = Embedding(vocab_size, d_model, init_scale=0.02, rngs=rngs)
        self.pos = PositionEmbedding(positions, max_len, d_model, rngs=rngs)
        self.stack = EncoderStack(d_model, num_heads, num_layers, mlp_dim, num_kv_heads=num_kv_heads,
                                  dropout_rate=dropout_rate, attention_dropout_rate=attention_dropout_rate,
                                  pre_ln=pre_ln, rope=positions == "rope", remat=remat, rngs=rngs)
        self.dropout_rate = dropout_rate

    def encode_embeddings(self, x: jax.Array, attn_mask: jax.Array | None = None, *, key=None,
                          return_attention=False, implementation=None):
        """x [B, T, D] token embeddings (no positions yet) -> (h [B, T, D], weights [L, B, N, T, T])."""
        k_emb, k_stack = _keys(key, 2)
        x = dropout(self.pos(x), self.dropout_rate, k_emb)
        return self.stack(x, attn_mask, key=k_stack, return_attention=return_attention,
                          implementation=implementation)

    def __call__(self, tokens: jax.Array, lengths: jax.Array | None = None, *, mask: jax.Array | None = None,
                 key: jax.Array | None = None, return_attention: bool = False,
                 implementation: str | None = None):
        """Returns h [B, T, D], or (h, weights [L, B, N, T, T]) with return_attention."""
        valid = _valid_mask(lengths, mask, *tokens.shape)
        attn_mask = None if valid is None else masks_lib.padding_mask(valid)
        h, w = self.encode_embeddings(self.embed(tokens), attn_mask, key=key,
                                      return_attention=return_attention, implementation=implementation)
        return (h, w) if return_attention else h


class TransformerClassifier(nnx.Module):
    """Encoder + pooling + linear head: tokens int[B, T] -> logits [B, C].

    pooling="cls": a learned [CLS] vector is prepended (the encoder sees T + 1 positions) and its output is
    classified; pooling="mean": the mean of the valid positions' outputs.
    """

    def __init__(self, num_classes: int, vocab_size: int, d_model: int, num_heads: int, num_layers: int,
                 mlp_dim: int, max_len: int, *, pooling: str = "cls", rngs: nnx.Rngs, **encoder_kwargs):
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling: expected 'cls' or 'mean', got {pooling!r}")
        self.encoder = Encoder(vocab_size, d_model, num_heads, num_layers, mlp_dim, max_len, rngs=rngs,
                               **encoder_kwargs)
        self.cls = nnx.Param(jnp.zeros((d_model,))) if pooling == "cls" else None
        self.head = nnx.Linear(d_model, num_classes, rngs=rngs)
        self.pooling = pooling

    def __call__(self, tokens: jax.Array, lengths: jax.Array | None = None, *, mask: jax.Array | None = None,
                 key: jax.Array | None = None, return_attention: bool = False,
                 implementation: str | None = None):
        B, T = tokens.shape
        x = self.encoder.embed(tokens)
        valid = _valid_mask(lengths, mask, B, T)
        valid = jnp.ones((B, T), bool) if valid is None else valid
        if self.pooling == "cls":
            cls = jnp.broadcast_to(self.cls[...][None, None, :], (B, 1, x.shape[-1]))
            x = jnp.concatenate([cls.astype(x.dtype), x], axis=1)  # [B, 1 + T, D]
            valid = jnp.concatenate([jnp.ones((B, 1), bool), valid], axis=1)
        h, w = self.encoder.encode_embeddings(x, masks_lib.padding_mask(valid), key=key,
                                              return_attention=return_attention,
                                              implementation=implementation)
        if self.pooling == "cls":
            pooled = h[:, 0]
        else:
            wts = valid.astype(h.dtype)[:, :, None]
            pooled = jnp.sum(h * wts, axis=1) / jnp.maximum(jnp.sum(wts, axis=1), 1.0)
        logits = self.head(pooled)
        return (logits, w) if return_attention else logits


class DecoderOnly(nnx.Module):
    """Causal (GPT-style) language model: tokens int[B, T] -> next-token logits [B, T, V]."""

    def __init__(self, vocab_size: int, d_model: int, num_heads: int, num_layers: int, mlp_dim: int,
                 max_len: int, *, tie_embeddings: bool = True, positions: str = "learned",
                 num_kv_heads: int | None = None, dropout_rate: float = 0.0,
                 attention_dropout_rate: float = 0.0,
                 pre_ln: bool = True, remat: bool = False, rngs: nnx.Rngs):
        self.vocab_size, self.max_len = vocab_size, max_len
        self.embed = Embedding(vocab_size, d_model, init_scale=0.02, rngs=rngs)
        self.pos = PositionEmbedding(positions, max_len, d_model, rngs=rngs)
        kw = _block_kwargs(num_kv_heads, dropout_rate, attention_dropout_rate, pre_ln, positions == "rope")
        self.layers = LayerStack(lambda r: DecoderBlock(d_model, num_heads, mlp_dim, rngs=r, **kw),
                                 num_layers, remat=remat, rngs=rngs)
        self.ln_f = nnx.LayerNorm(d_model, rngs=rngs) if pre_ln else None
        self.head = None if tie_embeddings else nnx.Linear(d_model, vocab_size, rngs=rngs)
        self.dropout_rate = dropout_rate
        self.num_kv_heads, self.head_dim = attn_lib.head_dims(d_model, num_heads, num_kv_heads)[1:]

    def logits(self, h: jax.Array) -> jax.Array:
        h = h if self.ln_f is None else self.ln_f(h)
        return self.embed.attend(h) if self.head is None else self.head(h)

    def transform(self, x: jax.Array, *, offset=0, cache=None, key=None, return_attention=False,
                  implementation=None):
        """Token embeddings x [B, T, D] -> (logits [B, T, V], cache, weights [L, B, N, T, S] or None)."""
        k_emb, k_stack = _keys(key, 2)
        x = dropout(self.pos(x, offset), self.dropout_rate, k_emb)
        out = self.layers(x, cache=cache, key=k_stack, return_attention=return_attention,
                          implementation=implementation)
        return self.logits(out.x), out.cache, (out.weights.get("self") if return_attention else None)

    def __call__(self, tokens: jax.Array, *, key: jax.Array | None = None, return_attention: bool = False,
                 implementation: str | None = None):
        """Returns logits [B, T, V], or (logits, weights [L, B, N, T, T]) with return_attention."""
        logits, _, w = self.transform(self.embed(tokens), key=key, return_attention=return_attention,
                                      implementation=implementation)
        return (logits, w) if return_attention else logits

    def init_cache(self, batch_size: int, max_len: int | None = None, dtype=jnp.float32) -> decoding.KVCache:
        """Stacked empty cache: k, v [L, B, S_max, M, K], index [L]; S_max defaults to the position table."""
        S = self.max_len if max_len is None else max_len
        positional.check_length(S, self.max_len, "max_len")
        one = decoding.init_cache(batch_size, S, self.num_kv_heads, self.head_dim, dtype)
        return jax.tree.map(lambda a: jnp.broadcast_to(a, (self.layers.num_layers, *a.shape)), one)

    def decode(self, tokens: jax.Array, cache: decoding.KVCache) -> tuple[jax.Array, decoding.KVCache]:
        """Feed tokens int[B, t] after the cached prefix: (logits [B, t, V], updated cache)."""
        _check_cache_room(cache, tokens.shape[1])
        logits, cache, _ = self.transform(self.embed(tokens), offset=cache.index[0], cache=cache)
        return logits, cache

    def generate(self, prompt: jax.Array, max_new_tokens: int, *, key: jax.Array | None = None,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 eos_id: int | None = None, pad_id: int = 0) -> jax.Array:
        """prompt int[B, T0] -> int[B, T0 + max_new_tokens]; greedy when key is None (decoding.generate)."""
        check_token_ids(prompt, self.vocab_size, "prompt")
        need = prompt.shape[1] + max_new_tokens - 1  # the last token is never fed back
        positional.check_length(need, self.max_len, "prompt + max_new_tokens - 1")
        return _generate_lm(self, prompt, key, max_new_tokens=max_new_tokens, temperature=temperature,
                            top_k=top_k, top_p=top_p, eos_id=eos_id, pad_id=pad_id)


@nnx.jit(static_argnames=("max_new_tokens", "temperature", "top_k", "top_p", "eos_id", "pad_id"))
def _generate_lm(model: DecoderOnly, prompt, key, *, max_new_tokens, temperature, top_k, top_p, eos_id,
                 pad_id):
    cache = model.init_cache(prompt.shape[0], prompt.shape[1] + max_new_tokens - 1)

    def step_fn(tokens, cache):
        logits, cache = model.decode(tokens, cache)
        return logits[:, -1], cache

    return decoding.generate(step_fn, prompt, cache, max_new_tokens, key=key, temperature=temperature,
                             top_k=top_k, top_p=top_p, eos_id=eos_id, pad_id=pad_id)


class EncoderDecoder(nnx.Module):
    """Translation-style transformer: source int[B, S] -> encoder; target int[B, T] -> logits [B, T, V]."""

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, d_model: int, num_heads: int,
                 num_encoder_layers: int, num_decoder_layers: int, mlp_dim: int, max_src_len: int,
                 max_tgt_len: int, *, tie_embeddings: bool = True, positions: str = "learned",
                 num_kv_heads: int | None = None, dropout_rate: float = 0.0,
                 attention_dropout_rate: float = 0.0,
                 pre_ln: bool = True, remat: bool = False, rngs: nnx.Rngs):
        self.encoder = Encoder(src_vocab_size, d_model, num_heads, num_encoder_layers, mlp_dim, max_src_len,
                               positions=positions, num_kv_heads=num_kv_heads, dropout_rate=dropout_rate,
                               attention_dropout_rate=attention_dropout_rate, pre_ln=pre_ln, remat=remat,
                               rngs=rngs)
        self.tgt_vocab_size, self.max_tgt_len = tgt_vocab_size, max_tgt_len
        self.embed = Embedding(tgt_vocab_size, d_model, init_scale=0.02, rngs=rngs)
        self.pos = PositionEmbedding(positions, max_tgt_len, d_model, rngs=rngs)
        kw = _block_kwargs(num_kv_heads, dropout_rate, attention_dropout_rate, pre_ln, positions == "rope")
        self.layers = LayerStack(
            lambda r: DecoderBlock(d_model, num_heads, mlp_dim, cross_attention=True, rngs=r, **kw),
            num_decoder_layers, remat=remat, rngs=rngs)
        self.ln_f = nnx.LayerNorm(d_model, rngs=rngs) if pre_ln else None
        self.head = None if tie_embeddings else nnx.Linear(d_model, tgt_vocab_size, rngs=rngs)
        self.dropout_rate = dropout_rate
        self.num_kv_heads, self.head_dim = attn_lib.head_dims(d_model, num_heads, num_kv_heads)[1:]

    def encode(self, src: jax.Array, src_lengths: jax.Array | None = None, *, key=None,
               return_attention=False,
               implementation=None) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        """-> (memory [B, S, D], source validity bool[B, S], encoder weights [L, B, N, S, S] or None)."""
        valid = _valid_mask(src_lengths, None, *src.shape, "src_lengths")
        valid = jnp.ones(src.shape, bool) if valid is None else valid
        memory, w = self.encoder.encode_embeddings(self.encoder.embed(src), masks_lib.padding_mask(valid),
                                                   key=key, return_attention=return_attention,
                                                   implementation=implementation)
        return memory, valid, w

    def project_memory(self, memory: jax.Array) -> decoding.CrossKV:
        """Encoder output [B, S, D] -> every decoder layer's cross-attention keys/values [L, B, S, M, K].

        Decoding passes these in place of `memory`, so they are projected once per source, not per token.
        """
        graphdef, state = nnx.split(self.layers.blocks)
        # [L]-stacked block parameters: vmap projects the same memory with each layer's weights.
        return jax.vmap(lambda layer: nnx.merge(graphdef, layer).cross_attn.project_context(memory))(state)

    def decode_embeddings(self, y: jax.Array, memory: jax.Array | decoding.CrossKV, src_valid: jax.Array, *,
                          offset=0, cache=None,
                          key=None, return_attention=False, implementation=None):
        """Target embeddings y [B, T, D] -> (logits [B, T, V], cache, {"self", "cross"} weights or {}).

        memory: the encoder output [B, S, D], or `project_memory(memory)`.
        """
        k_emb, k_stack = _keys(key, 2)
        y = dropout(self.pos(y, offset), self.dropout_rate, k_emb)
        context = ({"per_layer": {"context": memory}} if isinstance(memory, decoding.CrossKV)
                   else {"context": memory})
        out = self.layers(y, cache=cache, key=k_stack, **context,
                          context_mask=masks_lib.cross_attention_mask(src_valid),
                          return_attention=return_attention,
                          implementation=implementation)
        h = out.x if self.ln_f is None else self.ln_f(out.x)
        logits = self.embed.attend(h) if self.head is None else self.head(h)
        return logits, out.cache, out.weights

    def __call__(self, src: jax.Array, tgt: jax.Array, src_lengths: jax.Array | None = None, *,
                 key: jax.Array | None = None, return_attention: bool = False,
                 implementation: str | None = None):
        """Teacher forcing: src int[B, S], tgt int[B, T] (decoder inputs) -> logits [B, T, V_tgt].

        With return_attention: (logits, {"encoder": [L, B, N, S, S], "self": [L, B, N, T, T],
        "cross": [L, B, N, T, S]}).
        """
        k_enc, k_dec = _keys(key, 2)
        memory, valid, w_enc = self.encode(src, src_lengths, key=k_enc, return_attention=return_attention,
                                           implementation=implementation)
        logits, _, w = self.decode_embeddings(self.embed(tgt), memory, valid, key=k_dec,
                                              return_attention=return_attention,
                                              implementation=implementation)
        if return_attention:
            return logits, {"encoder": w_enc, **w}
        return logits

    def init_cache(self, batch_size: int, max_len: int | None = None, dtype=jnp.float32) -> decoding.KVCache:
        """Stacked empty decoder self-attention cache: k, v [L, B, S_max, M, K], index [L]."""
        S = self.max_tgt_len if max_len is None else max_len
        positional.check_length(S, self.max_tgt_len, "max_len")
        one = decoding.init_cache(batch_size, S, self.num_kv_heads, self.head_dim, dtype)
        return jax.tree.map(lambda a: jnp.broadcast_to(a, (self.layers.num_layers, *a.shape)), one)

    def decode(self, tokens: jax.Array, memory: jax.Array | decoding.CrossKV, src_valid: jax.Array,
               cache: decoding.KVCache):
        """Feed target tokens int[B, t] after the cached prefix: (logits [B, t, V], updated cache).

        memory: the encoder output [B, S, D], or (cheaper when decoding many steps) `project_memory(memory)`.
        """
        _check_cache_room(cache, tokens.shape[1])
        logits, cache, _ = self.decode_embeddings(self.embed(tokens), memory, src_valid,
                                                  offset=cache.index[0],
                                                  cache=cache)
        return logits, cache

    def generate(self, src: jax.Array, src_lengths: jax.Array | None = None, *, max_new_tokens: int,
                 bos_id: int,
                 eos_id: int | None = None, pad_id: int = 0, beam_size: int = 1, alpha: float = 0.6,
                 key: jax.Array | None = None, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None):
        """Translate src int[B, S]. beam_size=1: greedy/sampled tokens int[B, 1 + max_new] (BOS first);
        beam_size>1: (sequences int[B, W, 1 + max_new], scores float32[B, W]) best first."""
        check_token_ids(src, self.encoder.embed.num_embeddings, "src")
        positional.check_length(max_new_tokens, self.max_tgt_len, "max_new_tokens")
        if src_lengths is not None:
            masks_lib.check_lengths(src_lengths, *src.shape, "src_lengths")
        return _generate_seq2seq(self, src, src_lengths, key, max_new_tokens=max_new_tokens, bos_id=bos_id,
                                 eos_id=eos_id, pad_id=pad_id, beam_size=beam_size, alpha=alpha,
                                 temperature=temperature, top_k=top_k, top_p=top_p)


@nnx.jit(static_argnames=("max_new_tokens", "bos_id", "eos_id", "pad_id", "beam_size", "alpha", "temperature",
                          "top_k", "top_p"))
def _generate_seq2seq(model: EncoderDecoder, src, src_lengths, key, *, max_new_tokens, bos_id, eos_id, pad_id,
                      beam_size, alpha, temperature, top_k, top_p):
    memory, valid, _ = model.encode(src, src_lengths)
    cross = model.project_memory(memory)  # [L, B, S, M, K]
    B, W = src.shape[0], beam_size
    if W > 1:  # every beam row b * W + w attends to source b
        cross = jax.tree.map(lambda a: jnp.repeat(a, W, axis=1), cross)
        valid = jnp.repeat(valid, W, axis=0)
    cache = model.init_cache(B * W, max_new_tokens)

    def step_fn(tokens, cache):
        logits, cache = model.decode(tokens, cross, valid, cache)
        return logits[:, -1], cache

    prompt = jnp.full((B, 1), bos_id, jnp.int32)
    if W == 1:
        return decoding.generate(step_fn, prompt, cache, max_new_tokens, key=key, temperature=temperature,
                                 top_k=top_k, top_p=top_p, eos_id=eos_id, pad_id=pad_id)
    return decoding.beam_search(step_fn, prompt, cache, max_new_tokens, beam_size=W, eos_id=eos_id,
                                pad_id=pad_id, alpha=alpha, cache_batch_axis=1)


# ---------------------------------------------------------------------------------------------------------
# Vision Transformer
# ---------------------------------------------------------------------------------------------------------


def _pair(x) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else tuple(x)


def patchify(images: jax.Array, patch_size: int | tuple[int, int]) -> jax.Array:
    """images [B, H, W, C] -> patches [B, P, ph * pw * C], P = (H / ph) * (W / pw), row-major patch order."""
    ph, pw = _pair(patch_size)
    if images.ndim != 4:
        raise ValueError(f"images: expected [B, height, width, channels], got {tuple(images.shape)}")
    B, H, W, C = images.shape
    if H % ph or W % pw:
        raise ValueError(f"images: height x width = {H} x {W} must be divisible by the patch size "
                         f"{ph} x {pw}")
    x = images.reshape(B, H // ph, ph, W // pw, pw, C)  # [B, gh, ph, gw, pw, C]
    x = x.transpose(0, 1, 3, 2, 4, 5)  # [B, gh, gw, ph, pw, C]
    return x.reshape(B, (H // ph) * (W // pw), ph * pw * C)


def unpatchify(patches: jax.Array, patch_size: int | tuple[int, int], height: int, width: int) -> jax.Array:
    """Inverse of `patchify`: patches [B, P, ph * pw * C] -> images [B, height, width, C]."""
    ph, pw = _pair(patch_size)
    if height % ph or width % pw:
        raise ValueError(f"height x width = {height} x {width} must be divisible by the patch size "
                         f"{ph} x {pw}")
    B, P, F = patches.shape
    gh, gw = height // ph, width // pw
    if P != gh * gw or F % (ph * pw):
        raise ValueError(f"patches: expected [B, {gh * gw}, ph * pw * C] for {height} x {width} images, "
                         f"got {tuple(patches.shape)}")
    C = F // (ph * pw)
    x = patches.reshape(B, gh, gw, ph, pw, C).transpose(0, 1, 3, 2, 4, 5)  # [B, gh, ph, gw, pw, C]
    return x.reshape(B, height, width, C)


class ViT(nnx.Module):
    """Vision Transformer (Dosovitskiy et al., 2021): images [B, H, W, C] -> logits [B, classes].

    Patches of patch_size (16 x 16 by default) are linearly embedded, a class token is prepended, positions
    are added (learned [1 + P, D] or fixed 2-D sin-cos with a zero vector for the class token), and the class
    token's final state is classified (pooling="cls") or the patch states are averaged (pooling="mean").
    """

    def __init__(self, num_classes: int, image_size: int | tuple[int, int], d_model: int, num_heads: int,
                 num_layers: int, mlp_dim: int, *, patch_size: int | tuple[int, int] = 16, channels: int = 3,
                 positions: str = "learned", pooling: str = "cls", dropout_rate: float = 0.0,
                 attention_dropout_rate: float = 0.0, remat: bool = False, rngs: nnx.Rngs):
        self.image_size, self.patch_size = _pair(image_size), _pair(patch_size)
        (H, W), (ph, pw) = self.image_size, self.patch_size
        if H % ph or W % pw:
            raise ValueError(f"image_size: {H} x {W} must be divisible by the patch size {ph} x {pw}")
        if positions not in ("learned", "sincos2d"):
            raise ValueError(f"positions: expected 'learned' or 'sincos2d', got {positions!r}")
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling: expected 'cls' or 'mean', got {pooling!r}")
        self.grid = (H // ph, W // pw)
        self.channels, self.positions, self.pooling = channels, positions, pooling
        self.dropout_rate = dropout_rate
        self.patch_embed = nnx.Linear(ph * pw * channels, d_model, rngs=rngs)
        self.cls = nnx.Param(jnp.zeros((d_model,)))
        num_patches = self.grid[0] * self.grid[1]
        self.pos_table = (nnx.Param(positional.init_learned_table(rngs.params(), 1 + num_patches, d_model))
                          if positions == "learned" else None)
        self.stack = EncoderStack(d_model, num_heads, num_layers, mlp_dim, dropout_rate=dropout_rate,
                                  attention_dropout_rate=attention_dropout_rate, remat=remat, rngs=rngs)
        self.head = nnx.Linear(d_model, num_classes, rngs=rngs)

    def __call__(self, images: jax.Array, *, key: jax.Array | None = None, return_attention: bool = False,
                 implementation: str | None = None):
        """Returns logits [B, classes], or (logits, weights [L, B, N, 1 + P, 1 + P]) with return_attention."""
        if images.ndim != 4 or images.shape[1:] != (*self.image_size, self.channels):
            raise ValueError(f"images: expected [B, {self.image_size[0]}, {self.image_size[1]}, "
                             f"{self.channels}], "
                             f"got {tuple(images.shape)}")
        x = self.patch_embed(patchify(images, self.patch_size))  # [B, P, D]
        B, _, D = x.shape
        cls = jnp.broadcast_to(self.cls[...][None, None, :], (B, 1, D)).astype(x.dtype)
        x = jnp.concatenate([cls, x], axis=1)  # [B, 1 + P, D]
        if self.pos_table is not None:
            table = self.pos_table[...]
        else:
            table = jnp.concatenate([jnp.zeros((1, D)), positional.sincos_2d_table(*self.grid, D)], axis=0)
        x = x + table[None].astype(x.dtype)
        k_emb, k_stack = _keys(key, 2)
        h, w = self.stack(dropout(x, self.dropout_rate, k_emb), key=k_stack,
                          return_attention=return_attention,
                          implementation=implementation)
        pooled = h[:, 0] if self.pooling == "cls" else jnp.mean(h[:, 1:], axis=1)
        logits = self.head(pooled)
        return (logits, w) if return_attention else logits


# ---------------------------------------------------------------------------------------------------------
# Named variants
# ---------------------------------------------------------------------------------------------------------


class Variant(NamedTuple):
    model: type
    kwargs: dict[str, Any]


VARIANTS: dict[str, Variant] = {
    # character-level GPT for Shakespeare (V = 65 characters)
    "gpt-char": Variant(DecoderOnly, dict(vocab_size=65, d_model=128, num_heads=4, num_layers=4, mlp_dim=512,
                                          max_len=128)),
    "gpt-mini": Variant(DecoderOnly, dict(vocab_size=8192, d_model=256, num_heads=8, num_layers=6,
                                          mlp_dim=1024, max_len=256, num_kv_heads=2, positions="rope")),
    "bert-tiny": Variant(TransformerClassifier, dict(num_classes=2, vocab_size=30522, d_model=128,
                                                     num_heads=2,
                                                     num_layers=2, mlp_dim=512, max_len=512)),
    "encoder-small": Variant(Encoder, dict(vocab_size=8192, d_model=256, num_heads=4, num_layers=4,
                                           mlp_dim=1024, max_len=256)),
    "seq2seq-small": Variant(EncoderDecoder, dict(src_vocab_size=8000, tgt_vocab_size=8000, d_model=256,
                                                  num_heads=4, num_encoder_layers=3, num_decoder_layers=3,
                                                  mlp_dim=1024, max_src_len=128, max_tgt_len=128)),
    "vit-tiny": Variant(ViT, dict(num_classes=1000, image_size=224, patch_size=16, d_model=192, num_heads=3,
                                  num_layers=12, mlp_dim=768)),
    "vit-cifar": Variant(ViT, dict(num_classes=10, image_size=32, patch_size=4, d_model=192, num_heads=3,
                                   num_layers=6, mlp_dim=768, positions="sincos2d")),
    "vit-mnist": Variant(ViT, dict(num_classes=10, image_size=28, patch_size=7, channels=1, d_model=64,
                                   num_heads=4, num_layers=4, mlp_dim=128)),
}


def build(name: str, *, rngs: nnx.Rngs, **overrides) -> nnx.Module:
    """Instantiate a named variant; keyword overrides replace its defaults (e.g. dropout_rate=0.1)."""
    if name not in VARIANTS:
        raise ValueError(f"name: unknown variant {name!r}; known: {sorted(VARIANTS)}")
    variant = VARIANTS[name]
    return variant.model(**{**variant.kwargs, **overrides}, rngs=rngs)


def count_params(model: nnx.Module) -> int:
    """Number of scalar parameters (nnx.Param leaves)."""
    return sum(int(math.prod(np.shape(p))) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
