"""The einsum attention path ("xla") with a hand-written backward pass (`jax.custom_vjp`).

`einsum_attention` is the forward both attention paths share: it materialises the f32 [B, N, T, S] weights,
and `attention.dot_product_attention(..., implementation="xla_autodiff")` lets JAX differentiate it (the
reference the kernel is tested against). `einsum_attention_with_vjp` computes the same output with a backward
that needs one pass over the T x S arrays instead of two, and with `causal=True` scores each chunk of queries
only against the keys it can see.

Inputs are those `attention.dot_product_attention` prepares: queries grouped by the K/V head they share,
qg [B, T, M, G, K] (G = N // M query heads per K/V head), k [B, S, M, K], v [B, S, M, Kv]; bias and mask
broadcastable to [B, N, T, S] (rank 4) or None, the mask already holding the causal mask; keep = the scaled
dropout mask [B, N, T, S] (0 or 1 / keep probability) or None.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from seqjax.masks import masked_softmax

# Query chunk of the causal path (from T = 2 * CAUSAL_CHUNK): each chunk scores only the keys it can see, so
# causal attention skips about (1 - 1/C) / 2 of the full score work.
CAUSAL_CHUNK = 128
# checkpoint_name of the hand-written path's residuals (weights and output), for jax.checkpoint policies;
# re-exported as `attention.RESIDUAL_NAME`.
RESIDUAL_NAME = "seqjax_attention_residual"


def einsum_attention_with_vjp(qg, k, v, bias, mask, keep, *, causal: bool = False):
    """out f32 [B, T, M, G, Kv] = `einsum_attention(...)[0]`, differentiated by the hand-written backward.

    causal: `mask` already holds the causal mask; from T = 2 * CAUSAL_CHUNK the queries then go in chunks
    (`_causal_chunks`), which skip the score work of the keys a chunk cannot see.
    """
    if causal and qg.shape[1] >= 2 * CAUSAL_CHUNK:
        return _causal_chunks(qg, k, v, bias, mask, keep)
    return _einsum_attention_vjp(qg, k, v, bias, mask, keep)


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


def _scaled_heads_major(qg):
    """`_heads_major(qg) / sqrt(K)`: the score scale applied to q [.., T, K] (fused into the copy that
    `_heads_major` makes anyway) rather than to the S times larger [B, N, T, S] scores (3-4% of a step at
    T = S = 512, measured)."""
    return _heads_major(qg) * jnp.asarray(1.0 / math.sqrt(qg.shape[-1]), qg.dtype)


def einsum_attention(qg, k, v, bias, mask, keep):
    """(out f32 [B, T, M, G, Kv], weights f32 [B, N, T, S]) for qg [B, T, M, G, K], k [B, S, M, K],
    v [B, S, M, Kv]; bias/mask broadcastable to [B, N, T, S] or None; keep = scaled dropout mask [B, N, T, S]
    or None."""
    B, T, M, G, K = qg.shape
    S = k.shape[1]
    scores = jnp.einsum("bmuk,bsmk->bmus", _scaled_heads_major(qg), k, preferred_element_type=jnp.float32)
    scores = scores.reshape(B, M * G, T, S)  # [B, N, T, S]
    if bias is not None:
        scores = scores + bias.astype(jnp.float32)
    weights = jax.nn.softmax(scores, axis=-1) if mask is None else masked_softmax(scores, mask)
    probs = weights if keep is None else weights * keep
    probs = probs.astype(v.dtype).reshape(B, M, G * T, S)  # [B, M, U, S]
    out = jnp.einsum("bmus,bsmk->bmuk", probs, v, preferred_element_type=jnp.float32)
    return _time_major(out, T), weights


@jax.custom_vjp
def _einsum_attention_vjp(qg, k, v, bias, mask, keep):
    """`einsum_attention`'s output with a hand-written backward pass (the default "xla" path).

    Autodiff through the softmax needs sum_s(w * dw) over the [B, N, T, S] weights; the same row sums are
    sum_k(d_out * out) over the [B, T, N, Kv] output (FlashAttention's trick), so the backward makes one pass
    over the T x S arrays instead of two and keeps no scores, only the weights.
    """
    return einsum_attention(qg, k, v, bias, mask, keep)[0]


def _einsum_attention_fwd(qg, k, v, bias, mask, keep):
    out, weights = einsum_attention(qg, k, v, bias, mask, keep)
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
    # scores = (q / sqrt(K)) k^T: the scale goes on the [B, M, U, K] gradient of q, not on d_scores.
    d_scores = d_scores.reshape(B, M, G * T, S)  # [B, M, U, S]
    d_q = jnp.einsum("bmus,bsmk->bmuk", d_scores, k, preferred_element_type=jnp.float32)
    d_q = d_q * (1.0 / math.sqrt(K))
    d_k = jnp.einsum("bmus,bmuk->bsmk", d_scores, _scaled_heads_major(qg), preferred_element_type=jnp.float32)
    d_v = jnp.einsum("bmus,bmuk->bsmk", probs.reshape(B, M, G * T, S), d_out_h,
                     preferred_element_type=jnp.float32)
    d_q = _time_major(d_q, T).astype(qg.dtype)
    return d_q, d_k.astype(k.dtype), d_v.astype(v.dtype), d_bias, None, None


_einsum_attention_vjp.defvjp(_einsum_attention_fwd, _einsum_attention_bwd)
