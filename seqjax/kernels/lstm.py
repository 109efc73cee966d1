"""The fused LSTM layer: `scan.unroll(Cell("lstm"), ...)` with a hand-written backward pass (the method:
kernels/rnn.py)."""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from seqjax.cells import Cell, LSTMParams, LSTMState
from seqjax.kernels import rnn_ffi
from seqjax.kernels.rnn_common import (
    BACKWARD_CHUNKS,
    BACKWARD_UNROLL,
    FORWARD_UNROLL,
    backward_scan,
    dropped,
    input_projection,
    prepare,
    previous,
    time_major,
    weight_gradients,
)

_LSTM_CELL = Cell("lstm")  # check_inputs validates params, xs and initial_state as scan.unroll does


class _LSTMResiduals(NamedTuple):
    xs_tm: jax.Array  # [T*B, D]
    w_x: jax.Array  # [D, 4H]
    w_h: jax.Array  # [H, 4H]
    keep: jax.Array | None  # bool [T, B, 1]
    rmask: jax.Array | None  # [B, H]
    h0: jax.Array  # [B, H]
    c0: jax.Array  # [B, H]
    acts: jax.Array  # [T, B, 4H]: sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)
    hs: jax.Array  # [T, B, H]: h after each step (the carried, masked state)
    cs: jax.Array  # [T, B, H]: c after each step


def _lstm_forward(params, xs, keep, rmask, h0, c0, reverse, unroll, native=False):
    """The forward scan; returns (ys [B, T, H], (h_T, c_T), residuals). `native`: the gate arithmetic of
    each step in one C++ call (`rnn_ffi.lstm_fwd`) instead of XLA's fusions. It replaces:

        xp = xs @ w_x + b                                     # [T, B, 4H], one matmul
        for t in (reversed(range(T)) if reverse else range(T)):
            i, f, g, o = sigmoid/tanh of split(xp[t] + (h * rmask) @ w_h)
            c_new = f * c + i * g;  h_new = o * tanh(c_new)
            h, c = where(keep[t], (h_new, c_new), (h, c))     # padded steps keep the state
            acts[t], hs[t], cs[t] = (i, f, g, o), h, c
        ys = hs * keep                                        # zero outputs on padding
    """
    H = params.w_h.shape[0]
    xs_tm = time_major(xs)  # [T*B, D]
    xp = input_projection(xs_tm, params.w_x, params.b, xs.shape[1])  # [T, B, 4H]
    w_h = params.w_h

    def step(carry, inputs):
        h, c = carry
        xp_t, keep_t = inputs
        gates = xp_t + dropped(h, rmask) @ w_h  # [B, 4H]
        i = jax.nn.sigmoid(gates[:, :H])
        f = jax.nn.sigmoid(gates[:, H:2 * H])
        g = jnp.tanh(gates[:, 2 * H:3 * H])
        o = jax.nn.sigmoid(gates[:, 3 * H:])
        c_new = f * c + i * g
        h_new = o * jnp.tanh(c_new)
        if keep_t is not None:
            h_new = jnp.where(keep_t, h_new, h)
            c_new = jnp.where(keep_t, c_new, c)
        acts = jnp.concatenate([i, f, g, o], axis=-1)
        return (h_new, c_new), (acts, h_new, c_new)

    def native_step(carry, inputs):
        h, c = carry
        xp_t, keep_t = inputs
        h_new, c_new, acts = rnn_ffi.lstm_fwd(xp_t, dropped(h, rmask) @ w_h, h, c, keep_t)
        return (h_new, c_new), (acts, h_new, c_new)

    if native:
        step, scanned = native_step, (xp, rnn_ffi.keep_vector(keep, *xp.shape[:2]))
    else:
        scanned = (xp, keep)
    (h_T, c_T), (acts, hs, cs) = jax.lax.scan(step, (h0, c0), scanned, reverse=reverse, unroll=unroll)
    ys = hs if keep is None else jnp.where(keep, hs, jnp.zeros_like(hs))
    residuals = _LSTMResiduals(xs_tm, params.w_x, w_h, keep, rmask, h0, c0, acts, hs, cs)
    return jnp.swapaxes(ys, 0, 1), (h_T, c_T), residuals  # ys [B, T, H]


