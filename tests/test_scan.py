"""scan.unroll / bidirectional / stack against Python loops and against each sequence run alone, unpadded."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import scan
from seqjax.cells import Cell, HiddenState, LSTMState
from seqjax.dropout import dropout_mask
from seqjax.scan import BidirectionalParams, BidirectionalState

B, T, D, H = 4, 6, 3, 5
LENGTHS = np.array([6, 3, 0, 1])  # full, partial, empty, single step
CELLS = [Cell("lstm"), Cell("gru"), Cell("gru", variant="original"), Cell("rnn", activation="relu")]
TOL = dict(rtol=1e-5, atol=1e-5)


def setup(cell, seed=0, width=D):
    params = cell.init(jax.random.key(seed), width, H)
    xs = jax.random.normal(jax.random.key(seed + 100), (B, T, width))
    return params, xs


def loop(cell, params, xs, state, steps, rmask=None):
    """The obvious reference: step the full cell over the given time indices; outputs keyed by t."""
    ys = {}
    for t in steps:
        xp = cell.input_projection(params, xs[:, t])
        state, ys[t] = cell.recurrent_step(params, state, xp, rmask)
    return state, ys


def alone(cell, params, xs, b, reverse=False, state=None):
    """Sequence b run by itself on its own truncated length (batch of 1, no padding)."""
    n = int(LENGTHS[b])
    x = xs[b:b + 1, :n]
    state = cell.zero_state(params, 1) if state is None else state
    steps = range(n - 1, -1, -1) if reverse else range(n)
    state, ys = loop(cell, params, x, state, steps)
    out = np.zeros((T, H), np.float32)
    for t, y in ys.items():
        out[t] = y[0]
    return state, out


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: f"{c.kind}-{c.variant}")
def test_unroll_equals_python_loop(cell):
    params, xs = setup(cell)
    ys, final = scan.unroll(cell, params, xs)
    ref_state, ref = loop(cell, params, xs, cell.zero_state(params, B), range(T))
    np.testing.assert_allclose(ys, np.stack([ref[t] for t in range(T)], axis=1), **TOL)
    for a, r in zip(final, ref_state, strict=True):
        np.testing.assert_allclose(a, r, **TOL)
    # unroll factor and rematerialisation change nothing numerically
    ys2, _ = scan.unroll(cell, params, xs, unroll=3, remat=True)
    np.testing.assert_allclose(ys2, ys, **TOL)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("cell", CELLS[:2], ids=lambda c: c.kind)
def test_masked_batch_equals_each_sequence_alone(cell, reverse):
    params, xs = setup(cell)
    ys, final = scan.unroll(cell, params, xs, lengths=jnp.asarray(LENGTHS), reverse=reverse)
    ys_mask, final_mask = scan.unroll(cell, params, xs, mask=np.arange(T)[None] < LENGTHS[:, None],
                                      reverse=reverse)
    np.testing.assert_allclose(ys_mask, ys, **TOL)
    for b in range(B):
        state_b, ys_b = alone(cell, params, xs, b, reverse)
        np.testing.assert_allclose(ys[b], ys_b, **TOL, err_msg=f"sequence {b}")
        for a, r in zip(final, state_b, strict=True):
            np.testing.assert_allclose(a[b], r[0], **TOL, err_msg=f"final state of sequence {b}")
        np.testing.assert_array_equal(ys[b, LENGTHS[b]:], 0.0)  # padded outputs are exactly zero
    # length 0: the final state is the initial state
    np.testing.assert_array_equal(final.h[2], np.zeros(H))


def test_caller_initial_state_and_jit_with_traced_lengths():
    cell = Cell("lstm")
    params, xs = setup(cell)
    k1, k2 = jax.random.split(jax.random.key(7))
    init = LSTMState(jax.random.normal(k1, (B, H)), jax.random.normal(k2, (B, H)))
    run = jax.jit(lambda p, x, n, s: scan.unroll(cell, p, x, lengths=n, initial_state=s))
    ys, final = run(params, xs, jnp.asarray(LENGTHS), init)
    for b in range(B):
        state_b, ys_b = alone(cell, params, xs, b, state=LSTMState(init.h[b:b + 1], init.c[b:b + 1]))
        np.testing.assert_allclose(ys[b], ys_b, **TOL)
        np.testing.assert_allclose(final.c[b], state_b.c[0], **TOL)
    np.testing.assert_array_equal(final.h[2], init.h[2])  # empty sequence keeps the caller's state


@pytest.mark.parametrize("merge", ["concat", "sum", "mean"])
def test_bidirectional_equals_each_sequence_alone(merge):
    cell = Cell("gru")
    params = BidirectionalParams(cell.init(jax.random.key(1), D, H), cell.init(jax.random.key(2), D, H))
    _, xs = setup(cell)
    ys, final = scan.bidirectional(cell, params, xs, lengths=LENGTHS, merge=merge)
    assert ys.shape == (B, T, 2 * H if merge == "concat" else H)
    for b in range(B):
        sf, yf = alone(cell, params.forward, xs, b)
        sb, yb = alone(cell, params.backward, xs, b, reverse=True)
        ref = {"concat": np.concatenate([yf, yb], -1), "sum": yf + yb, "mean": (yf + yb) / 2}[merge]
        np.testing.assert_allclose(ys[b], ref, **TOL)
        np.testing.assert_allclose(final.forward.h[b], sf.h[0], **TOL)
        np.testing.assert_allclose(final.backward.h[b], sb.h[0], **TOL)


def test_stack_bidirectional_equals_layer_by_layer_alone():
    cell = Cell("lstm")
    layers = scan.init_stack(jax.random.key(0), cell, D, H, 2, bidirectional=True)
    _, xs = setup(cell)
    ys, finals = scan.stack(cell, layers, xs, lengths=LENGTHS, dropout_rate=0.5)  # key=None: no dropout
    assert ys.shape == (B, T, 2 * H) and len(finals) == 2
    for b in range(B):
        x = xs[b:b + 1]
        for layer in layers:
            n = int(LENGTHS[b])
            sub = np.zeros((1, T, x.shape[-1]), np.float32)
            sub[:, :n] = np.asarray(x)[:, :n]
            _, yf = loop(cell, layer.forward, jnp.asarray(sub), cell.zero_state(layer.forward, 1), range(n))
            _, yb = loop(cell, layer.backward, jnp.asarray(sub), cell.zero_state(layer.backward, 1),
                         range(n - 1, -1, -1))
            out = np.zeros((1, T, 2 * H), np.float32)
            for t in range(n):
                out[0, t] = np.concatenate([yf[t][0], yb[t][0]])
            x = jnp.asarray(out)
        np.testing.assert_allclose(ys[b], x[0], **TOL, err_msg=f"sequence {b}")


def test_recurrent_dropout_uses_one_mask_for_every_step():
    cell = Cell("gru")
    params, xs = setup(cell)
    key = jax.random.key(3)
    ys, _ = scan.unroll(cell, params, xs, recurrent_dropout=0.5, key=key)
    rmask = dropout_mask(key, 0.5, (B, H))
    assert 0 < np.mean(np.asarray(rmask) == 0) < 1
    _, ref = loop(cell, params, xs, cell.zero_state(params, B), range(T), rmask)
    np.testing.assert_allclose(ys, np.stack([ref[t] for t in range(T)], 1), **TOL)
    # a fresh mask per step would give a different result
    _, fresh = loop(cell, params, xs, cell.zero_state(params, B), [0], rmask)
    state = HiddenState(fresh[0])
    for t in range(1, T):
        state, fresh[t] = cell.recurrent_step(params, state, cell.input_projection(params, xs[:, t]),
                                              dropout_mask(jax.random.fold_in(key, t), 0.5, (B, H)))
    assert np.abs(np.asarray(fresh[T - 1]) - np.asarray(ys[:, T - 1])).max() > 1e-4
    # evaluation (key=None) has no dropout at all
    np.testing.assert_array_equal(scan.unroll(cell, params, xs, recurrent_dropout=0.5)[0],
                                  scan.unroll(cell, params, xs)[0])


def test_stack_dropout_only_with_key():
    cell = Cell("rnn")
    layers = scan.init_stack(jax.random.key(0), cell, D, H, 2)
    _, xs = setup(cell)
    eval_ys, _ = scan.stack(cell, layers, xs, dropout_rate=0.5, recurrent_dropout=0.3)
    plain, _ = scan.stack(cell, layers, xs)
    np.testing.assert_array_equal(eval_ys, plain)
    train_ys, _ = scan.stack(cell, layers, xs, dropout_rate=0.5, recurrent_dropout=0.3, key=jax.random.key(1))
    assert np.abs(np.asarray(train_ys) - np.asarray(plain)).max() > 1e-3


def test_remat_gradient_equals_plain_gradient():
    cell = Cell("lstm")
    params, xs = setup(cell)

    def loss(p, remat):
        ys, _ = scan.unroll(cell, p, xs, lengths=LENGTHS, remat=remat)
        return jnp.sum(ys ** 2)

    g1, g2 = jax.grad(loss)(params, False), jax.grad(loss)(params, True)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a, b, **TOL)


def test_bad_inputs():
    cell = Cell("lstm")
    params, xs = setup(cell)
    with pytest.raises(ValueError, match=r"xs: expected a batch-major array \[B, T, D\], got shape \(4, 6\)"):
        scan.unroll(cell, params, xs[..., 0])
    with pytest.raises(ValueError, match="xs: expected feature width D = 3"):
        scan.unroll(cell, params, jnp.ones((B, T, D + 1)))
    with pytest.raises(ValueError, match=r"mask: expected shape \(B, T\) = \(4, 6\)"):
        scan.unroll(cell, params, xs, mask=jnp.ones((B, T + 1), bool))
    with pytest.raises(ValueError, match=r"lengths: expected shape \(B,\) = \(4,\)"):
        scan.unroll(cell, params, xs, lengths=jnp.ones((B - 1,), int))
    with pytest.raises(ValueError, match=r"lengths: every length must lie in \[0, T\] = \[0, 6\]"):
        scan.unroll(cell, params, xs, lengths=jnp.asarray([1, 2, 7, 0]))
    with pytest.raises(ValueError, match="lengths: every length"):
        scan.unroll(cell, params, xs, lengths=jnp.asarray([1, -1, 2, 0]))
    with pytest.raises(ValueError, match="either lengths or mask"):
        scan.unroll(cell, params, xs, lengths=LENGTHS, mask=np.ones((B, T), bool))
    with pytest.raises(ValueError, match=r"initial_state.h: expected shape \(B, H\) = \(4, 5\), got \(4, 6"):
        scan.unroll(cell, params, xs, initial_state=LSTMState(jnp.zeros((B, H + 1)), jnp.zeros((B, H + 1))))
    with pytest.raises(ValueError, match="initial_state: Cell\\('lstm'\\) expects a LSTMState"):
        scan.unroll(cell, params, xs, initial_state=HiddenState(jnp.zeros((B, H))))
    with pytest.raises(ValueError, match="merge"):
        scan.bidirectional(cell, BidirectionalParams(params, params), xs, merge="max")
    with pytest.raises(ValueError, match="initial_states: expected one per layer"):
        scan.stack(cell, (params,), xs, initial_states=())


def test_generic_step_function():
    """Any cell(params, state, x_t) function unrolls too, given an initial state."""
    def running_sum(w, state, x):
        h = state.h + x @ w
        return HiddenState(h), h

    w = jnp.ones((D, 2))
    xs = jnp.ones((B, T, D))
    ys, final = scan.unroll(running_sum, w, xs, lengths=LENGTHS, initial_state=HiddenState(jnp.zeros((B, 2))))
    np.testing.assert_allclose(final.h[:, 0], 3.0 * LENGTHS)
    np.testing.assert_allclose(ys[0, :, 0], 3.0 * np.arange(1, T + 1))
    assert isinstance(BidirectionalState(1, 2), tuple)


def test_final_state_is_carried_not_stacked():
    """The scan's stacked (per-step) outputs are only ys [T, B, H]; the state is a carry, so memory for the
    final state does not grow with T."""
    cell = Cell("lstm")
    params, xs = setup(cell)
    jaxpr = jax.make_jaxpr(lambda p, x: scan.unroll(cell, p, x, lengths=LENGTHS, implementation="scan"))(
        params, xs)
    scans = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "scan"]
    assert len(scans) == 1
    num_carry = scans[0].params["num_carry"]
    stacked = [v.aval.shape for v in scans[0].outvars[num_carry:]]
    assert num_carry == 2 and stacked == [(T, B, H)]
