"""Scaled dot-product attention and multi-head projections as pure functions.

Masks follow seqjax.masks: bool, rank 4, broadcastable to [B, N, T, S], True = may attend. Scores of
masked keys are set to the finite jnp.finfo(float32).min (no -inf, so no NaN), and the weights of masked keys
are zeroed after the softmax, so a query whose keys are ALL masked outputs zeros (and gets all-zero weights).

Grouped-query attention: k and v carry M heads, M dividing the N query heads; query head n uses K/V head
n // (N // M), i.e. consecutive query heads share a K/V head (the layout of jax.nn.dot_product_attention).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from seqjax import masks as masks_lib
from seqjax.dropout import dropout_mask

# Score-matrix size from which implementation=None takes the blockwise path. Below it the einsum path was as
# fast or faster on CPU (T = 128 and 512 in benchmarks/bench_gpt.py, bench_attention.py); from here on its
# quadratic memory (f32 [B, N, T, S] scores, 16 MiB per batch row and head at T = S = 2048) is what matters.
BLOCKWISE_MIN_SCORES = 2048 * 2048
# Query chunk of the einsum path with causal=True (from T = 2 * CAUSAL_CHUNK): each chunk scores only the keys
# it can see, so causal attention skips about (1 - 1/C) / 2 of the full score work.
CAUSAL_CHUNK = 128
IMPLEMENTATIONS = (None, "xla", "xla_autodiff", "blockwise", "jax")
# checkpoint_name of the "xla" path's residuals (weights and output), for jax.checkpoint policies.
RESIDUAL_NAME = "seqjax_attention_residual"


def _check_qkv(q, k, v):
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"q, k, v: expected rank-4 [B, T, N, K], [B, S, M, K], [B, S, M, K], got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    B, T, N, K = q.shape
    if k.shape[0] != B or v.shape[0] != B:
        raise ValueError(f"k, v: batch must match q's B = {B}, got k {tuple(k.shape)}, v {tuple(v.shape)}")
    if k.shape[3] != K:
        raise ValueError(f"k: head width must match q's K = {K}, got k {tuple(k.shape)}")
    if k.shape[:3] != v.shape[:3]:
        raise ValueError(f"v: expected [B, S, M, .] = {tuple(k.shape[:3])} like k, got {tuple(v.shape)}")
    M = k.shape[2]
    if N % M != 0:
        raise ValueError(f"k: number of K/V heads M = {M} must divide the query heads N = {N}")
    return B, T, N, K, k.shape[1], M


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                          bias: jax.Array | None = None, *, causal: bool = False, dropout_rate: float = 0.0,
                          key: jax.Array | None = None, return_weights: bool = False,
                          implementation: str | None = None):
    """softmax(q k^T / sqrt(K) + bias, masked) v.

    Args:
      q: [B, T, N, K] queries. k: [B, S, M, K] keys. v: [B, S, M, Kv] values; M divides N (grouped-query).
      mask: bool broadcastable to [B, N, T, S] (rank 4), True = may attend.
      bias: float broadcastable to [B, N, T, S] (rank 4), added to the scaled scores.
      causal: if True, query t may attend key s only when s <= t (top-left aligned, like jax.nn's is_causal);
        equivalent to ANDing `masks.causal_mask(T, S)` into `mask`, and cheaper on the blockwise path.
      dropout_rate, key: dropout on the attention weights, active iff `key` is given.
      return_weights: also return the weights [B, N, T, S] (after masking, before dropout).
      implementation: "xla" = einsum path (materialises the [B, N, T, S] weights) with a hand-written
          backward pass (reverse mode only: use "xla_autodiff" for jax.jvp / jacfwd);
        "xla_autodiff" = the same forward differentiated by JAX (also used when return_weights);
        "blockwise" = seqjax.blockwise.blockwise_attention (memory-linear, skips future blocks when causal);
        "jax" = jax.nn.dot_product_attention (no dropout, no weights);
        None = "xla" while the score matrix is small, "blockwise" once T * S >= BLOCKWISE_MIN_SCORES (and no
        weights are asked for), where the [B, N, T, S] scores would dominate memory.
    Returns:
      out [B, T, N, Kv] in q's dtype, or (out, weights) when return_weights.
    """
    B, T, N, K, S, M = _check_qkv(q, k, v)
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation: expected one of {IMPLEMENTATIONS}, got {implementation!r}")
    if mask is not None:
        masks_lib.check_attention_mask(mask, B, N, T, S, "mask")
    if bias is not None:
        masks_lib.check_attention_mask(bias, B, N, T, S, "bias")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate: must be in [0, 1), got {dropout_rate}")

    if implementation is None:
        implementation = "blockwise" if T * S >= BLOCKWISE_MIN_SCORES and not return_weights else "xla"
    if implementation == "blockwise":
        if return_weights:
            raise ValueError("return_weights: not available with implementation='blockwise'")
        from seqjax import blockwise  # lazy: optional memory-linear path, built separately
        return blockwise.blockwise_attention(q, k, v, mask=mask, bias=bias, causal=causal,
                                             dropout_rate=dropout_rate, key=key)
    if implementation == "jax":
        if return_weights or (key is not None and dropout_rate > 0.0):
            raise ValueError("implementation='jax' supports neither return_weights nor dropout")
        return jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, is_causal=causal)

    if causal:
        mask = masks_lib.combine_masks(mask, masks_lib.causal_mask(T, S))
    keep = dropout_mask(key, dropout_rate, (B, N, T, S))  # [B, N, T, S] of 0 or 1/keep_probability, or None
    qg = q.reshape(B, T, M, N // M, K)  # [B, T, M, G, K]: query heads grouped by the K/V head they share
    if return_weights or implementation == "xla_autodiff":
        out, weights = _einsum_attention(qg, k, v, bias, mask, keep)
    elif causal and T >= 2 * CAUSAL_CHUNK:
        out, weights = _causal_chunks(qg, k, v, bias, mask, keep), None
    else:
        out, weights = _einsum_attention_vjp(qg, k, v, bias, mask, keep), None
    out = out.reshape(B, T, N, v.shape[3]).astype(q.dtype)  # [B, T, N, Kv]
    return (out, weights) if return_weights else out


def _causal_chunks(qg, k, v, bias, mask, keep):
    """Causal attention by query chunks: chunk [a, b) only scores keys [0, b), the rest being masked anyway.

    Same result as `_einsum_attention_vjp(qg, k, v, bias, mask, keep)` on the whole (causally masked) input,
    with sum_c b_c / (C * S) of its score work: 0.625 for C = 4 equal chunks. Equivalent loop:

        for a in range(0, T, CAUSAL_CHUNK):
            b = min(a + CAUSAL_CHUNK, T)
            out[:, a:b] = attention(q[:, a:b], k[:, :b], v[:, :b], mask[..., a:b, :b], ...)
    """
    T, S = qg.shape[1], k.shape[1]

    def rows(x, a, b, end):  # slice a [B|1, N|1, T|1, S|1] mask/bias/keep to queries [a, b), keys [0, end)
        if x is None:
            return None
        queries = slice(a, b) if x.shape[2] == T else slice(None)  # a broadcast (size-1) axis stays whole
        keys = slice(0, end) if x.shape[3] == S else slice(None)
        return x[:, :, queries, keys]

    outs = []
    for a in range(0, T, CAUSAL_CHUNK):
        b = min(a + CAUSAL_CHUNK, T)
        end = min(b, S)  # top-left aligned: query t sees keys s <= t
        outs.append(_einsum_attention_vjp(qg[:, a:b], k[:, :end], v[:, :end], rows(bias, a, b, end),
                                          rows(mask, a, b, end), rows(keep, a, b, end)))
    return jnp.concatenate(outs, axis=1)  # [B, T, M, G, Kv]


# The einsum path works heads-major: queries as [B, M, U, K] with U = G * T (the G query heads sharing a K/V
# head stacked along time), so every product below is a plain batched matmul with one free and one contracted
# dimension. XLA's CPU dot otherwise copies the [B, N, T, S] operands into that form first (measured: the
# backward with "bmgts,btmgk->bsmk" products was 1.3x slower than this one).


def _heads_major(x):
    """[B, T, M, G, K] -> [B, M, G*T, K] (a copy of a q-sized array)."""
    B, T, M, G, K = x.shape
    return x.transpose(0, 2, 3, 1, 4).reshape(B, M, G * T, K)


def _time_major(x, T):
    """[B, M, G*T, K] -> [B, T, M, G, K]."""
    B, M, U, K = x.shape
    return x.reshape(B, M, U // T, T, K).transpose(0, 3, 1, 2, 4)


def _einsum_attention(qg, k, v, bias, mask, keep):
    """(out f32 [B, T, M, G, Kv], weights f32 [B, N, T, S]) for qg [B, T, M, G, K], k [B, S, M, K],
    v [B, S, M, Kv]; bias/mask broadcastable to [B, N, T, S] or None; keep = scaled dropout mask [B, N, T, S]
    or None."""
    B, T, M, G, K = qg.shape
    S = k.shape[1]
    scores = jnp.einsum("bmuk,bsmk->bmus", _heads_major(qg), k, preferred_element_type=jnp.float32)
    scores = scores.reshape(B, M * G, T, S) * (1.0 / math.sqrt(K))  # [B, N, T, S]
    if bias is not None:
        scores = scores + bias.astype(jnp.float32)
    if mask is not None:
        scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(scores, axis=-1)
    if mask is not None:
        # A fully masked row would otherwise be uniform over the (masked) keys; zero it instead.
        weights = jnp.where(mask, weights, 0.0)
    probs = weights if keep is None else weights * keep
    probs = probs.astype(v.dtype).reshape(B, M, G * T, S)  # [B, M, U, S]
    out = jnp.einsum("bmus,bsmk->bmuk", probs, v, preferred_element_type=jnp.float32)
    return _time_major(out, T), weights


@jax.custom_vjp
def _einsum_attention_vjp(qg, k, v, bias, mask, keep):
    """`_einsum_attention`'s output with a hand-written backward pass (the default "xla" path).

    Autodiff through the softmax needs sum_s(w * dw) over the [B, N, T, S] weights; the same row sums are
    sum_k(d_out * out) over the [B, T, N, Kv] output (FlashAttention's trick), so the backward makes one pass
    over the T x S arrays instead of two and keeps no scores, only the weights.
    """
    return _einsum_attention(qg, k, v, bias, mask, keep)[0]


def _einsum_attention_fwd(qg, k, v, bias, mask, keep):
    out, weights = _einsum_attention(qg, k, v, bias, mask, keep)
    # Named so that a rematerialising caller (transformer.LayerStack's policy) can keep them, not recompute
    # the whole forward in the backward pass.
    weights = checkpoint_name(weights, RESIDUAL_NAME)
    out = checkpoint_name(out, RESIDUAL_NAME)
    return out, (qg, k, v, bias, weights, keep, out)


def _einsum_attention_bwd(res, d_out):
    qg, k, v, bias, weights, keep, out = res
    B, T, M, G, K = qg.shape
    S = k.shape[1]
    d_out_h = _heads_major(d_out.astype(jnp.float32))  # [B, M, U, Kv]
    probs = weights if keep is None else weights * keep  # [B, N, T, S]
    d_weights = jnp.einsum("bmuk,bsmk->bmus", d_out_h, v, preferred_element_type=jnp.float32)
    d_weights = d_weights.reshape(B, M * G, T, S)
    if keep is not None:
        d_weights = d_weights * keep
    # Softmax backward: d_scores = w * (dw - sum_s w dw), and sum_s w dw = sum_k d_out * out.
    row = jnp.sum(d_out_h * _heads_major(out), axis=-1).reshape(B, M * G, T, 1)  # [B, N, T, 1]
    d_scores = weights * (d_weights - row)  # zero wherever the mask zeroed the weights
    d_bias = None
    if bias is not None:
        axes = tuple(i for i, n in enumerate(bias.shape) if n == 1 and d_scores.shape[i] != 1)
        d_bias = jnp.sum(d_scores, axis=axes, keepdims=True).astype(bias.dtype)
    d_scores = (d_scores * (1.0 / math.sqrt(K))).reshape(B, M, G * T, S)  # [B, M, U, S]
    d_q = jnp.einsum("bmus,bsmk->bmuk", d_scores, k, preferred_element_type=jnp.float32)
    d_k = jnp.einsum("bmus,bmuk->bsmk", d_scores, _heads_major(qg), preferred_element_type=jnp.float32)
    d_v = jnp.einsum("bmus,bmuk->bsmk", probs.reshape(B, M, G * T, S), d_out_h,
                     preferred_element_type=jnp.float32)
    d_q = _time_major(d_q, T).astype(qg.dtype)
    return d_q, d_k.astype(k.dtype), d_v.astype(v.dtype), d_bias, None, None


_einsum_attention_vjp.defvjp(_einsum_attention_fwd, _einsum_attention_bwd)


# ----------------------------------------------------------------------------------------------------------
# Multi-head attention with projections, as pure functions over NamedTuple parameters.
# ----------------------------------------------------------------------------------------------------------


class MultiHeadParams(NamedTuple):
    """Projections of multi-head attention; bias fields are None when use_bias=False.

    wq [D, N, K], wk [Dc, M, K], wv [Dc, M, K], wo [N, K, D]; bq [N, K], bk [M, K], bv [M, K], bo [D].
    """
    wq: jax.Array
    wk: jax.Array
    wv: jax.Array
    wo: jax.Array
    bq: jax.Array | None = None
    bk: jax.Array | None = None
    bv: jax.Array | None = None
    bo: jax.Array | None = None
    BIASES = ("bq", "bk", "bv", "bo")  # additive offsets (seqjax.nn.params: never weight-decayed)


def head_dims(d_model: int, num_heads: int, num_kv_heads: int | None = None,
              head_dim: int | None = None) -> tuple[int, int, int]:
    """(N, M, K) after validation: N divides d_model unless head_dim is given; M divides N."""
    if num_heads <= 0:
        raise ValueError(f"num_heads: must be positive, got {num_heads}")
    if head_dim is None:
        if d_model % num_heads != 0:
            raise ValueError(f"num_heads: N = {num_heads} must divide the width D = {d_model} "
                             f"(or pass head_dim)")
        head_dim = d_model // num_heads
    M = num_heads if num_kv_heads is None else num_kv_heads
    if M <= 0 or num_heads % M != 0:
        raise ValueError(f"num_kv_heads: M = {M} must divide num_heads N = {num_heads}")
    return num_heads, M, head_dim


def init_multi_head(key: jax.Array, d_model: int, num_heads: int, *, num_kv_heads: int | None = None,
                    head_dim: int | None = None, context_dim: int | None = None, use_bias: bool = True,
                    dtype=jnp.float32) -> MultiHeadParams:
    """Lecun-normal projections (fan-in D for q/k/v, N*K for the output), zero biases."""
    N, M, K = head_dims(d_model, num_heads, num_kv_heads, head_dim)
    Dc = d_model if context_dim is None else context_dim
    kq, kk, kv, ko = jax.random.split(key, 4)

    def normal(k, shape, fan_in):
        return (jax.random.normal(k, shape, jnp.float32) / math.sqrt(fan_in)).astype(dtype)

    zeros = (lambda *s: jnp.zeros(s, dtype)) if use_bias else (lambda *s: None)
    return MultiHeadParams(
        wq=normal(kq, (d_model, N, K), d_model), wk=normal(kk, (Dc, M, K), Dc), wv=normal(kv, (Dc, M, K), Dc),
        wo=normal(ko, (N, K, d_model), N * K),
        bq=zeros(N, K), bk=zeros(M, K), bv=zeros(M, K), bo=zeros(d_model))


def project_q(params: MultiHeadParams, x: jax.Array) -> jax.Array:
    """x [B, T, D] -> q [B, T, N, K]."""
    if x.ndim != 3 or x.shape[-1] != params.wq.shape[0]:
        raise ValueError(f"x: expected [B, T, D] with D = {params.wq.shape[0]}, got {tuple(x.shape)}")
    q = jnp.einsum("btd,dnk->btnk", x, params.wq)
    return q if params.bq is None else q + params.bq[None, None]


def project_kv(params: MultiHeadParams, context: jax.Array) -> tuple[jax.Array, jax.Array]:
    """context [B, S, Dc] -> k, v [B, S, M, K]."""
    if context.ndim != 3 or context.shape[-1] != params.wk.shape[0]:
        raise ValueError(f"context: expected [B, S, Dc] with Dc = {params.wk.shape[0]}, "
                         f"got {tuple(context.shape)}")
    k = jnp.einsum("bsd,dmk->bsmk", context, params.wk)
    v = jnp.einsum("bsd,dmk->bsmk", context, params.wv)
    if params.bk is not None:
        k, v = k + params.bk[None, None], v + params.bv[None, None]
    return k, v


def project_out(params: MultiHeadParams, o: jax.Array) -> jax.Array:
    """o [B, T, N, K] -> [B, T, D]."""
    y = jnp.einsum("btnk,nkd->btd", o, params.wo)
    return y if params.bo is None else y + params.bo[None, None]


def multi_head_attention(params: MultiHeadParams, x: jax.Array, context: jax.Array | None = None,
                         mask: jax.Array | None = None, *, bias: jax.Array | None = None,
                         causal: bool = False, dropout_rate: float = 0.0, key: jax.Array | None = None,
                         return_weights: bool = False, implementation: str | None = None):
    """Multi-head attention of queries x [B, T, D] over context [B, S, Dc] (context=None: self-attention).

    Returns y [B, T, D], or (y, weights [B, N, T, S]) when return_weights.
    """
    context = x if context is None else context
    if context.ndim != 3 or x.ndim != 3 or context.shape[0] != x.shape[0]:
        raise ValueError(f"x, context: expected [B, T, D] and [B, S, Dc] with the same B, got "
                         f"{tuple(x.shape)}, {tuple(context.shape)}")
    q = project_q(params, x)
    k, v = project_kv(params, context)
    res = dot_product_attention(q, k, v, mask, bias, causal=causal, dropout_rate=dropout_rate, key=key,
                                return_weights=return_weights, implementation=implementation)
    if return_weights:
        o, w = res
        return project_out(params, o), w
    return project_out(params, res)