def _lstm_backward(res: _LSTMResiduals, d_ys, d_h_T, d_c_T, reverse, unroll, chunks=1, native=False):
    """The backward pass: a reverse scan for the gate gradients, then one matmul per weight gradient.
    `native`: each step's gate arithmetic in one C++ call (`rnn_ffi.lstm_bwd`), see `_native_backward`.

    The scan replaces (walking the forward scan's steps in the opposite order):

        dh, dc = d_h_T, d_c_T
        for t in (range(T) if reverse else reversed(range(T))):
            dh_new = keep[t] * (d_ys[t] + dh);  dc_new = keep[t] * dc
            dc_new += dh_new * o * (1 - tanh(c[t])^2)
            dgates[t] = (dc_new * g * i (1 - i),  dc_new * c[t-1] * f (1 - f),
                         dc_new * i * (1 - g^2),  dh_new * tanh(c[t]) * o (1 - o))
            dh = (dgates[t] @ w_h^T) * rmask + (1 - keep[t]) * dh
            dc = dc_new * f + (1 - keep[t]) * dc
    """
    H = res.w_h.shape[0]
    B = res.h0.shape[0]
    d_ys = jnp.swapaxes(d_ys, 0, 1)  # [T, B, H]
    c_prev = previous(res.cs, res.c0, reverse)  # [T, B, H]
    w_h_t = res.w_h.T  # [4H, H]
    keep = res.keep

    def step(carry, inputs):
        dh, dc = carry
        acts, c_t, c_before, dy_t, keep_t = inputs
        i, f, g, o = acts[:, :H], acts[:, H:2 * H], acts[:, 2 * H:3 * H], acts[:, 3 * H:]
        tanh_c = jnp.tanh(c_t)
        dh_new, dc_new = dy_t + dh, dc
        if keep_t is not None:
            dh_new = jnp.where(keep_t, dh_new, 0.0)
            dc_new = jnp.where(keep_t, dc_new, 0.0)
        dc_new = dc_new + dh_new * o * (1.0 - tanh_c * tanh_c)
        d_gates = jnp.concatenate([
            dc_new * g * i * (1.0 - i),
            dc_new * c_before * f * (1.0 - f),
            dc_new * i * (1.0 - g * g),
            dh_new * tanh_c * o * (1.0 - o),
        ], axis=-1)  # [B, 4H]
        dh_prev = dropped(d_gates @ w_h_t, res.rmask)
        dc_prev = dc_new * f
        if keep_t is not None:
            dh_prev = dh_prev + jnp.where(keep_t, 0.0, dh)
            dc_prev = dc_prev + jnp.where(keep_t, 0.0, dc)
        return (dh_prev, dc_prev), d_gates

    h_prev = dropped(previous(res.hs, res.h0, reverse), res.rmask)  # [T, B, H], as it entered the matmul
    def gradients(block, d_gates):  # d_gates [T_block, B, 4H]
        return weight_gradients(res.xs_tm[block.start * B:block.stop * B], res.w_x, h_prev[block], d_gates)

    if native:
        return _native_backward(res, d_ys, d_h_T, d_c_T, c_prev, reverse, unroll, chunks, gradients)
    (d_h0, d_c0), (dw_h, _, dw_x, db, dxs) = backward_scan(
        step, (d_h_T, d_c_T), (res.acts, res.cs, c_prev, d_ys, keep), reverse, unroll, chunks, gradients)
    return LSTMParams(w_x=dw_x, w_h=dw_h, b=db), dxs, d_h0, d_c0


