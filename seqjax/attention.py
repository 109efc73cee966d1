"""Scaled dot-product attention and multi-head projections as pure functions.

Masks follow seqjax.masks: bool, rank 4, broadcastable to [B, N, T, S], True = may attend. Scores of
masked keys are set to the finite jnp.finfo(float32).min (no -inf, so no NaN), and the weights of masked keys
are zeroed after the softmax, so a query whose keys are ALL masked outputs zeros (and gets all-zero weights),
on every implementation. A mask must be bool: a float or integer mask is an error on every path (PyTorch's
additive float masks, 0 = attend / -inf = masked, would otherwise read inverted as booleans); pass such a
mask as `bias`, which is added to the scaled scores. q, k and v must be floating point (checked, with the
mask and bias, by `masks.check_attention_inputs`).

Grouped-query attention: k and v carry M heads, M dividing the N query heads; query head n uses K/V head
n // (N // M), i.e. consecutive query heads share a K/V head (the layout of jax.nn.dot_product_attention).

`dot_product_attention` is the readable definition and the dispatcher: it validates, applies the causal mask
and dropout, and hands the arithmetic to seqjax.kernels (`kernels.attention`: the einsum path, with a
hand-written backward or differentiated by JAX; `kernels.blockwise`: memory-linear). The autodiff and "jax"
paths are the references the hand-written kernels are tested against.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from seqjax import masks as masks_lib
from seqjax.dropout import check_rate, dropout_mask
from seqjax.kernels import blockwise, vendor
from seqjax.kernels.attention import RESIDUAL_NAME as RESIDUAL_NAME  # re-exported: checkpoint policies use it
from seqjax.kernels.attention import einsum_attention, einsum_attention_with_vjp

# Score-matrix size from which implementation=None takes the blockwise path. Below it the einsum path was as
# fast or faster on CPU (T = 128 and 512 in benchmarks/bench_gpt.py, bench_attention.py); from here on its
# quadratic memory (f32 [B, N, T, S] scores, 16 MiB per batch row and head at T = S = 2048) is what matters.
BLOCKWISE_MIN_SCORES = 2048 * 2048
IMPLEMENTATIONS = (None, "xla", "xla_autodiff", "blockwise", "jax")  # every one runs on every backend
VENDOR_IMPLEMENTATIONS = ("cudnn", "splash")  # GPU / TPU only (kernels.vendor)


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                          bias: jax.Array | None = None, *, causal: bool = False, dropout_rate: float = 0.0,
                          key: jax.Array | None = None, return_weights: bool = False,
                          implementation: str | None = None, compute_dtype: jnp.dtype | type | None = None):
    """softmax(q k^T / sqrt(K) + bias, masked) v.

    Args:
      q: [B, T, N, K] queries. k: [B, S, M, K] keys. v: [B, S, M, Kv] values; M divides N (grouped-query).
      mask: bool broadcastable to [B, N, T, S] (rank 4), True = may attend; any other dtype is an error.
      bias: float broadcastable to [B, N, T, S] (rank 4), added to the scaled scores (an additive 0 / -inf
        mask goes here).
      causal: if True, query t may attend key s only when s <= t (top-left aligned, like jax.nn's is_causal);
        equivalent to ANDing `masks.causal_mask(T, S)` into `mask`, and cheaper on the blockwise path.
      dropout_rate: dropout on the attention weights, active iff `key` is given.
      key: the dropout PRNG key; None = no dropout.
      return_weights: also return the weights [B, N, T, S] (after masking, before dropout).
      implementation: "xla" = einsum path (materialises the [B, N, T, S] weights) with the hand-written
          backward pass of seqjax.kernels.attention (reverse mode only: "xla_autodiff" for jax.jvp / jacfwd);
        "xla_autodiff" = the same forward differentiated by JAX (also used when return_weights);
        "blockwise" = seqjax.kernels.blockwise.blockwise_attention (memory-linear, skips future blocks when
          causal);
        "jax" = jax.nn.dot_product_attention (no dropout, no weights);
        "cudnn" = cuDNN flash attention (GPU; fp16/bf16, no mask but `causal`, no bias, no dropout);
        "splash" = the Pallas splash kernel (TPU; no mask but `causal`, no bias, no dropout);
        None = a vendor kernel where `kernels.vendor.attention_kernel` finds one for this backend and these
        inputs (cuDNN on GPU, splash on TPU for T * S >= 2**20), else "xla" while the score matrix is small
        and "blockwise" once T * S >= BLOCKWISE_MIN_SCORES (and no weights are asked for), where the
        [B, N, T, S] scores would dominate memory.
      compute_dtype: opt-in lower precision, e.g. jnp.bfloat16: q, k, v are cast to it for the two products,
        which accumulate in f32, with the softmax in f32 ("xla", "blockwise"); the output comes back in q's
        dtype and the gradients in the inputs' dtypes. Error against f32 (max |difference| / max |f32|),
        measured at B=8, N=8, T=S=512, K=64, standard-normal q, k, v and output cotangent, "xla" and
        "blockwise", full and causal: 3.8e-3 to 6.0e-3 for the output, 3.6e-3 to 9.2e-3 for dq, dk, dv
        (bf16 keeps 8 significant bits: 3.9e-3 relative rounding). tests/test_attention.py holds it under
        2e-2 at test sizes. Opt-in, not a default, for that error. None = compute in the inputs' dtype.
    Returns:
      out [B, T, N, Kv] in q's dtype, or (out, weights) when return_weights.
    """
    if compute_dtype is not None and jnp.dtype(compute_dtype) != q.dtype:
        if not jnp.issubdtype(compute_dtype, jnp.floating):
            raise ValueError(f"compute_dtype: expected a floating dtype, got {compute_dtype!r}")
        masks_lib.check_attention_inputs(q, k, v, mask, bias)  # errors name the caller's dtypes and shapes
        res = dot_product_attention(q.astype(compute_dtype), k.astype(compute_dtype), v.astype(compute_dtype),
                                    mask, bias, causal=causal, dropout_rate=dropout_rate, key=key,
                                    return_weights=return_weights, implementation=implementation)
        if return_weights:
            return res[0].astype(q.dtype), res[1]
        return res.astype(q.dtype)
    B, T, N, K, S, M = masks_lib.check_attention_inputs(q, k, v, mask, bias)
    if implementation not in IMPLEMENTATIONS + VENDOR_IMPLEMENTATIONS:
        raise ValueError(f"implementation: expected one of {IMPLEMENTATIONS + VENDOR_IMPLEMENTATIONS}, "
                         f"got {implementation!r}")
    check_rate(dropout_rate, "dropout_rate")

    dropout_on = key is not None and dropout_rate > 0.0
    if implementation is None:
        implementation, _ = vendor.attention_kernel(
            jax.default_backend(), dtype=q.dtype, T=T, S=S, N=N, M=M, K=K, Kv=v.shape[3], causal=causal,
            has_mask=mask is not None, has_bias=bias is not None, dropout=dropout_on,
            return_weights=return_weights)
        if implementation == "xla" and T * S >= BLOCKWISE_MIN_SCORES and not return_weights:
            implementation = "blockwise"
    if implementation in ("cudnn", "splash"):
        if return_weights or dropout_on or mask is not None or bias is not None:
            raise ValueError(f"implementation={implementation!r} supports no weights, dropout, mask or bias "
                             "(only causal)")
        call = vendor.cudnn_attention if implementation == "cudnn" else vendor.splash_attention
        return call(q, k, v, causal=causal).astype(q.dtype)
    if implementation == "blockwise":
        if return_weights:
            raise ValueError("return_weights: not available with implementation='blockwise'")
        return blockwise.blockwise_attention(q, k, v, mask=mask, bias=bias, causal=causal,
                                             dropout_rate=dropout_rate, key=key)
    if implementation == "jax":
        if return_weights or dropout_on:
            raise ValueError("implementation='jax' supports neither return_weights nor dropout")
        out = jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask, is_causal=causal)
        return _zero_unseen_rows(out, mask, causal, S)

    if causal:
        mask = masks_lib.combine_masks(mask, masks_lib.causal_mask(T, S))
    keep = dropout_mask(key, dropout_rate, (B, N, T, S))  # [B, N, T, S] of 0 or 1/keep_probability, or None
    qg = q.reshape(B, T, M, N // M, K)  # [B, T, M, G, K]: query heads grouped by the K/V head they share
    if return_weights or implementation == "xla_autodiff":
        out, weights = einsum_attention(qg, k, v, bias, mask, keep)
    else:
        out, weights = einsum_attention_with_vjp(qg, k, v, bias, mask, keep, causal=causal), None
    out = out.reshape(B, T, N, v.shape[3]).astype(q.dtype)  # [B, T, N, Kv]
    return (out, weights) if return_weights else out


def _zero_unseen_rows(out: jax.Array, mask: jax.Array | None, causal: bool, S: int) -> jax.Array:
    """out [B, T, N, Kv] of jax.nn.dot_product_attention with the query rows that see no key set to zeros.

    jax.nn gives such a row the uniform softmax (the mean of V); the convention here is zeros. A select, so
    the rows that do see a key keep their values bit for bit.
    """
    if mask is None:  # causal alone always leaves key 0 visible (top-left aligned)
        return out
    visible = masks_lib.combine_masks(mask, masks_lib.causal_mask(out.shape[1], S) if causal else None)
    seen = jnp.any(visible, axis=-1)  # [B|1, N|1, T]
    return jnp.where(seen.transpose(0, 2, 1)[..., None], out, jnp.zeros((), out.dtype))  # [B|1, T, N|1, 1]


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
    # Logical axis names (seqjax.nn.params): sharding heads is Megatron's column split of wq/wk/wv and row
    # split of wo.
    AXES = {"wq": ("embed", "heads", "kv"), "wk": ("embed", "kv_heads", "kv"),
            "wv": ("embed", "kv_heads", "kv"),
            "wo": ("heads", "kv", "embed"), "bq": ("heads", "kv"), "bk": ("kv_heads", "kv"),
            "bv": ("kv_heads", "kv"), "bo": ("embed",)}


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
