"""The fused GRU layer, "original" (Cho et al., 2014) variant: `scan.unroll(Cell("gru", variant="original"),
...)` with a hand-written backward pass (the method: kernels/rnn.py).

Unlike the PyTorch variant the candidate's recurrent matmul takes the reset-gated state, r * hh, so each
step has two dependent matmuls, hh @ W_h[:, :2H] and then (r * hh) @ W_h[:, 2H:], forward and backward.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from seqjax.cells import Cell, GRUParams, HiddenState
from seqjax.kernels import rnn_ffi
from seqjax.kernels.gru import custom_vjp_gru, run_gru
from seqjax.kernels.rnn_common import (
    backward_scan,
    dropped,
    input_gradients,
    input_projection,
    previous,
    time_major,
)

_GRU_CELL = Cell("gru", variant="original")  # check_inputs validates params, xs, initial_state


class _Residuals(NamedTuple):
    xs_tm: jax.Array  # [T*B, D]
    w_x: jax.Array  # [D, 3H]
    w_h: jax.Array  # [H, 3H]
    keep: jax.Array | None  # bool [T, B, 1]
    rmask: jax.Array | None  # [B, H]
    h0: jax.Array  # [B, H]
    rz: jax.Array  # [T, B, 2H]: the gates r, z
    n: jax.Array  # [T, B, H]: the candidate
    hs: jax.Array  # [T, B, H]: h after each step (the carried, masked state)


def _forward(params, xs, keep, rmask, h0, reverse, unroll, native):
    """The forward scan; returns (ys [B, T, H], h_T, residuals). It replaces:

        xp = xs @ w_x + b_x                                   # [T, B, 3H], one matmul
        for t in (reversed(range(T)) if reverse else range(T)):
            hh = h * rmask
            r, z = sigmoid(xp[t, :, :2H] + hh @ w_h[:, :2H] + b_h[:2H]) split in two
            n = tanh(xp[t, :, 2H:] + (r * hh) @ w_h[:, 2H:] + b_h[2H:])
            h = where(keep[t], (1 - z) * n + z * h, h)        # padded steps keep the state
            rz[t], n[t], hs[t] = (r, z), n, h
        ys = hs * keep                                        # zero outputs on padding
    """
    H = params.w_h.shape[0]
    xs_tm = time_major(xs)  # [T*B, D]
    xp = input_projection(xs_tm, params.w_x, params.b_x, xs.shape[1])  # [T, B, 3H]
    w_rz, w_n = params.w_h[:, :2 * H], params.w_h[:, 2 * H:]
    b_rz, b_n = params.b_h[None, :2 * H], params.b_h[None, 2 * H:]

    def step(h, inputs):
        xp_t, keep_t = inputs
        hh = dropped(h, rmask)
        rz = jax.nn.sigmoid(xp_t[:, :2 * H] + (hh @ w_rz + b_rz))
        r, z = rz[:, :H], rz[:, H:]
        n = jnp.tanh(xp_t[:, 2 * H:] + ((r * hh) @ w_n + b_n))
        h_new = (1.0 - z) * n + z * h
        if keep_t is not None:
            h_new = jnp.where(keep_t, h_new, h)
        return h_new, (rz, n, h_new)

    def native_step(h, inputs):
        xp_t, keep_t = inputs
        hh = dropped(h, rmask)
        rz, rh = rnn_ffi.gru_orig_rz(xp_t, hh @ w_rz, params.b_h, hh)
        h_new, n = rnn_ffi.gru_orig_n(xp_t, rh @ w_n, params.b_h, rz, h, keep_t)
        return h_new, (rz, n, h_new)

    if native:
        step, scanned = native_step, (xp, rnn_ffi.keep_vector(keep, *xp.shape[:2]))
    else:
        scanned = (xp, keep)
    h_T, (rz, n, hs) = jax.lax.scan(step, h0, scanned, reverse=reverse, unroll=unroll)
    ys = hs if keep is None else jnp.where(keep, hs, jnp.zeros_like(hs))
    return jnp.swapaxes(ys, 0, 1), h_T, _Residuals(xs_tm, params.w_x, params.w_h, keep, rmask, h0, rz, n, hs)


def _backward(res: _Residuals, d_ys, d_h_T, reverse, unroll, chunks, native):
    """The backward pass: a reverse scan for the gate gradients, then one matmul per weight gradient.

    The scan replaces (walking the forward scan's steps in the opposite order):

        dh = d_h_T
        for t in (range(T) if reverse else reversed(range(T))):
            dh_new = keep[t] * (d_ys[t] + dh)
            da_n = dh_new * (1 - z) * (1 - n^2);  d_rh = da_n @ w_h[:, 2H:]^T
            da_r = d_rh * hh[t] * r (1 - r);  da_z = dh_new * (h[t-1] - n) * z (1 - z)
            d_hh = (da_r, da_z) @ w_h[:, :2H]^T + d_rh * r
            dh = d_hh * rmask + dh_new * z + (1 - keep[t]) * dh
    `native` does the gate arithmetic in two C++ calls around the d_rh matmul and carries dh in three
    parts (dhw + dhr) * rmask + dh_pass, summed inside the next call.
    """
    H = res.w_h.shape[0]
    B = res.h0.shape[0]
    d_ys = jnp.swapaxes(d_ys, 0, 1)  # [T, B, H]
    h_prev = previous(res.hs, res.h0, reverse)  # [T, B, H], undropped
    hh_prev = dropped(h_prev, res.rmask)  # as it entered the recurrent matmuls
    w_rz_t, w_n_t = res.w_h[:, :2 * H].T, res.w_h[:, 2 * H:].T  # [2H, H], [H, H]

    def step(dh, inputs):
        rz, n, h_before, hh, dy_t, keep_t = inputs
        r, z = rz[:, :H], rz[:, H:]
        dh_new = dy_t + dh
        if keep_t is not None:
            dh_new = jnp.where(keep_t, dh_new, 0.0)
        da_n = dh_new * (1.0 - z) * (1.0 - n * n)
        d_rh = da_n @ w_n_t
        da_rz = jnp.concatenate([d_rh * hh * r * (1.0 - r), dh_new * (h_before - n) * z * (1.0 - z)], axis=-1)
        dh_prev = dropped(da_rz @ w_rz_t + d_rh * r, res.rmask) + dh_new * z
        if keep_t is not None:
            dh_prev = dh_prev + jnp.where(keep_t, 0.0, dh)
        return dh_prev, (da_rz, da_n)

    def native_step(carry, inputs):
        dhw, dhr, dh_pass = carry
        rz, n, h_before, hh, dy_t, keep_t = inputs
        da_n, da_z, dh_pass = rnn_ffi.gru_orig_bwd_n(rz, n, h_before, dy_t, dhw, dhr, dh_pass, keep_t,
                                                     res.rmask)
        da_rz, dhr = rnn_ffi.gru_orig_bwd_rz(da_n @ w_n_t, hh, rz, da_z)
        return (da_rz @ w_rz_t, dhr, dh_pass), (da_rz, da_n)

    def gradients(block, per_step):
        da_rz, da_n = per_step  # [T_block, B, 2H], [T_block, B, H]
        T_block = da_n.shape[0]
        hh = hh_prev[block].reshape(T_block * B, H)
        rh = (res.rz[block, :, :H] * hh_prev[block]).reshape(T_block * B, H)  # r * hh, the candidate's input
        dw_h = jnp.concatenate([hh.T @ da_rz.reshape(T_block * B, 2 * H),
                                rh.T @ da_n.reshape(T_block * B, H)], axis=1)
        db_h = jnp.concatenate([jnp.sum(da_rz, axis=(0, 1)), jnp.sum(da_n, axis=(0, 1))])
        d_xp = jnp.concatenate([da_rz, da_n], axis=-1)  # [T_block, B, 3H]
        return (dw_h, db_h, *input_gradients(res.xs_tm[block.start * B:block.stop * B], res.w_x, d_xp))

    if native:
        keep = rnn_ffi.keep_vector(res.keep, *d_ys.shape[:2])  # [T, B]
        zeros = jnp.zeros_like(d_h_T)
        (dhw, dhr, dh_pass), (dw_h, db_h, dw_x, db_x, dxs) = backward_scan(
            native_step, (zeros, zeros, d_h_T), (res.rz, res.n, h_prev, hh_prev, d_ys, keep), reverse, unroll,
            chunks, gradients)
        d_h0 = dropped(dhw + dhr, res.rmask) + dh_pass
    else:
        d_h0, (dw_h, db_h, dw_x, db_x, dxs) = backward_scan(
            step, d_h_T, (res.rz, res.n, h_prev, hh_prev, d_ys, res.keep), reverse, unroll, chunks, gradients)
    return GRUParams(w_x=dw_x, w_h=dw_h, b_x=db_x, b_h=db_h), dxs, d_h0


_gru = custom_vjp_gru(_forward, _backward)


def gru_original_layer(params: GRUParams, xs: jax.Array, *, lengths=None, mask=None,
                       initial_state: HiddenState | None = None, reverse: bool = False,
                       recurrent_dropout: float = 0.0, key: jax.Array | None = None,
                       unroll: int | None = None, backward_unroll: int | None = None,
                       backward_chunks: int | None = None,
                       native: bool = False) -> tuple[jax.Array, HiddenState]:
    """A GRU ("original" variant) over xs [B, T, D] -> (ys [B, T, H], final HiddenState), fused backward.

    Same results as `scan.unroll(Cell("gru", variant="original"), params, xs, ...)` with the same keyword
    arguments; see `lstm.lstm_layer` (also for `native`).
    """
    return run_gru(_gru, _GRU_CELL, "gru_original_layer", params, xs, lengths=lengths, mask=mask,
                   initial_state=initial_state, reverse=reverse, recurrent_dropout=recurrent_dropout, key=key,
                   unroll=unroll, backward_unroll=backward_unroll, backward_chunks=backward_chunks,
                   native=native)
