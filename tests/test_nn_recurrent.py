"""Recurrent NNX modules (seqjax.nn.recurrent): thin wrappers that must equal the pure functions and the
obvious references; and every parameter of every recurrent model has a declared decay role."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax import nn, optim, scan
from seqjax.nn import recurrent

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
    m = recurrent.LSTM(D, H, rngs=nnx.Rngs(0))
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


@pytest.mark.parametrize("make", [lambda r: recurrent.SimpleRNN(D, H, activation="relu", rngs=r),
                                  lambda r: recurrent.GRU(D, H, variant="original", rngs=r)])
def test_cell_modules_equal_pure_unroll(make):
    m = make(nnx.Rngs(1))
    xs = jax.random.normal(jax.random.key(0), (B, T, D))
    ys, final = m(xs, mask=jnp.arange(T)[None] < LENGTHS[:, None])
    ref_ys, ref_final = scan.unroll(m.cell, m.params.get(), xs, lengths=LENGTHS)
    np.testing.assert_allclose(ys, ref_ys, **TOL)
    np.testing.assert_allclose(final.h, ref_final.h, **TOL)


def test_bidirectional_module_equals_two_pure_unrolls():
    cell = nn.GRU(D, H, rngs=nnx.Rngs(0)).cell
    m = recurrent.Bidirectional(nn.GRU(D, H, rngs=nnx.Rngs(1)), nn.GRU(D, H, rngs=nnx.Rngs(2)), merge="sum")
    xs = jax.random.normal(jax.random.key(0), (B, T, D))
    ys, final = m(xs, lengths=LENGTHS)
    ys_f, s_f = scan.unroll(cell, m.forward.params.get(), xs, lengths=LENGTHS)
    ys_b, s_b = scan.unroll(cell, m.backward.params.get(), xs, lengths=LENGTHS, reverse=True)
    np.testing.assert_allclose(ys, ys_f + ys_b, **TOL)
    np.testing.assert_allclose(final.backward.h, s_b.h, **TOL)
    with pytest.raises(ValueError, match="same cell and width"):
        recurrent.Bidirectional(nn.GRU(D, H, rngs=nnx.Rngs(1)), nn.LSTM(D, H, rngs=nnx.Rngs(2)))


def test_stacked_bidirectional_rnn_and_dropout():
    m = recurrent.RNN(D, H, cell="gru", num_layers=2, bidirectional=True, layer_dropout=0.5,
                      recurrent_dropout=0.3, rngs=nnx.Rngs(2))
    assert m.out_features == 2 * H
    xs = jax.random.normal(jax.random.key(0), (B, T, D))
    ys, finals = m(xs, lengths=LENGTHS)
    # key=None: no dropout, equal to the pure stack without any dropout
    ref, _ = scan.stack(m.cell, m.stack_params(), xs, lengths=LENGTHS)
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
    with pytest.raises(ValueError, match="layer_dropout"):
        recurrent.RNN(D, H, layer_dropout=1.0, rngs=nnx.Rngs(0))


def test_module_trains_under_jit_and_split_merge():
    m = recurrent.RNN(D, H, cell="lstm", num_layers=2, layer_dropout=0.1, rngs=nnx.Rngs(0))
    head = nn.Dense(H, 1, axes=("hidden", "classes"), rngs=nnx.Rngs(1))
    xs = jax.random.normal(jax.random.key(0), (B, T, D))
    graphdef, state = nnx.split((m, head))

    @jax.jit
    def loss(state, key):
        rnn, hd = nnx.merge(graphdef, state)
        ys, _ = rnn(xs, lengths=LENGTHS, key=key)
        return jnp.mean(hd(ys) ** 2)

    grads = jax.grad(loss)(state, jax.random.key(1))
    leaves = jax.tree.leaves(grads)
    assert leaves and all(np.isfinite(np.asarray(g)).all() for g in leaves)
    assert float(loss(state, None)) == pytest.approx(float(loss(state, None)))


def test_cell_params_have_decay_roles():
    """Weights are Kernels (decayed), biases Biases (not), read from the cells' BIASES."""
    m = recurrent.RNN(D, H, cell="gru", bidirectional=True, rngs=nnx.Rngs(0))
    roles = {"/".join(map(str, path)): type(v).__name__
             for path, v in nnx.to_flat_state(nnx.state(m, nnx.Param))}
    fwd = {k.rsplit("/", 1)[1]: r for k, r in roles.items() if "forward" in k}
    assert fwd == {"w_x": "Kernel", "w_h": "Kernel", "b_x": "Bias", "b_h": "Bias"}
    mask = optim.decay_mask(nnx.state(m, nnx.Param))
    assert sorted(set(jax.tree.leaves(mask))) == [False, True]


# ------------------------------------------------------------------------------------------------------
# Every recurrent model: each parameter is a Kernel or a Bias (no plain nnx.Param), so weight decay works.


def _models():
    from seqjax.models.forecaster import Forecaster
    from seqjax.models.patterns import PatternModels
    from seqjax.models.rnn_classifier import RNNClassifier
    from seqjax.models.rnn_seq2seq import RNNSeq2Seq

    r = nnx.Rngs(0)
    return {
        "forecaster": Forecaster(3, 2, 4, num_layers=2, rngs=r),
        "rnn_classifier": RNNClassifier(20, 2, 1, bidirectional=True, num_layers=2, rngs=r),
        "rnn_seq2seq_bi_lstm": RNNSeq2Seq(9, 7, 0, 1, 2, cell="lstm", rngs=r),
        "rnn_seq2seq_bahdanau": RNNSeq2Seq(9, 7, 0, 1, 2, attention="bahdanau", bidirectional=False, rngs=r),
        "pattern_models": PatternModels(8, 13, 0, 1, 2, rngs=r),
    }


@pytest.mark.parametrize("name", ["forecaster", "rnn_classifier", "rnn_seq2seq_bi_lstm",
                                  "rnn_seq2seq_bahdanau", "pattern_models"])
def test_every_recurrent_model_parameter_is_kernel_or_bias(name):
    model = _models()[name]
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    assert flat
    for path, v in flat:
        assert isinstance(v, nn.Kernel | nn.Bias), f"{name}: {'/'.join(map(str, path))} is {type(v).__name__}"
        last = str(path[-1])
        assert isinstance(v, nn.Bias) == last.startswith("b"), \
            f"{name}: {'/'.join(map(str, path))} is a {type(v).__name__}"
    optim.decay_mask(nnx.state(model, nnx.Param))  # no plain nnx.Param: does not raise
    assert nn.count_params(model) == sum(int(np.prod(np.shape(v))) for _, v in flat)
