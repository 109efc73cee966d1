"""Attention against NumPy formulas, jax.nn.dot_product_attention and flax.nnx.dot_product_attention."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax import attention, dropout, masks
from seqjax.kernels import attention as attention_kernels
from seqjax.kernels import blockwise
from seqjax.nn.attention import MultiHeadAttention


def _np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_attention(q, k, v, mask=None):
    """Loop over batch and heads: softmax(q k^T / sqrt(K)) v, with GQA head sharing n -> n // (N // M)."""
    B, T, N, K = q.shape
    M = k.shape[2]
    out = np.zeros((B, T, N, v.shape[3]))
    weights = np.zeros((B, N, T, k.shape[1]))
    for b in range(B):
        for n in range(N):
            m = n // (N // M)
            s = q[b, :, n] @ k[b, :, m].T / math.sqrt(K)
            if mask is not None:
                s = np.where(mask[b, n], s, -np.inf)
            w = _np_softmax(s)
            weights[b, n] = w
            out[b, :, n] = w @ v[b, :, m]
    return out, weights


def _qkv(key, B=2, T=3, S=4, N=4, M=4, K=8):
    kq, kk, kv = jax.random.split(key, 3)
    return (jax.random.normal(kq, (B, T, N, K)), jax.random.normal(kk, (B, S, M, K)),
            jax.random.normal(kv, (B, S, M, K)))


def test_course_worked_example_weights_times_values():
    values = np.array([[0.50, -0.87], [-0.70, 0.70], [0.81, 0.59]])
    weights = np.array([[0.50, 0.20, 0.30], [0.12, 0.45, 0.43], [0.15, 0.42, 0.43]])
    expected = np.array([[0.35, -0.12], [0.10, 0.46], [0.13, 0.42]])
    # Feed the given weights through the attention code path as the softmax of log-weights: the bias
    # is log(w) with zero scores (q = 0), so softmax(bias) = w exactly.
    q = jnp.zeros((1, 3, 1, 2))
    k = jnp.zeros((1, 3, 1, 2))
    v = jnp.asarray(values, jnp.float32)[None, :, None, :]
    bias = jnp.log(jnp.asarray(weights, jnp.float32))[None, None]
    out, w = attention.dot_product_attention(q, k, v, bias=bias, return_weights=True)
    np.testing.assert_allclose(np.asarray(w)[0, 0], weights / weights.sum(-1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(np.asarray(out)[0, :, 0], expected, atol=0.01)
    np.testing.assert_allclose(weights @ values, expected, atol=0.01)


def test_course_worked_example_self_attention_by_hand():
    x = np.array([[0.50, -0.87], [-0.70, 0.70], [0.81, 0.59]])
    d = 2
    # written out by hand: scores[i, j] = (x_i . x_j) / sqrt(d), row softmax, weighted sum of rows
    scores = np.array([[sum(x[i, c] * x[j, c] for c in range(d)) / math.sqrt(d) for j in range(3)]
                       for i in range(3)])
    w = np.array([[math.exp(s) / sum(math.exp(t) for t in row) for s in row] for row in scores])
    expected = np.array([[sum(w[i, j] * x[j, c] for j in range(3)) for c in range(d)] for i in range(3)])
    xj = jnp.asarray(x, jnp.float32)[None, :, None, :]
    out = attention.dot_product_attention(xj, xj, xj)
    np.testing.assert_allclose(np.asarray(out)[0, :, 0], expected, atol=1e-5)


@pytest.mark.parametrize("M", [4, 2, 1])
def test_matches_numpy_loop_with_mask_and_gqa(M):
    q, k, v = _qkv(jax.random.key(0), M=M)
    mask = masks.combine_masks(masks.lengths_to_attention_mask(jnp.array([4, 2]), 4),
                               masks.causal_mask(3, 4, offset=1))
    out, w = attention.dot_product_attention(q, k, v, mask, return_weights=True)
    ref_out, ref_w = _np_attention(*(np.asarray(a, np.float64) for a in (q, k, v)),
                                   np.broadcast_to(np.asarray(mask), (2, 4, 3, 4)))
    np.testing.assert_allclose(np.asarray(out), ref_out, atol=1e-5)
    np.testing.assert_allclose(np.asarray(w), ref_w, atol=1e-6)


def test_gqa_with_full_kv_heads_equals_repeated_heads():
    q, k, v = _qkv(jax.random.key(1), N=4, M=2)
    got = attention.dot_product_attention(q, k, v)
    # plain multi-head attention with every K/V head repeated for the query heads that share it
    plain = attention.dot_product_attention(q, jnp.repeat(k, 2, axis=2), jnp.repeat(v, 2, axis=2))
    np.testing.assert_allclose(np.asarray(got), np.asarray(plain), atol=1e-6)


def test_matches_jax_nn_and_flax_attention_with_masks():
    q, k, v = _qkv(jax.random.key(2), T=4, S=4)
    mask = masks.combine_masks(masks.lengths_to_attention_mask(jnp.array([3, 4]), 4), masks.causal_mask(4))
    ours = attention.dot_product_attention(q, k, v, mask)
    ref_jax = jax.nn.dot_product_attention(q, k, v, mask=mask)
    ref_flax = nnx.dot_product_attention(q, k, v, mask=mask, deterministic=True)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref_jax), atol=1e-5)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref_flax), atol=1e-5)
    # the `causal` flag equals the explicit causal mask, and matches jax.nn's is_causal
    pad = masks.lengths_to_attention_mask(jnp.array([3, 4]), 4)
    flag = attention.dot_product_attention(q, k, v, pad, causal=True)
    np.testing.assert_allclose(np.asarray(flag), np.asarray(ours), atol=1e-6)
    via_jax = attention.dot_product_attention(q, k, v, pad, causal=True, implementation="jax")
    np.testing.assert_allclose(np.asarray(via_jax), np.asarray(ours), atol=1e-5)
    # bias is added to the scaled scores, as in jax.nn
    bias = jax.random.normal(jax.random.key(3), (1, 4, 4, 4))
    ref_bias = jax.nn.dot_product_attention(q, k, v, bias=bias, mask=mask)
    np.testing.assert_allclose(np.asarray(attention.dot_product_attention(q, k, v, mask, bias)),
                               np.asarray(ref_bias), atol=1e-5)


