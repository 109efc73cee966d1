"""Cells against NumPy references written from PyTorch's documented formulas, on hand-built weights."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import cells
from seqjax.cells import Cell, GRUParams, HiddenState, LSTMParams, LSTMState, RNNParams

B, D, H = 3, 4, 5


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def torch_layout(rng, G):
    """Weights as PyTorch stores them: weight_ih [G*H, D], weight_hh [G*H, H], bias_ih, bias_hh [G*H]."""
    return (rng.normal(size=(G * H, D)) * 0.5, rng.normal(size=(G * H, H)) * 0.5,
            rng.normal(size=(G * H,)) * 0.3, rng.normal(size=(G * H,)) * 0.3)


def np_lstm(w_ih, w_hh, b_ih, b_hh, x, h, c):
    """torch.nn.LSTMCell docs: i, f, g, o = chunks of W_ih x + b_ih + W_hh h + b_hh."""
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = np.split(gates, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c


def np_gru(w_ih, w_hh, b_ih, b_hh, x, h, variant):
    """torch.nn.GRUCell docs (pytorch), and Cho et al. 2014 with reset before the matmul (original)."""
    W_ir, W_iz, W_in = np.split(w_ih, 3)
    W_hr, W_hz, W_hn = np.split(w_hh, 3)
    b_ir, b_iz, b_in = np.split(b_ih, 3)
    b_hr, b_hz, b_hn = np.split(b_hh, 3)
    r = sigmoid(x @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
    z = sigmoid(x @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
    if variant == "pytorch":
        n = np.tanh(x @ W_in.T + b_in + r * (h @ W_hn.T + b_hn))
    else:
        n = np.tanh(x @ W_in.T + b_in + (r * h) @ W_hn.T + b_hn)
    return (1 - z) * n + z * h


def test_lstm_matches_pytorch_formulas():
    rng = np.random.default_rng(0)
    w_ih, w_hh, b_ih, b_hh = torch_layout(rng, 4)
    params = LSTMParams(jnp.asarray(w_ih.T, jnp.float32), jnp.asarray(w_hh.T, jnp.float32),
                        jnp.asarray(b_ih + b_hh, jnp.float32))
    x, h, c = rng.normal(size=(B, D)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    state, y = cells.lstm_cell(params, LSTMState(jnp.asarray(h, jnp.float32), jnp.asarray(c, jnp.float32)),
                               jnp.asarray(x, jnp.float32))
    h_ref, c_ref = np_lstm(w_ih, w_hh, b_ih, b_hh, x, h, c)
    np.testing.assert_allclose(state.h, h_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(state.c, c_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y, state.h)
    # The Cell wrapper computes the same step.
    state2, _ = Cell("lstm")(params, LSTMState(jnp.asarray(h, jnp.float32), jnp.asarray(c, jnp.float32)),
                             jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(state2.c, c_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["pytorch", "original"])
def test_gru_matches_reference(variant):
    rng = np.random.default_rng(1)
    w_ih, w_hh, b_ih, b_hh = torch_layout(rng, 3)
    params = GRUParams(*(jnp.asarray(a, jnp.float32) for a in (w_ih.T, w_hh.T, b_ih, b_hh)))
    x, h = rng.normal(size=(B, D)), rng.normal(size=(B, H))
    state, y = Cell("gru", variant=variant)(params, HiddenState(jnp.asarray(h, jnp.float32)),
                                            jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(state.h, np_gru(w_ih, w_hh, b_ih, b_hh, x, h, variant), rtol=1e-5, atol=1e-5)


def test_gru_variants_differ():
    """The two formulations are not the same function (so the test above can tell them apart)."""
    rng = np.random.default_rng(2)
    w_ih, w_hh, b_ih, b_hh = torch_layout(rng, 3)
    x, h = rng.normal(size=(B, D)), rng.normal(size=(B, H))
    assert np.abs(np_gru(w_ih, w_hh, b_ih, b_hh, x, h, "pytorch")
                  - np_gru(w_ih, w_hh, b_ih, b_hh, x, h, "original")).max() > 1e-3


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_simple_rnn(activation):
    rng = np.random.default_rng(3)
    w_x, w_h, b = rng.normal(size=(D, H)), rng.normal(size=(H, H)), rng.normal(size=(H,))
    x, h = rng.normal(size=(B, D)), rng.normal(size=(B, H))
    f = np.tanh if activation == "tanh" else (lambda a: np.maximum(a, 0))
    params = RNNParams(*(jnp.asarray(a, jnp.float32) for a in (w_x, w_h, b)))
    state, _ = Cell("rnn", activation=activation)(params, HiddenState(jnp.asarray(h, jnp.float32)),
                                                  jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(state.h, f(x @ w_x + h @ w_h + b), rtol=1e-5, atol=1e-5)


def test_projection_split_equals_full_step():
    """input_projection on all steps at once, then recurrent_step, equals the full cell step by step."""
    cell = Cell("lstm")
    params = cell.init(jax.random.key(0), D, H)
    xs = jax.random.normal(jax.random.key(1), (B, 3, D))
    xp = cell.input_projection(params, xs)  # [B, T, 4H]
    assert xp.shape == (B, 3, 4 * H)
    s1 = s2 = cell.zero_state(params, B)
    for t in range(3):
        s1, _ = cell(params, s1, xs[:, t])
        s2, _ = cell.recurrent_step(params, s2, xp[:, t])
    np.testing.assert_allclose(s1.h, s2.h, rtol=1e-6, atol=1e-6)


def test_init_shapes_and_forget_bias():
    p = cells.init_lstm(jax.random.key(0), D, H)
    assert p.w_x.shape == (D, 4 * H) and p.w_h.shape == (H, 4 * H) and p.b.shape == (4 * H,)
    assert p.w_x.dtype == jnp.float32
    np.testing.assert_array_equal(p.b[H:2 * H], np.ones(H))  # forget gate is the second block
    np.testing.assert_array_equal(p.b[:H], np.zeros(H))
    # each recurrent block is orthogonal
    for g in range(4):
        blk = np.asarray(p.w_h[:, g * H:(g + 1) * H])
        np.testing.assert_allclose(blk.T @ blk, np.eye(H), atol=1e-5)
    g = cells.init_gru(jax.random.key(0), D, H)
    assert g.w_x.shape == (D, 3 * H) and g.b_x.shape == g.b_h.shape == (3 * H,)


def test_bfloat16_compute_keeps_float32_params():
    cell = Cell("gru", dtype=jnp.bfloat16)
    params = cell.init(jax.random.key(0), D, H)
    state, y = cell(params, cell.zero_state(params, B), jnp.ones((B, D)))
    assert params.w_h.dtype == jnp.float32 and y.dtype == jnp.bfloat16
    ref, _ = Cell("gru")(params, Cell("gru").zero_state(params, B), jnp.ones((B, D)))
    np.testing.assert_allclose(np.asarray(y, np.float32), ref.h, atol=3e-2)


@pytest.mark.parametrize("kind,variant", [("lstm", "pytorch"), ("gru", "pytorch"), ("gru", "original"),
                                          ("rnn", "pytorch")])
def test_gradient_matches_finite_differences(kind, variant):
    cell = Cell(kind, variant=variant)
    with jax.enable_x64(True):
        params = cell.init(jax.random.key(0), 2, 3, dtype=jnp.float64)
        x = jax.random.normal(jax.random.key(1), (2, 2), jnp.float64)
        state = jax.tree.map(lambda z: z + 0.3, cell.zero_state(params, 2))

        def loss(p):
            s, y = cell(p, state, x)
            s, y = cell(p, s, x)  # two steps so the recurrent weights matter
            return jnp.sum(y ** 2) + jnp.sum(jnp.sin(s.h))

        grads = jax.grad(loss)(params)
        loss = jax.jit(loss)
        eps = 1e-6
        for name in params._fields:
            leaf = np.asarray(getattr(params, name))
            num = np.zeros_like(leaf)
            for idx in np.ndindex(leaf.shape):
                for sign in (1, -1):
                    bumped = leaf.copy()
                    bumped[idx] += sign * eps
                    num[idx] += sign * float(loss(params._replace(**{name: jnp.asarray(bumped)})))
            num /= 2 * eps
            np.testing.assert_allclose(getattr(grads, name), num, rtol=1e-5, atol=1e-7, err_msg=name)


def test_bad_cell_configuration():
    with pytest.raises(ValueError, match="cell kind"):
        Cell("transformer")
    with pytest.raises(ValueError, match="variant"):
        Cell("gru", variant="keras")
    with pytest.raises(ValueError, match="activation"):
        Cell("rnn", activation="gelu")
    with pytest.raises(ValueError, match="params: Cell\\('lstm'\\) expects LSTMParams"):
        Cell("lstm").input_projection(cells.init_gru(jax.random.key(0), D, H), jnp.ones((B, D)))
