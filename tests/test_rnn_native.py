"""The native C++ gate kernels (`seqjax/kernels/rnn_gates.cc`) against the pure-JAX fused layers they replace
(tested against `scan.unroll` in tests/test_rnn_kernels.py) on every code path, the implementation="auto"
choice, and the fallback to the pure-JAX layers with its log line when the kernels are switched off or cannot
be built."""
from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_rnn_kernels import CASES, CELLS, LAYERS, _assert_trees_close, _loss, _setup

from seqjax import scan
from seqjax.kernels import native
from seqjax.kernels import rnn as rnn_kernels

needs_kernels = pytest.mark.skipif(not native.available(),
                                   reason=f"native RNN kernels unavailable: {native.reason()}")


@pytest.fixture
def fresh_decision():
    """Each test decides anew whether the kernels load, and leaves the next test to decide again."""
    native.reset()
    yield
    native.reset()


@needs_kernels
@pytest.mark.parametrize("kind", list(LAYERS))
def test_every_code_path_matches_the_pure_jax_layer(kind):
    """Masked (full, partial, empty rows), reversed, recurrent dropout, from a given state, backward scan in
    time blocks: AVX-512, AVX2 and the baseline loops (whichever this CPU has) give the pure-JAX layer's
    outputs and gradients (the forward direction: test_auto_picks_native...)."""
    _, params, xs, state = _setup(kind)
    options = dict(reverse=True, recurrent_dropout=0.4, key=jax.random.key(3), backward_chunks=2,
                   **CASES["mask"])

    def grads_of(layer):
        def f(p, x, s):
            out = layer(p, x, s)
            return _loss(*out), out
        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))

    native_fn = grads_of(lambda p, x, s: LAYERS[kind](p, x, initial_state=s, native=True, **options))
    (value_ref, out_ref), grads_ref = grads_of(
        lambda p, x, s: LAYERS[kind](p, x, initial_state=s, native=False, **options))(params, xs, state)
    best = native.isa()
    try:
        for isa in native.ISAS[:native.ISAS.index(best) + 1]:  # the path is chosen at run time: no recompile
            assert native.set_isa(isa) == isa
            (value, out), grads = native_fn(params, xs, state)
            _assert_trees_close(out, out_ref, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(value, value_ref, rtol=1e-6)
            _assert_trees_close(grads, grads_ref)
    finally:
        native.set_isa(best)


def _grad_of_auto(kind, params, xs, state, implementation):
    def f(p):
        return _loss(*scan.unroll(CELLS[kind], p, xs, initial_state=state, lengths=jnp.array([6, 3, 0]),
                                  implementation=implementation))
    return jax.jit(jax.value_and_grad(f)), f


@needs_kernels
def test_auto_picks_native_and_falls_back_to_fused_when_switched_off(monkeypatch, caplog, fresh_decision):
    _, params, xs, state = _setup("lstm")
    auto, f = _grad_of_auto("lstm", params, xs, state, "auto")
    assert "seqjax_lstm_fwd" in str(jax.make_jaxpr(jax.grad(f))(params))  # forward and backward kernels
    assert "seqjax_lstm_bwd" in str(jax.make_jaxpr(jax.grad(f))(params))
    with_kernels = auto(params)

    monkeypatch.setenv(native.DISABLE_ENV, "0")
    native.reset()
    with caplog.at_level(logging.WARNING, logger=native.__name__):
        auto, f = _grad_of_auto("lstm", params, xs, state, "auto")
        assert "seqjax_lstm" not in str(jax.make_jaxpr(jax.grad(f))(params))
    assert any("switched off (SEQJAX_NATIVE_RNN=0)" in r.getMessage() and "pure-JAX fused" in r.getMessage()
               for r in caplog.records)
    fused, _ = _grad_of_auto("lstm", params, xs, state, "fused")
    _assert_trees_close(auto(params), fused(params), rtol=0, atol=0)  # auto is now exactly "fused"
    _assert_trees_close(with_kernels, fused(params))  # and equal to the native result
    with pytest.raises(ValueError, match=r"native=True\): the C\+\+ kernels are unavailable \(switched off"):
        scan.unroll(CELLS["lstm"], params, xs, implementation="native")


def test_failed_build_falls_back_with_a_log_line(monkeypatch, tmp_path, caplog, fresh_decision):
    """A machine whose compiler fails: load() says why, once, and the fused layers run without the kernels."""
    monkeypatch.setenv("SEQJAX_KERNEL_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.delenv(native.DISABLE_ENV, raising=False)
    with pytest.raises(RuntimeError, match="compiling rnn_gates.cc failed"):
        native.build()
    with caplog.at_level(logging.WARNING, logger=native.__name__):
        assert native.load() is None
        assert native.load() is None  # decided once per process: one log line
    lines = [r.getMessage() for r in caplog.records if "native RNN gate kernels not used" in r.getMessage()]
    assert len(lines) == 1 and "no-such-compiler" in lines[0] and "pure-JAX fused" in lines[0]
    assert not list((tmp_path / "cache").glob("*.so"))  # no half-written library left behind
    _, params, xs, state = _setup("gru")
    assert not rnn_kernels.use_native(params, xs, state)


def test_native_refuses_what_it_cannot_compute():
    _, params, xs, state = _setup("lstm")
    with pytest.raises(ValueError, match=r"lstm_layer\(native=True\): .* compute in float32 only"):
        LAYERS["lstm"](jax.tree.map(lambda p: p.astype(jnp.bfloat16), params), xs, native=True)
    with pytest.raises(ValueError, match="isa: expected one of"):
        native.set_isa("sse9")