def test_fully_masked_row_outputs_zeros_without_nan():
    q, k, v = _qkv(jax.random.key(4))
    mask = jnp.ones((2, 1, 3, 4), bool).at[0, 0, 1].set(False)
    out, w = attention.dot_product_attention(q, k, v, mask, return_weights=True)
    assert np.all(np.isfinite(np.asarray(out)))
    np.testing.assert_array_equal(np.asarray(out)[0, 1], 0.0)
    np.testing.assert_array_equal(np.asarray(w)[0, :, 1], 0.0)
    grads = jax.grad(lambda q: attention.dot_product_attention(q, k, v, mask).sum())(q)
    assert np.all(np.isfinite(np.asarray(grads)))


def test_bfloat16_inputs_softmax_in_float32():
    q, k, v = _qkv(jax.random.key(5))
    out, w = attention.dot_product_attention(q.astype(jnp.bfloat16), k.astype(jnp.bfloat16),
                                             v.astype(jnp.bfloat16), return_weights=True)
    assert out.dtype == jnp.bfloat16 and w.dtype == jnp.float32
    ref = attention.dot_product_attention(q, k, v)
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref), atol=0.1)


def test_dropout_on_weights_only_with_key():
    q, k, v = _qkv(jax.random.key(6))
    plain = attention.dot_product_attention(q, k, v, dropout_rate=0.5)
    np.testing.assert_allclose(np.asarray(plain), np.asarray(attention.dot_product_attention(q, k, v)))
    dropped = attention.dot_product_attention(q, k, v, dropout_rate=0.5, key=jax.random.key(0))
    # reference: the same keep-mask applied to the NumPy weights
    _, w = attention.dot_product_attention(q, k, v, return_weights=True)
    keep = dropout.keep_mask(jax.random.key(0), 0.5, w.shape)
    probs = np.where(np.asarray(keep), np.asarray(w) / 0.5, 0.0)
    ref = np.einsum("bnts,bsnk->btnk", probs, np.asarray(v))
    np.testing.assert_allclose(np.asarray(dropped), ref, atol=1e-5)


