"""The fused LSTM/GRU layers (both GRU variants, pure JAX) against
`scan.unroll` + autodiff (the slow, obvious reference), against truncated sequences, and against central
finite differences in float64. The native C++ gate kernels: tests/test_rnn_native.py."""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import cells, scan
from seqjax.kernels import rnn as rnn_kernels

B, T, D, H = 3, 6, 4, 5
LAYERS = {"lstm": rnn_kernels.lstm_layer, "gru": rnn_kernels.gru_layer,
          "gru-original": rnn_kernels.gru_original_layer}
CELLS = {"lstm": cells.Cell("lstm"), "gru": cells.Cell("gru"),
         "gru-original": cells.Cell("gru", variant="original")}


def _setup(kind, dtype=jnp.float32):
    cell = CELLS[kind]
    k_p, k_x, k_s = jax.random.split(jax.random.key(0), 3)
    params = cell.init(k_p, D, H, dtype)
    # Non-zero biases, so every bias gradient path is exercised.
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(7), p.shape, dtype), params)
    xs = jax.random.normal(k_x, (B, T, D), dtype)
    state = jax.tree.map(lambda z: 0.5 * jax.random.normal(k_s, z.shape, dtype), cell.zero_state(params, B))
    return cell, params, xs, state


def _loss(ys, final):
    """A scalar that weighs every output step and every final-state entry differently."""
    weights = jnp.sin(jnp.arange(T * H, dtype=ys.dtype)).reshape(1, T, H) + 1.5  # [1, T, H]
    return jnp.sum(ys * weights) + sum(jnp.sum(jnp.cos(s)) for s in final)


def _both(kind, params, xs, state, **kwargs):
    """((value, (ys, final)), grads wrt params, xs, initial state) for the fused layer and the reference."""
    cell = CELLS[kind]
    layers = {"fused": lambda p, x, s: LAYERS[kind](p, x, initial_state=s, **kwargs),
              "reference": lambda p, x, s: scan.unroll(cell, p, x, initial_state=s, implementation="scan",
                                                       **kwargs)}
    results = []
    for layer in layers.values():
        def f(p, x, s, layer=layer):
            out = layer(p, x, s)
            return _loss(*out), out
        results.append(jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(params, xs, state))
    return results


def _assert_trees_close(actual, expected, rtol=1e-5, atol=1e-5):
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol)


CASES = {
    "plain": {},
    "lengths-reverse": {"lengths": jnp.array([T, 0, 3]), "reverse": True},  # full, empty, partial
    "mask": {"mask": jnp.array([[True] * T, [True] * 2 + [False] * (T - 2), [False] * T])},
}


# Test time: the original GRU skips the plain case (the mask case's full row runs it) and the float64 finite
# differences below (its gradients are checked against autodiff of scan.unroll in every other case).
@pytest.mark.parametrize("kind_case", [(k, c) for k in LAYERS for c in CASES
                                       if (k, c) != ("gru-original", "plain")], ids="-".join)
