"""NNX modules: thin wrappers that must equal the pure functions and the obvious references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax import layers, patterns, scan

B, T, D, H = 3, 5, 4, 6
LENGTHS = jnp.asarray([5, 2, 0])
TOL = dict(rtol=1e-5, atol=1e-5)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_lstm_module_with_pytorch_weights_equals_numpy_loop():
    """Weights laid out as torch.nn.LSTM stores them map 1:1 (transpose, bias_ih + bias_hh)."""
    rng = np.random.default_rng(0)
    w_ih, w_hh = rng.normal(size=(4 * H, D)) * 0.4, rng.normal(size=(4 * H, H)) * 0.4
    b_ih, b_hh = rng.normal(size=4 * H) * 0.2, rng.normal(size=4 * H) * 0.2
    m = layers.LSTM(D, H, rngs=nnx.Rngs(0))
    m.params.w_x[...] = jnp.asarray(w_ih.T, jnp.float32)
    m.params.w_h[...] = jnp.asarray(w_hh.T, jnp.float32)
    m.params.b[...] = jnp.asarray(b_ih + b_hh, jnp.float32)
    xs = rng.normal(size=(B, T, D)).astype(np.float32)
    ys, final = m(jnp.asarray(xs), lengths=LENGTHS)
    for b in range(B):
        h, c = np.zeros(H), np.zeros(H)
        for t in range(int(LENGTHS[b])):
            i, f, g, o = np.split(xs[b, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh, 4)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            np.testing.assert_allclose(ys[b, t], h, **TOL)
        np.testing.assert_allclose(final.h[b], h, **TOL)
        np.testing.assert_allclose(final.c[b], c, **TOL)


@pytest.mark.parametrize("make", [lambda r: layers.SimpleRNN(D, H, activation="relu", rngs=r),
                                  lambda r: layers.GRU(D, H, variant="original", rngs=r)])
def test_cell_modules_equal_pure_unroll(make):
    m = make(nnx.Rngs(1))
    xs = jax.random.normal(jax.random.key(0), (B, T, D))
    ys, final = m(xs, mask=jnp.arange(T)[None] < LENGTHS[:, None])
    ref_ys, ref_final = scan.unroll(m.cell, m.params.get(), xs, lengths=LENGTHS)
    np.testing.assert_allclose(ys, ref_ys, **TOL)
    np.testing.assert_allclose(final.h, ref_final.h, **TOL)


def test_stacked_bidirectional_rnn_and_dropout():
    m = layers.RNN(D, H, cell="gru", num_layers=2, bidirectional=True, dropout=0.5, recurrent_dropout=0.3,
                   rngs=nnx.Rngs(2))
    assert m.out_features == 2 * H
    xs = jax.random.normal(jax.random.key(0), (B, T, D))
    ys, finals = m(xs, lengths=LENGTHS)
    # key=None: no dropout, equal to the pure stack without any dropout
    params = tuple(l.bidirectional_params() for l in m.layers)
    ref, _ = scan.stack(m.cell, params, xs, lengths=LENGTHS)
    np.testing.assert_allclose(ys, ref, **TOL)
    assert len(finals) == 2 and isinstance(finals[0], scan.BidirectionalState)
    # with a key: dropout is on, reproducible for the same key, zero at padding
    k = jax.random.key(4)
    y1, _ = m(xs, lengths=LENGTHS, key=k)
    y2, _ = m(xs, lengths=LENGTHS, key=k)
    np.testing.assert_array_equal(y1, y2)
    assert np.abs(np.asarray(y1) - np.asarray(ys)).max() > 1e-3
    np.testing.assert_array_equal(y1[1, 2:], 0.0)
    np.testing.assert_array_equal(y1[2], 0.0)


def test_module_trains_under_nnx_jit_and_split_merge():
    m = layers.RNN(D, H, cell="lstm", num_layers=2, dropout=0.1, rngs=nnx.Rngs(0))
    head = layers.RegressionHead(H, 1, pool="mean", rngs=nnx.Rngs(1))
    xs = jax.random.normal(jax.random.key(0), (B, T, D))
    graphdef, state = nnx.split((m, head))

    @jax.jit
    def loss(state, key):
        rnn, hd = nnx.merge(graphdef, state)
        ys, _ = rnn(xs, lengths=LENGTHS, key=key)
        return jnp.mean(hd(ys, lengths=LENGTHS) ** 2)

    grads = jax.grad(loss)(state, jax.random.key(1))
    leaves = jax.tree.leaves(grads)
    assert leaves and all(np.isfinite(np.asarray(g)).all() for g in leaves)
    assert float(loss(state, None)) == pytest.approx(float(loss(state, None)))


def test_embedding_validates_ids_and_ties_output():
    emb = layers.Embedding(7, 4, rngs=nnx.Rngs(0))
    ids = jnp.asarray([[0, 6, 3]])
    np.testing.assert_array_equal(emb(ids), np.asarray(emb.table[...])[np.asarray(ids)])
    x = jax.random.normal(jax.random.key(0), (2, 4))
    np.testing.assert_allclose(emb.attend(x), np.asarray(x) @ np.asarray(emb.table[...]).T, **TOL)
    out_of_range = r"tokens: token ids must lie in \[0, V\) = \[0, 7\), got min 0, max 7"
    with pytest.raises(ValueError, match=out_of_range):
        emb(jnp.asarray([[0, 7]]))
    with pytest.raises(ValueError, match="tokens: token ids must lie in"):
        emb(jnp.asarray([-1]))
    with pytest.raises(ValueError, match="tokens: expected integer token ids"):
        emb(jnp.asarray([1.0]))
    with pytest.raises(ValueError, match=r"x: expected last axis E = 4"):
        emb.attend(jnp.ones((2, 5)))


def test_heads_pool_and_dropout():
    ys = jax.random.normal(jax.random.key(0), (B, T, H))
    head = layers.ClassificationHead(H, 3, pool="last", dropout=0.5, rngs=nnx.Rngs(0))
    logits = head(ys, lengths=LENGTHS)
    w, b = np.asarray(head.dense.w[...]), np.asarray(head.dense.b[...])
    last = np.stack([np.asarray(ys[i, int(n) - 1]) if n else np.zeros(H) for i, n in enumerate(LENGTHS)])
    np.testing.assert_allclose(logits, last @ w + b, **TOL)
    assert np.abs(np.asarray(head(ys, lengths=LENGTHS, key=jax.random.key(1))) - np.asarray(logits)).max() > 0
    per_step = layers.RegressionHead(H, 2, pool=None, rngs=nnx.Rngs(0))(ys)
    assert per_step.shape == (B, T, 2)
    with pytest.raises(ValueError, match="pool"):
        layers.ClassificationHead(H, 3, pool="median", rngs=nnx.Rngs(0))


def test_seq2seq_module_equals_patterns():
    m = layers.Seq2Seq(6, 7, 4, H, cell="lstm", attention="general", rngs=nnx.Rngs(0))
    src = jnp.asarray([[1, 2, 3], [4, 5, 0], [2, 0, 0]])
    src_lengths = jnp.asarray([3, 2, 1])
    tgt_in = jnp.asarray([[1, 2], [1, 3], [1, 4]])
    logits, weights = m(src, src_lengths, tgt_in, return_attention=True)
    ref = patterns.teacher_forcing(m.spec, m.seq2seq_params(), src, src_lengths, tgt_in)
    np.testing.assert_allclose(logits, ref, **TOL)
    np.testing.assert_array_equal(weights[2, :, 1:], 0.0)
    tokens, lengths = m.generate(src, src_lengths, max_len=4, bos_id=1, eos_id=2)
    assert tokens.shape == (3, 4) and lengths.shape == (3,)