def test_multi_head_attention_matches_manual_projection():
    key = jax.random.key(7)
    D, N = 16, 4
    params = attention.init_multi_head(key, D, N, num_kv_heads=2)
    params = params._replace(bq=jnp.full_like(params.bq, 0.1), bo=jnp.full_like(params.bo, -0.2))
    x = jax.random.normal(jax.random.key(8), (2, 3, D))
    ctx = jax.random.normal(jax.random.key(9), (2, 5, D))
    mask = masks.lengths_to_attention_mask(jnp.array([5, 2]), 5)
    y, w = attention.multi_head_attention(params, x, ctx, mask, return_weights=True)
    assert y.shape == (2, 3, D) and w.shape == (2, N, 3, 5)
    xn, cn = np.asarray(x, np.float64), np.asarray(ctx, np.float64)
    p = [None if a is None else np.asarray(a, np.float64) for a in params]
    q = np.einsum("btd,dnk->btnk", xn, p[0]) + p[4]
    kk = np.einsum("bsd,dmk->bsmk", cn, p[1]) + p[5]
    vv = np.einsum("bsd,dmk->bsmk", cn, p[2]) + p[6]
    o, _ = _np_attention(q, kk, vv, np.broadcast_to(np.asarray(mask), (2, N, 3, 5)))
    ref = np.einsum("btnk,nkd->btd", o, p[3]) + p[7]
    np.testing.assert_allclose(np.asarray(y), ref, atol=1e-4)


def test_bad_inputs_raise():
    q, k, v = _qkv(jax.random.key(10))
    with pytest.raises(ValueError, match=r"mask: expected a rank-4 array broadcastable"):
        attention.dot_product_attention(q, k, v, jnp.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"mask: expected a rank-4 array broadcastable"):
        attention.dot_product_attention(q, k, v, jnp.ones((2, 1, 3, 5), bool))
    with pytest.raises(ValueError, match="must divide the query heads"):
        attention.dot_product_attention(q, k[:, :, :3], v[:, :, :3])
    with pytest.raises(ValueError, match="head width"):
        attention.dot_product_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match="num_heads: N = 3 must divide the width D = 16"):
        attention.init_multi_head(jax.random.key(0), 16, 3)
    with pytest.raises(ValueError, match="num_kv_heads"):
        attention.init_multi_head(jax.random.key(0), 16, 4, num_kv_heads=3)
    with pytest.raises(ValueError, match="implementation"):
        attention.dot_product_attention(q, k, v, implementation="cuda")


# The NNX module wraps the same pure functions.


def _module(num_kv_heads=None, seed=0):
    """seqjax.nn.attention.MultiHeadAttention, D = 16, N = 4, no dropout, the default kernel choice."""
    return MultiHeadAttention(16, 4, num_kv_heads=num_kv_heads, context_dim=None, attention_dropout=0.0,
                              rope=False, implementation="auto", rngs=nnx.Rngs(seed))


def test_gqa_module_equals_mha_with_repeated_kv_heads():
    gqa = _module(num_kv_heads=2, seed=6)
    mha = _module(seed=7)
    for name in ("wk", "wv", "bk", "bv"):
        w = getattr(gqa.params, name)[...]
        getattr(mha.params, name)[...] = jnp.repeat(w, 2, axis=-2)  # K/V head m serves query heads 2m, 2m + 1
    for name in ("wq", "wo", "bq", "bo"):
        getattr(mha.params, name)[...] = getattr(gqa.params, name)[...]
    x = jax.random.normal(jax.random.key(8), (2, 5, 16))
    mask = masks.lengths_to_attention_mask(jnp.array([5, 3]), 5)
    np.testing.assert_allclose(np.asarray(gqa(x, mask=mask).out), np.asarray(mha(x, mask=mask).out),
                               atol=1e-5)


def test_module_matches_flax_multi_head_attention():
    ours = _module(seed=9)
    ref = nnx.MultiHeadAttention(4, 16, decode=False, rngs=nnx.Rngs(10))
    p = ours.params.get()
    ref.query.kernel[...], ref.query.bias[...] = p.wq, p.bq
    ref.key.kernel[...], ref.key.bias[...] = p.wk, p.bk
    ref.value.kernel[...], ref.value.bias[...] = p.wv, p.bv
    ref.out.kernel[...], ref.out.bias[...] = p.wo, p.bo
    x = jax.random.normal(jax.random.key(11), (2, 5, 16))
    ctx = jax.random.normal(jax.random.key(12), (2, 4, 16))
    mask = masks.cross_attention_mask(masks.lengths_to_mask(jnp.array([4, 2]), 4))
    np.testing.assert_allclose(np.asarray(ours(x, ctx, mask).out),
                               np.asarray(ref(x, ctx, mask=mask, deterministic=True)), atol=1e-5)