def test_outputs_and_gradients_match_scan_unroll(kind_case):
    kind, case = kind_case
    _, params, xs, state = _setup(kind)
    ((value, (ys, final)), grads), ((value_ref, (ys_ref, final_ref)), grads_ref) = _both(
        kind, params, xs, state, **CASES[case])
    assert ys.shape == (B, T, H) and type(final) is type(final_ref)
    _assert_trees_close((ys, final), (ys_ref, final_ref), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(value, value_ref, rtol=1e-6)
    _assert_trees_close(grads, grads_ref)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_padding_equals_truncated_sequences(kind):
    """Each padded sequence gives the outputs and final state of the same sequence cut to its length."""
    _, params, xs, state = _setup(kind)
    lengths = np.array([T, 0, 3])
    layer = jax.jit(LAYERS[kind])
    ys, final = layer(params, xs, lengths=jnp.asarray(lengths), initial_state=state)
    for b, n in enumerate(lengths):
        one = jax.tree.map(lambda s, b=b: s[b:b + 1], state)
        if n == 0:  # nothing to run: the state is untouched, the outputs are all padding
            _assert_trees_close(jax.tree.map(lambda s, b=b: s[b:b + 1], final), one, rtol=0, atol=0)
        else:
            ys_cut, final_cut = layer(params, xs[b:b + 1, :n], initial_state=one)
            np.testing.assert_allclose(ys[b, :n], ys_cut[0], rtol=1e-6, atol=1e-6)
            final_b = jax.tree.map(lambda s, b=b: s[b:b + 1], final)
            _assert_trees_close(final_b, final_cut, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(ys[b, n:], 0.0)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_recurrent_dropout_unroll_and_chunks_match_scan_unroll(kind):
    cell, params, xs, state = _setup(kind)
    kwargs = dict(lengths=jnp.array([5, 2, 6]), recurrent_dropout=0.4, key=jax.random.key(3))
    ((value, _), grads), ((value_ref, _), grads_ref) = _both(kind, params, xs, state, **kwargs)
    np.testing.assert_allclose(value, value_ref, rtol=1e-6)
    _assert_trees_close(grads, grads_ref)
    # The mask really applies: without the key (evaluation) the result differs.
    value_eval = _loss(*LAYERS[kind](params, xs, initial_state=state, lengths=kwargs["lengths"]))
    assert abs(float(value_eval) - float(value)) > 1e-3
    # Unrolled scans, a backward scan cut into time blocks (4 of sizes 1-2 for T=6) and jit change nothing.
    fused = jax.jit(jax.grad(lambda p: _loss(*LAYERS[kind](p, xs, initial_state=state, unroll=3,
                                                           backward_unroll=2, backward_chunks=4, **kwargs))))
    _assert_trees_close(fused(params), grads[0])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gradients_match_finite_differences(kind):
    """Directional derivatives <grad, v> against central differences, in float64, padded and reversed."""
    with jax.enable_x64(True):
        _, params, xs, state = _setup(kind, jnp.float64)
        lengths = jnp.array([T, 2, 0])
        layer = partial(LAYERS[kind], lengths=lengths, reverse=True, backward_chunks=2)
        f = jax.jit(lambda p, x, s: _loss(*layer(p, x, initial_state=s)))
        args = (params, xs, state)
        grads = jax.jit(jax.grad(f, argnums=(0, 1, 2)))(*args)
        eps = 1e-6
        leaves, treedef = jax.tree.flatten(args)
        for seed in range(3):
            keys = jax.random.split(jax.random.key(seed), len(leaves))
            v = jax.tree.unflatten(treedef, [jax.random.normal(k, leaf.shape, leaf.dtype)
                                             for k, leaf in zip(keys, leaves, strict=True)])
            plus = f(*jax.tree.map(lambda a, d: a + eps * d, args, v))
            minus = f(*jax.tree.map(lambda a, d: a - eps * d, args, v))
            numeric = (plus - minus) / (2 * eps)
            analytic = sum(jnp.vdot(g, d)
                           for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(v), strict=True))
            np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", list(LAYERS))
def test_bad_input_raises_clear_errors(kind):
    _, params, xs, state = _setup(kind)
    layer = LAYERS[kind]
    with pytest.raises(ValueError, match=r"xs: expected a batch-major array \[B, T, D\]"):
        layer(params, xs[0])
    with pytest.raises(ValueError, match="xs: expected feature width D = 4"):
        layer(params, jnp.zeros((B, T, D + 1)))
    with pytest.raises(ValueError, match="params: .* expects"):
        layer(cells.Cell("rnn").init(jax.random.key(0), D, H), xs)
    with pytest.raises(ValueError, match=r"initial_state.h: expected shape \(B, H\) = \(3, 5\)"):
        layer(params, xs, initial_state=jax.tree.map(lambda s: s[:2], state))
    with pytest.raises(ValueError, match=r"every length must lie in \[0, T\]"):
        layer(params, xs, lengths=jnp.array([T + 1, 0, 1]))
    with pytest.raises(ValueError, match="lengths: expected shape"):
        layer(params, xs, lengths=jnp.array([1, 2]))


def test_fused_layer_picks_only_exact_equivalents():
    assert rnn_kernels.fused_layer(cells.Cell("lstm")) is rnn_kernels.lstm_layer
    assert rnn_kernels.fused_layer(cells.Cell("gru")) is rnn_kernels.gru_layer
    assert rnn_kernels.fused_layer(cells.Cell("gru", variant="original")) is rnn_kernels.gru_original_layer
    assert rnn_kernels.fused_layer(cells.Cell("rnn")) is None
    assert rnn_kernels.fused_layer(cells.Cell("lstm", dtype=jnp.bfloat16)) is None
