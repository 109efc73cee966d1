"""Blockwise attention against the plain einsum formula: outputs, gradients, masks, GQA, dropout, memory."""
import math

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import attention
from seqjax.kernels import blockwise

TOL = dict(rtol=2e-5, atol=2e-5)


def reference(q, k, v, mask=None, bias=None, causal=False, keep=None):
    """softmax(q k^T / sqrt(K) + bias) v written out in full: [B, N, T, S] scores, K/V heads repeated for GQA.

    Fully masked rows output zeros; `keep` is an explicit scaled dropout mask [B, N, T, S] on the weights.
    """
    B, T, N, K = q.shape
    S, M = k.shape[1], k.shape[2]
    k = jnp.repeat(k, N // M, axis=2)  # [B, S, N, K]: query head n reads K/V head n // (N // M)
    v = jnp.repeat(v, N // M, axis=2)
    s = jnp.einsum("btnk,bsnk->bnts", q, k) / math.sqrt(K)
    if bias is not None:
        s = s + bias
    visible = jnp.ones((B, N, T, S), bool)
    if mask is not None:
        visible = visible & mask
    if causal:
        visible = visible & (jnp.arange(S)[None, :] <= jnp.arange(T)[:, None])[None, None]
    s = jnp.where(visible, s, -1e30)
    w = jnp.exp(s - s.max(-1, keepdims=True))
    w = jnp.where(visible, w, 0.0)
    w = w / jnp.maximum(w.sum(-1, keepdims=True), 1e-30)
    if keep is not None:
        w = w * keep
    return jnp.einsum("bnts,bsnk->btnk", w, v)


def qkv(B=2, T=6, S=6, N=4, M=4, K=8, seed=0):
    kq, kk, kv, kg = jax.random.split(jax.random.key(seed), 4)
    return (jax.random.normal(kq, (B, T, N, K)), jax.random.normal(kk, (B, S, M, K)),
            jax.random.normal(kv, (B, S, M, K)), jax.random.normal(kg, (B, T, N, K)))


def assert_same_value_and_grads(f, g, q, k, v, cot, extra=()):
    """f and g agree in outputs and in the gradients of <out, cot> w.r.t. q, k, v (and `extra` args)."""
    args = (q, k, v, *extra)

    @jax.jit
    def both(*args):  # one compiled program for both functions: compiling dominates these tests' time
        out_f, vjp_f = jax.vjp(f, *args)
        out_g, vjp_g = jax.vjp(g, *args)
        return out_f, vjp_f(cot), out_g, vjp_g(cot)

    out_f, grads_f, out_g, grads_g = both(*args)
    np.testing.assert_allclose(out_f, out_g, **TOL)
    for name, a, b in zip("qkvb", grads_f, grads_g, strict=False):
        np.testing.assert_allclose(a, b, err_msg=f"gradient w.r.t. {name}", **TOL)


@pytest.mark.parametrize("causal, blocks", [(False, (2, 4)), (True, (2, 4)), (True, (3, 5))])
def test_matches_reference_full_and_causal(causal, blocks):
    q, k, v, cot = qkv(T=7, S=7)
    f = lambda q, k, v: blockwise.blockwise_attention(q, k, v, causal=causal, q_block=blocks[0],
                                                      kv_block=blocks[1])
    assert_same_value_and_grads(f, lambda q, k, v: reference(q, k, v, causal=causal), q, k, v, cot)


@pytest.mark.parametrize("causal", [False, True])
def test_matches_jax_nn(causal):
    q, k, v, cot = qkv(T=8, S=8, N=4, M=2)
    f = lambda q, k, v: blockwise.blockwise_attention(q, k, v, causal=causal, q_block=4, kv_block=2)
    g = lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=causal)
    assert_same_value_and_grads(f, g, q, k, v, cot)


@pytest.mark.parametrize("M", [1, 2])
def test_grouped_query_attention(M):
    q, k, v, cot = qkv(T=5, S=6, N=4, M=M)
    f = lambda q, k, v: blockwise.blockwise_attention(q, k, v, q_block=2, kv_block=4)
    assert_same_value_and_grads(f, lambda q, k, v: reference(q, k, v), q, k, v, cot)


def test_cross_attention_with_key_padding_and_causal_rectangle():
    q, k, v, cot = qkv(T=5, S=7, N=2, M=1)
    lengths = jnp.array([7, 3])
    mask = (jnp.arange(7)[None, :] < lengths[:, None])[:, None, None, :]  # [B, 1, 1, S]
    for causal in (False, True):
        f = lambda q, k, v, c=causal: blockwise.blockwise_attention(q, k, v, mask, causal=c, q_block=2,
                                                                    kv_block=3)
        g = lambda q, k, v, c=causal: reference(q, k, v, mask=mask, causal=c)
        assert_same_value_and_grads(f, g, q, k, v, cot)


def test_padded_sequence_equals_truncated_sequence():
    """A right-padded sequence gives, at its valid queries, exactly the result of the truncated sequence."""
    q, k, v, cot = qkv(B=1, T=8, S=8)
    n = 5
    mask = (jnp.arange(8) < n)[None, None, None, :]
    attend = jax.jit(lambda q, k, v, mask: blockwise.blockwise_attention(q, k, v, mask, causal=True,
                                                                          q_block=3, kv_block=2))
    padded = attend(q, k, v, mask)[:, :n]
    short = attend(q[:, :n], k[:, :n], v[:, :n], None)
    np.testing.assert_allclose(padded, short, **TOL)
    # And no gradient leaks into the padded keys/values.
    grads = jax.jit(jax.grad(lambda k, v: jnp.sum(attend(q, k, v, mask) * cot), (0, 1)))(k, v)
    for g in grads:
        np.testing.assert_array_equal(g[:, n:], 0.0)


def test_fully_masked_rows_are_zero_without_nan():
    q, k, v, cot = qkv(T=6, S=6)
    rows = jnp.array([True, False, True, True, False, True])  # queries 1 and 4 see no key at all
    mask = jnp.broadcast_to(rows[None, None, :, None], (2, 1, 6, 6))
    mask = mask & jnp.array([False, True] * 3)[None, None, None, :]
    mask = mask.at[1].set(False)  # the whole second sequence is masked
    f = jax.jit(lambda q, k, v: blockwise.blockwise_attention(q, k, v, mask, causal=True, q_block=4,
                                                              kv_block=4))
    out, vjp = jax.vjp(f, q, k, v)
    assert not jnp.any(jnp.isnan(out))
    np.testing.assert_array_equal(out[1], 0.0)
    np.testing.assert_array_equal(out[0, 1], 0.0)
    assert all(not jnp.any(jnp.isnan(g)) for g in vjp(cot))
    assert_same_value_and_grads(f, lambda q, k, v: reference(q, k, v, mask=mask, causal=True), q, k, v, cot)
    # Same convention as the einsum path.
    einsum_path = jax.jit(lambda q, k, v: attention.dot_product_attention(q, k, v, mask, causal=True))
    np.testing.assert_allclose(out, einsum_path(q, k, v), **TOL)


@pytest.mark.parametrize("bias_shape, batch_chunk", [((1, 4, 6, 7), None), ((1, 4, 6, 7), 1),
                                                    ((2, 1, 1, 7), 1)])
def test_bias_and_its_gradient(bias_shape, batch_chunk):
    """Bias gradients summed over broadcast axes, also when the batch is processed in chunks."""
    q, k, v, cot = qkv(T=6, S=7, N=4, M=2)
    bias = jax.random.normal(jax.random.key(3), bias_shape)
    mask = jax.random.bernoulli(jax.random.key(4), 0.8, (2, 1, 6, 7))
    f = lambda q, k, v, b: blockwise.blockwise_attention(q, k, v, mask, b, causal=True, q_block=4,
                                                         kv_block=3, batch_chunk=batch_chunk)
    g = lambda q, k, v, b: reference(q, k, v, mask=mask, bias=b, causal=True)
    assert_same_value_and_grads(f, g, q, k, v, cot, extra=(bias,))


def test_dropout_matches_reference_with_the_same_keep_mask():
    """Rebuild the per-block keep mask from blockwise's own draw; check outputs and gradients against it."""
    B, T, N, K, bq, bk, rate = 2, 5, 2, 4, 2, 3, 0.3
    q, k, v, cot = qkv(B=B, T=T, S=T, N=N, M=N, K=K)
    key = jax.random.key(7)
    cfg = blockwise._Config(T=T, S=T, bq=bq, bk=bk, causal=True, scale=1.0, dropout_rate=rate, unroll=1,
                            batch_chunk=B, free_pairs=(), masked_pairs=())
    Tp, Sp = -(-T // bq) * bq, -(-T // bk) * bk
    keep = np.zeros((B, N, Tp, Sp), np.float32)
    draw = jax.jit(lambda i, j: blockwise._keep_scale(cfg, key, i, j, (B, N, 1, bq, bk)))  # [B, M, G, bq, bk]
    for i in range(Tp // bq):
        for j in range(Sp // bk):
            block = draw(i, j)
            keep[:, :, i * bq:(i + 1) * bq, j * bk:(j + 1) * bk] = np.asarray(block[:, :, 0])
    keep = jnp.asarray(keep[:, :, :T, :T])
    assert 0.0 in np.asarray(keep) and np.any(np.asarray(keep) > 1.0)
    f = lambda q, k, v: blockwise.blockwise_attention(q, k, v, causal=True, dropout_rate=rate, key=key,
                                                      q_block=bq, kv_block=bk)
    g = lambda q, k, v: reference(q, k, v, causal=True, keep=keep)
    assert_same_value_and_grads(f, g, q, k, v, cot)



def test_causal_output_depends_only_on_the_past():
    """Jacobian check: d out[t] / d (k, v)[s] is zero for every s > t."""
    q, k, v, _ = qkv(B=1, T=6, S=6, N=1, M=1, K=4)
    f = lambda k, v: blockwise.blockwise_attention(q, k, v, causal=True, q_block=2, kv_block=4)[0, :, 0, 0]
    past = np.tril(np.ones((6, 6), bool))
    jac_k, jac_v = jax.jit(jax.jacrev(f, (0, 1)))(k, v)  # [T, 1, S, 1, K] each
    dep_k = np.abs(np.asarray(jac_k)[:, 0, :, 0, :]).sum(-1) > 0  # [T, S]
    dep_v = np.abs(np.asarray(jac_v)[:, 0, :, 0, :]).sum(-1) > 0
    np.testing.assert_array_equal(dep_v, past)
    assert not np.any(dep_k & ~past)  # (out[0] does not depend on k[0]: a softmax over one key is constant)


def test_causal_schedule_skips_future_blocks():
    free, masked = blockwise.block_schedule(T=8, S=8, bq=2, bk=2, causal=True, masked=False)
    assert len(free) + len(masked) == 4 * 5 // 2  # the lower triangle of 4 x 4 blocks, diagonal included
    assert all(j <= i for i, j in free + masked) and all(j < i for i, j in free)
    assert len(masked) == 4  # only diagonal blocks need a mask
    full_free, full_masked = blockwise.block_schedule(T=8, S=8, bq=2, bk=2, causal=False, masked=False)
    assert len(full_free) == 16 and not full_masked

    def scan_lengths(causal):
        q, k, v, _ = qkv(B=1, T=8, S=8, N=1, M=1, K=4)
        jaxpr = jax.make_jaxpr(lambda q, k, v: blockwise.blockwise_attention(
            q, k, v, causal=causal, q_block=2, kv_block=2))(q, k, v)
        return _scan_lengths(jaxpr.jaxpr)

    assert scan_lengths(causal=True) == 10 and scan_lengths(causal=False) == 16


def _scan_lengths(jaxpr):
    """Total trip count of the lax.scans in a jaxpr, nested ones included."""
    own = sum(e.params["length"] for e in jaxpr.eqns if e.primitive.name == "scan")
    return own + sum(_scan_lengths(sub) for sub in jax.extend.core.subjaxprs(jaxpr))


def test_memory_grows_linearly_in_length():
    """XLA's buffer assignment: blockwise temporaries double when T doubles, the einsum path's quadruple."""
    def temp_bytes(f, T):
        x = jax.ShapeDtypeStruct((1, T, 1, 8), jnp.float32)
        step = jax.jit(jax.grad(lambda q, k, v: jnp.sum(f(q, k, v)), (0, 1, 2)))
        return step.lower(x, x, x).compile().memory_analysis().temp_size_in_bytes

    bw = lambda q, k, v: blockwise.blockwise_attention(q, k, v, causal=True, q_block=32, kv_block=32)
    naive = lambda q, k, v: reference(q, k, v, causal=True)
    b1, b2 = temp_bytes(bw, 256), temp_bytes(bw, 512)
    n1, n2 = temp_bytes(naive, 256), temp_bytes(naive, 512)
    assert b2 <= 2.5 * b1, (b1, b2)
    assert n2 >= 3.5 * n1, (n1, n2)
    assert b2 < n2 / 8


def test_attention_hook_uses_blockwise():
    q, k, v, cot = qkv(T=6, S=6, N=4, M=2)
    mask = jax.random.bernoulli(jax.random.key(5), 0.8, (2, 1, 1, 6))
    f = lambda q, k, v: attention.dot_product_attention(q, k, v, mask, causal=True,
                                                        implementation="blockwise")
    g = lambda q, k, v: attention.dot_product_attention(q, k, v, mask, causal=True)
    assert_same_value_and_grads(f, g, q, k, v, cot)


def test_jit_and_bfloat16():
    q, k, v, _ = qkv(T=8, S=8)
    f = jax.jit(lambda q, k, v: blockwise.blockwise_attention(q, k, v, causal=True, q_block=4, kv_block=4))
    out = f(q.astype(jnp.bfloat16), k.astype(jnp.bfloat16), v.astype(jnp.bfloat16))
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(out.astype(jnp.float32), reference(q, k, v, causal=True), atol=5e-2, rtol=5e-2)


def test_bad_inputs_raise_clear_errors():
    q, k, v, _ = qkv(T=4, S=4, N=4, M=4)
    with pytest.raises(ValueError, match="M = 3 must divide"):
        blockwise.blockwise_attention(q, k[:, :, :3], v[:, :, :3])
    with pytest.raises(ValueError, match="rank-4"):
        blockwise.blockwise_attention(q[0], k, v)
    with pytest.raises(ValueError, match=r"v: expected \[B, S, M, Kv\]"):
        blockwise.blockwise_attention(q, k, v[:, :3])
    with pytest.raises(ValueError, match=r"k: expected .* K = 8"):
        blockwise.blockwise_attention(q, k[..., :4], v)
    with pytest.raises(ValueError, match=r"mask: expected a rank-4 .* \[2, 4, 4, 4\]"):
        blockwise.blockwise_attention(q, k, v, mask=jnp.ones((2, 4), bool))
    with pytest.raises(ValueError, match="mask: expected a bool"):
        blockwise.blockwise_attention(q, k, v, mask=jnp.ones((2, 1, 1, 4)))
    with pytest.raises(ValueError, match="bias: expected a rank-4"):
        blockwise.blockwise_attention(q, k, v, bias=jnp.ones((3, 1, 1, 4)))
    with pytest.raises(ValueError, match="q_block: expected a positive int"):
        blockwise.blockwise_attention(q, k, v, q_block=0)
    with pytest.raises(ValueError, match="dropout_rate"):
        blockwise.blockwise_attention(q, k, v, dropout_rate=1.0)
    with pytest.raises(ValueError, match="batch_chunk: expected a positive divisor of B = 2"):
        blockwise.blockwise_attention(q, k, v, batch_chunk=3)