def test_default_implementation_switches_to_blockwise_for_large_score_matrices(monkeypatch):
    """implementation=None runs the einsum path below BLOCKWISE_MIN_SCORES and the blockwise one from it on,
    with the same result."""
    q, k, v = (jax.random.normal(key, (2, 8, 2, 4)) for key in jax.random.split(jax.random.key(0), 3))
    reference = attention.dot_product_attention(q, k, v, causal=True, implementation="xla")
    calls = []
    real = blockwise.blockwise_attention
    monkeypatch.setattr(blockwise, "blockwise_attention", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    monkeypatch.setattr(attention, "BLOCKWISE_MIN_SCORES", 8 * 8 + 1)
    attention.dot_product_attention(q, k, v, causal=True)
    assert calls == []
    monkeypatch.setattr(attention, "BLOCKWISE_MIN_SCORES", 8 * 8)
    out = attention.dot_product_attention(q, k, v, causal=True)
    assert calls == [1]
    np.testing.assert_allclose(out, reference, atol=1e-5)
    _, weights = attention.dot_product_attention(q, k, v, causal=True, return_weights=True)  # needs einsum
    assert calls == [1] and weights.shape == (2, 2, 8, 8)


def _np_attention_grads(q, k, v, mask, bias, cot):
    """Float64 reference gradients of sum(cot * attention(q, k, v)) by the textbook softmax backward, per
    batch row and head: dW = cot v^T, dS = W * (dW - rowsum(W * dW)), dq = dS k / sqrt(K),
    dk = dS^T q / sqrt(K), dv = W^T cot; d bias = dS."""
    q, k, v, cot = (np.asarray(a, np.float64) for a in (q, k, v, cot))
    B, T, N, K = q.shape
    S, M = k.shape[1], k.shape[2]
    mask = np.broadcast_to(np.ones((1, 1, 1, 1), bool) if mask is None else np.asarray(mask), (B, N, T, S))
    bias = np.broadcast_to(0.0 if bias is None else np.asarray(bias, np.float64), (B, N, T, S))
    dq, dk, dv, dbias = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v), np.zeros((B, N, T, S))
    for b in range(B):
        for n in range(N):
            m = n // (N // M)
            s = q[b, :, n] @ k[b, :, m].T / math.sqrt(K) + bias[b, n]
            w = np.where(mask[b, n], _np_softmax(np.where(mask[b, n], s, -1e30)), 0.0)
            dw = cot[b, :, n] @ v[b, :, m].T
            ds = w * (dw - (w * dw).sum(-1, keepdims=True))
            dq[b, :, n] += ds @ k[b, :, m] / math.sqrt(K)
            dk[b, :, m] += ds.T @ q[b, :, n] / math.sqrt(K)
            dv[b, :, m] += w.T @ cot[b, :, n]
            dbias[b, n] = ds
    return dq, dk, dv, dbias


@pytest.mark.parametrize("M", [4, 2, 1])
def test_hand_written_backward_matches_numpy_and_autodiff(M):
    B, T, S, N, K = 2, 3, 5, 4, 8
    q, k, v = _qkv(jax.random.key(11), B=B, T=T, S=S, N=N, M=M, K=K)
    cot = jax.random.normal(jax.random.key(12), (B, T, N, K))
    mask = masks.lengths_to_attention_mask(jnp.array([5, 2]), S)  # [B, 1, 1, S]
    mask = mask & jnp.array([True, True, False])[None, None, :, None]  # query 2 sees nothing: a zero row
    bias = 0.5 * jax.random.normal(jax.random.key(13), (1, N, T, S))  # learned, broadcast over the batch

    def loss(impl):
        return lambda q, k, v, bias: jnp.sum(cot * attention.dot_product_attention(
            q, k, v, mask, bias, implementation=impl))

    got = jax.jit(jax.grad(loss("xla"), (0, 1, 2, 3)))(q, k, v, bias)
    auto = jax.jit(jax.grad(loss("xla_autodiff"), (0, 1, 2, 3)))(q, k, v, bias)
    dq, dk, dv, dbias = _np_attention_grads(q, k, v, mask, bias, cot)
    for g, a, want in zip(got, auto, (dq, dk, dv, dbias.sum(0, keepdims=True)), strict=True):
        assert g.shape == a.shape == want.shape
        np.testing.assert_allclose(np.asarray(g), want, atol=2e-5)
        np.testing.assert_allclose(np.asarray(a), want, atol=2e-5)
    assert not np.asarray(got[0])[:, 2].any()  # the fully masked query gets no gradient