def _native_backward(res: _LSTMResiduals, d_ys, d_h_T, d_c_T, c_prev, reverse, unroll, chunks, gradients):
    """`_lstm_backward`'s scan with the gate arithmetic in C++. The carried dh is kept as (dhw, dh_pass), the
    recurrent matmul's output and what passes padded steps, and summed inside the next call
    (dh = dhw * rmask + dh_pass), so that XLA runs nothing but the dot between two calls."""
    w_h_t = res.w_h.T  # [4H, H]
    keep = rnn_ffi.keep_vector(res.keep, *d_ys.shape[:2])  # [T, B]

    def step(carry, inputs):
        dhw, dh_pass, dc = carry
        acts, c_t, c_before, dy_t, keep_t = inputs
        d_gates, dh_pass, dc = rnn_ffi.lstm_bwd(acts, c_t, c_before, dy_t, dhw, dh_pass, dc, keep_t,
                                                res.rmask)
        return (d_gates @ w_h_t, dh_pass, dc), d_gates

    (dhw, dh_pass, d_c0), (dw_h, _, dw_x, db, dxs) = backward_scan(
        step, (jnp.zeros_like(d_h_T), d_h_T, d_c_T), (res.acts, res.cs, c_prev, d_ys, keep), reverse, unroll,
        chunks, gradients)
    return LSTMParams(w_x=dw_x, w_h=dw_h, b=db), dxs, dropped(dhw, res.rmask) + dh_pass, d_c0


@partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8, 9, 10))
def _lstm(params, xs, keep, rmask, h0, c0, reverse, forward_unroll, backward_unroll, chunks, native):
    ys, (h_T, c_T), _ = _lstm_forward(params, xs, keep, rmask, h0, c0, reverse, forward_unroll, native)
    return ys, LSTMState(h_T, c_T)


def _lstm_fwd(params, xs, keep, rmask, h0, c0, reverse, forward_unroll, backward_unroll, chunks, native):
    ys, (h_T, c_T), residuals = _lstm_forward(params, xs, keep, rmask, h0, c0, reverse, forward_unroll,
                                              native)
    return (ys, LSTMState(h_T, c_T)), residuals


def _lstm_bwd(reverse, forward_unroll, backward_unroll, chunks, native, residuals, cotangents):
    d_ys, d_final = cotangents
    d_params, dxs, d_h0, d_c0 = _lstm_backward(residuals, d_ys, d_final.h, d_final.c, reverse,
                                               backward_unroll, chunks, native)
    return d_params, dxs, None, None, d_h0, d_c0


_lstm.defvjp(_lstm_fwd, _lstm_bwd)


def lstm_layer(params: LSTMParams, xs: jax.Array, *, lengths=None, mask=None,
               initial_state: LSTMState | None = None, reverse: bool = False, recurrent_dropout: float = 0.0,
               key: jax.Array | None = None, unroll: int | None = None, backward_unroll: int | None = None,
               backward_chunks: int | None = None, native: bool = False) -> tuple[jax.Array, LSTMState]:
    """An LSTM over xs [B, T, D] -> (ys [B, T, H], final LSTMState), with a fused backward pass.

    Same results as `scan.unroll(Cell("lstm"), params, xs, lengths=..., mask=..., initial_state=...,
    reverse=..., recurrent_dropout=..., key=...)`: padded steps keep the state and output zeros, the final
    state is each sequence's state after its last valid step, recurrent dropout draws one [B, H] mask from
    `key` (None = off). `unroll` / `backward_unroll` are the lax.scan unroll factors of the two scans.
    `native=True` does each step's gate arithmetic, forward and backward, in the C++ kernels (`rnn_ffi`);
    float32 only.
    """
    B, H = _LSTM_CELL.check_inputs(params, xs, initial_state)
    dtype = params.w_h.dtype
    if native:
        rnn_ffi.check("lstm_layer", *params, xs, *(initial_state or ()))
    keep, rmask = prepare(xs, lengths, mask, recurrent_dropout, key, B, H, dtype)
    if initial_state is None:
        initial_state = LSTMState(jnp.zeros((B, H), dtype), jnp.zeros((B, H), dtype))
    h0, c0 = (s.astype(dtype) for s in initial_state)
    ys, final = _lstm(params, xs, keep, rmask, h0, c0, reverse, unroll or FORWARD_UNROLL,
                      backward_unroll or BACKWARD_UNROLL, backward_chunks or BACKWARD_CHUNKS, bool(native))
    return ys, LSTMState(*(f.astype(s.dtype) for f, s in zip(final, initial_state, strict=True)))