@pytest.mark.parametrize("case", ["causal", "dropout", "bfloat16", "batch_bias"])
def test_hand_written_backward_equals_autodiff(case):
    B, T, N, K = 2, 6, 4, 8
    q, k, v = _qkv(jax.random.key(14), B=B, T=T, S=T, N=N, M=2, K=K)
    cot = jax.random.normal(jax.random.key(15), (B, T, N, K))
    kw, bias = {}, None
    if case == "causal":
        kw = dict(causal=True, mask=masks.lengths_to_attention_mask(jnp.array([6, 4]), T))
    elif case == "dropout":
        kw = dict(dropout_rate=0.3, key=jax.random.key(16))
    elif case == "bfloat16":
        q, k, v, cot = (a.astype(jnp.bfloat16) for a in (q, k, v, cot))
    else:
        bias = jax.random.normal(jax.random.key(17), (B, 1, 1, T))  # per-key, per-row bias

    def loss(impl):
        return lambda q, k, v, bias: jnp.sum((cot * attention.dot_product_attention(
            q, k, v, bias=bias, implementation=impl, **kw)).astype(jnp.float32))

    args = (q, k, v, bias)
    argnums = (0, 1, 2, 3) if bias is not None else (0, 1, 2)
    v1, g1 = jax.jit(jax.value_and_grad(loss("xla"), argnums))(*args)
    v2, g2 = jax.jit(jax.value_and_grad(loss("xla_autodiff"), argnums))(*args)
    tol = 3e-2 if case == "bfloat16" else 2e-5
    np.testing.assert_allclose(float(v1), float(v2), rtol=tol, atol=tol)
    for a, b in zip(g1, g2, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32), atol=tol, rtol=tol)


@pytest.mark.parametrize("S_extra", [0, 3])
def test_causal_query_chunks_equal_the_whole_computation(monkeypatch, S_extra):
    """T = 7 queries in chunks of 2 (so 4 chunks, the last one short) against the unchunked einsum path,
    with a padding mask, a per-row bias and dropout: outputs and all gradients."""
    monkeypatch.setattr(attention_kernels, "CAUSAL_CHUNK", 2)
    B, T, N, K = 2, 7, 4, 8
    S = T + S_extra
    q, k, v = _qkv(jax.random.key(21), B=B, T=T, S=S, N=N, M=2, K=K)
    cot = jax.random.normal(jax.random.key(22), (B, T, N, K))
    mask = masks.lengths_to_attention_mask(jnp.array([S, 4]), S)
    bias = jax.random.normal(jax.random.key(23), (B, 1, T, S))
    kw = dict(mask=mask, causal=True, dropout_rate=0.2, key=jax.random.key(24))

    def loss(impl):
        return lambda q, k, v, bias: jnp.sum(cot * attention.dot_product_attention(
            q, k, v, bias=bias, implementation=impl, **kw))

    chunked = jax.jit(jax.value_and_grad(loss("xla"), (0, 1, 2, 3)))(q, k, v, bias)
    whole = jax.jit(jax.value_and_grad(loss("xla_autodiff"), (0, 1, 2, 3)))(q, k, v, bias)
    np.testing.assert_allclose(float(chunked[0]), float(whole[0]), rtol=1e-5)
    for a, b in zip(chunked[1], whole[1], strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5)
    # The chunks really are taken: the jaxpr holds one score einsum per chunk.
    causal = lambda q, k, v: attention.dot_product_attention(q, k, v, causal=True)
    jaxpr = str(jax.make_jaxpr(causal)(q, k, v))
    assert jaxpr.count("custom_vjp_call") == 4


# Input dtypes and fully masked rows are handled the same way on every implementation.


@pytest.mark.parametrize("impl", attention.IMPLEMENTATIONS)
def test_non_bool_mask_is_rejected_on_every_path_and_works_as_bias(impl):
    """An additive float mask (0 = attend, -inf = masked, PyTorch's convention) would read inverted as a bool
    mask; every path refuses it and names `bias=`, where it gives the bool mask's result."""
    q, k, v = _qkv(jax.random.key(30), T=3, S=4, N=2, M=2, K=4)
    keep = masks.lengths_to_attention_mask(jnp.array([4, 2]), 4)  # [B, 1, 1, S] bool
    additive = jnp.where(keep, 0.0, -jnp.inf)
    for bad in (additive, keep.astype(jnp.int32)):
        with pytest.raises(ValueError, match=r"mask: expected a bool array .* pass an additive float mask "
                                             r"\(0 / -inf\) as bias="):
            attention.dot_product_attention(q, k, v, bad, implementation=impl)
    with pytest.raises(ValueError, match="bias: expected a floating-point array"):
        attention.dot_product_attention(q, k, v, bias=keep, implementation=impl)
    want = attention.dot_product_attention(q, k, v, keep, implementation="xla")
    got = attention.dot_product_attention(q, k, v, bias=additive, implementation=impl)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


@pytest.mark.parametrize("impl", attention.IMPLEMENTATIONS)
def test_integer_q_k_v_are_rejected_on_every_path(impl):
    q, k, v = (jnp.ones((1, 2, 2, 4), jnp.int32) for _ in range(3))
    with pytest.raises(ValueError, match="q, k, v: expected floating-point arrays, got dtypes int32"):
        attention.dot_product_attention(q, k, v, implementation=impl)
    with pytest.raises(ValueError, match="got dtypes float32, float32, int32"):
        attention.dot_product_attention(q.astype(jnp.float32), k.astype(jnp.float32), v, implementation=impl)


@pytest.mark.parametrize("causal", [False, True])
def test_jax_path_outputs_zeros_for_fully_masked_rows_like_xla(causal):
    """jax.nn gives a query that sees no key the mean of V; the convention (and the "xla" path) is zeros."""
    q, k, v = _qkv(jax.random.key(31), T=3, S=4, N=2, M=1, K=4)
    mask = jnp.ones((2, 2, 3, 4), bool).at[0, 1, 2].set(False)  # batch 0, head 1, query 2 sees nothing
    mask = mask.at[1, :, 0, 0].set(False)  # with causal, query 0 of batch 1 (which sees only key 0) too
    got = attention.dot_product_attention(q, k, v, mask, causal=causal, implementation="jax")
    want = attention.dot_product_attention(q, k, v, mask, causal=causal, implementation="xla")
    np.testing.assert_array_equal(np.asarray(got)[0, 2, 1], 0.0)
    if causal:
        np.testing.assert_array_equal(np.asarray(got)[1, 0], 0.0)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
    # Rows that see a key are untouched: without the empty rows, the plain jax.nn result.
    ref = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=causal)
    seen = np.asarray(jnp.any(masks.combine_masks(mask, masks.causal_mask(3, 4) if causal else None), -1))
    np.testing.assert_array_equal(np.where(seen.transpose(0, 2, 1)[..., None], np.asarray(ref), 0.0),
                                  np.asarray(got))


@pytest.mark.parametrize("implementation", ["xla", "blockwise"])
def test_bf16_compute_tracks_f32_values_and_gradients(implementation):
    """compute_dtype=bf16: within 2e-2 (max-norm relative) of f32 for the output and every gradient (the
    docstring's measured figure at T=512 is <= 9.2e-3), results in the inputs' f32, and really in bf16."""
    q, k, v = _qkv(jax.random.PRNGKey(3), B=2, T=8, S=8, N=2, M=2, K=16)
    cot = jax.random.normal(jax.random.PRNGKey(4), (2, 8, 2, 16))

    def run(compute_dtype):
        def loss(q, k, v):
            out = attention.dot_product_attention(q, k, v, causal=True, implementation=implementation,
                                                  compute_dtype=compute_dtype)
            return jnp.sum(out * cot), out
        (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(q, k, v)
        return out, grads

    out32, grads32 = run(None)
    out16, grads16 = run(jnp.bfloat16)
    for a, b in zip((out16, *grads16), (out32, *grads32), strict=True):
        assert a.dtype == jnp.float32
        err = float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
        assert 1e-5 < err < 2e-2, err
    with pytest.raises(ValueError, match="compute_dtype: expected a floating dtype"):
        attention.dot_product_attention(q, k, v, compute_dtype=jnp.int8)
