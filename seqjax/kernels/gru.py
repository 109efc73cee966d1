"""The fused GRU layer (PyTorch variant): `scan.unroll(Cell("gru"), ...)` with a hand-written backward pass
(see kernels/rnn.py)."""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from seqjax.cells import Cell, GRUParams, HiddenState
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

_GRU_CELL = Cell("gru", variant="pytorch")  # check_inputs validates params, xs, initial_state


class _GRUResiduals(NamedTuple):
    xs_tm: jax.Array  # [T*B, D]
    w_x: jax.Array  # [D, 3H]
    w_h: jax.Array  # [H, 3H]
    keep: jax.Array | None  # bool [T, B, 1]
    rmask: jax.Array | None  # [B, H]
    h0: jax.Array  # [B, H]
    acts: jax.Array  # [T, B, 4H]: r, z, n and the candidate's recurrent term W_hn hh + b_hn
    hs: jax.Array  # [T, B, H]: h after each step (the carried, masked state)


def _gru_forward(params, xs, keep, rmask, h0, reverse, unroll, native=False):
    """The forward scan; returns (ys [B, T, H], h_T, residuals). `native`: each step's gate arithmetic in
    one C++ call (`rnn_ffi.gru_fwd`). It replaces:

        xp = xs @ w_x + b_x                                   # [T, B, 3H], one matmul
        for t in (reversed(range(T)) if reverse else range(T)):
            hp = (h * rmask) @ w_h + b_h                      # [B, 3H]
            r, z = sigmoid(xp[t, :, :2H] + hp[:, :2H]) split in two
            n = tanh(xp[t, :, 2H:] + r * hp[:, 2H:])
            h_new = (1 - z) * n + z * h
            h = where(keep[t], h_new, h)                      # padded steps keep the state
            acts[t], hs[t] = (r, z, n, hp[:, 2H:]), h
        ys = hs * keep                                        # zero outputs on padding
    """
    H = params.w_h.shape[0]
    xs_tm = time_major(xs)  # [T*B, D]
    xp = input_projection(xs_tm, params.w_x, params.b_x, xs.shape[1])  # [T, B, 3H]
    w_h, b_h = params.w_h, params.b_h

    def step(h, inputs):
        xp_t, keep_t = inputs
        hp = dropped(h, rmask) @ w_h + b_h[None, :]  # [B, 3H]
        rz = jax.nn.sigmoid(xp_t[:, :2 * H] + hp[:, :2 * H])
        r, z = rz[:, :H], rz[:, H:]
        hp_n = hp[:, 2 * H:]
        n = jnp.tanh(xp_t[:, 2 * H:] + r * hp_n)
        h_new = (1.0 - z) * n + z * h
        if keep_t is not None:
            h_new = jnp.where(keep_t, h_new, h)
        return h_new, (jnp.concatenate([rz, n, hp_n], axis=-1), h_new)

    def native_step(h, inputs):
        xp_t, keep_t = inputs
        h_new, acts = rnn_ffi.gru_fwd(xp_t, dropped(h, rmask) @ w_h, b_h, h, keep_t)
        return h_new, (acts, h_new)

    if native:
        step, scanned = native_step, (xp, rnn_ffi.keep_vector(keep, *xp.shape[:2]))
    else:
        scanned = (xp, keep)
    h_T, (acts, hs) = jax.lax.scan(step, h0, scanned, reverse=reverse, unroll=unroll)
    ys = hs if keep is None else jnp.where(keep, hs, jnp.zeros_like(hs))
    residuals = _GRUResiduals(xs_tm, params.w_x, w_h, keep, rmask, h0, acts, hs)
    return jnp.swapaxes(ys, 0, 1), h_T, residuals


def _gru_backward(res: _GRUResiduals, d_ys, d_h_T, reverse, unroll, chunks=1, native=False):
    """The backward pass: a reverse scan for the gate gradients, then one matmul per weight gradient.
    `native`: each step's gate arithmetic in one C++ call (`rnn_ffi.gru_bwd`); the carried dh is then kept
    in two parts, as in `lstm._native_backward`.

    The scan replaces (walking the forward scan's steps in the opposite order):

        dh = d_h_T
        for t in (range(T) if reverse else reversed(range(T))):
            dh_new = keep[t] * (d_ys[t] + dh)
            da_n = dh_new * (1 - z) * (1 - n^2)                          # candidate pre-activation
            da_r = da_n * hp_n * r (1 - r);  da_z = dh_new * (h[t-1] - n) * z (1 - z)
            d_hp[t] = (da_r, da_z, da_n * r);  d_xp[t] = (da_r, da_z, da_n)
            dh = (d_hp[t] @ w_h^T) * rmask + dh_new * z + (1 - keep[t]) * dh
    """
    H = res.w_h.shape[0]
    B = res.h0.shape[0]
    d_ys = jnp.swapaxes(d_ys, 0, 1)  # [T, B, H]
    h_prev = previous(res.hs, res.h0, reverse)  # [T, B, H], undropped
    h_prev_dropped = dropped(h_prev, res.rmask)  # as it entered the recurrent matmul
    w_h_t = res.w_h.T  # [3H, H]

    def step(dh, inputs):
        acts, h_before, dy_t, keep_t = inputs
        r, z, n, hp_n = acts[:, :H], acts[:, H:2 * H], acts[:, 2 * H:3 * H], acts[:, 3 * H:]
        dh_new = dy_t + dh
        if keep_t is not None:
            dh_new = jnp.where(keep_t, dh_new, 0.0)
        da_n = dh_new * (1.0 - z) * (1.0 - n * n)
        da_r = da_n * hp_n * r * (1.0 - r)
        da_z = dh_new * (h_before - n) * z * (1.0 - z)
        d_hp = jnp.concatenate([da_r, da_z, da_n * r], axis=-1)  # [B, 3H]
        dh_prev = dropped(d_hp @ w_h_t, res.rmask) + dh_new * z
        if keep_t is not None:
            dh_prev = dh_prev + jnp.where(keep_t, 0.0, dh)
        return dh_prev, (d_hp, da_n)

    def gradients(block, per_step):
        d_hp, da_n = per_step  # [T_block, B, 3H], [T_block, B, H]
        d_xp = jnp.concatenate([d_hp[..., :2 * H], da_n], axis=-1)  # [T_block, B, 3H]
        return weight_gradients(res.xs_tm[block.start * B:block.stop * B], res.w_x, h_prev_dropped[block],
                                 d_hp, d_xp)

    if native:
        def native_step(carry, inputs):
            dhw, dh_pass = carry
            acts, h_before, dy_t, keep_t = inputs
            d_hp, da_n, dh_pass = rnn_ffi.gru_bwd(acts, h_before, dy_t, dhw, dh_pass, keep_t, res.rmask)
            return (d_hp @ w_h_t, dh_pass), (d_hp, da_n)

        keep = rnn_ffi.keep_vector(res.keep, *d_ys.shape[:2])  # [T, B]
        (dhw, dh_pass), (dw_h, db_h, dw_x, db_x, dxs) = backward_scan(
            native_step, (jnp.zeros_like(d_h_T), d_h_T), (res.acts, h_prev, d_ys, keep), reverse, unroll,
            chunks, gradients)
        d_h0 = dropped(dhw, res.rmask) + dh_pass
    else:
        d_h0, (dw_h, db_h, dw_x, db_x, dxs) = backward_scan(
            step, d_h_T, (res.acts, h_prev, d_ys, res.keep), reverse, unroll, chunks, gradients)
    return GRUParams(w_x=dw_x, w_h=dw_h, b_x=db_x, b_h=db_h), dxs, d_h0


def custom_vjp_gru(forward, backward):
    """The custom-VJP core of a fused GRU from its `forward` (-> ys, h_T, residuals) and `backward`
    (-> d_params, dxs, d_h0); both GRU variants are built by it."""

    @partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8, 9))
    def core(params, xs, keep, rmask, h0, reverse, forward_unroll, backward_unroll, chunks, native):
        ys, h_T, _ = forward(params, xs, keep, rmask, h0, reverse, forward_unroll, native)
        return ys, h_T

    def core_fwd(params, xs, keep, rmask, h0, reverse, forward_unroll, backward_unroll, chunks, native):
        ys, h_T, residuals = forward(params, xs, keep, rmask, h0, reverse, forward_unroll, native)
        return (ys, h_T), residuals

    def core_bwd(reverse, forward_unroll, backward_unroll, chunks, native, residuals, cotangents):
        d_ys, d_h_T = cotangents
        d_params, dxs, d_h0 = backward(residuals, d_ys, d_h_T, reverse, backward_unroll, chunks, native)
        return d_params, dxs, None, None, d_h0

    core.defvjp(core_fwd, core_bwd)
    return core


def run_gru(core, cell: Cell, name: str, params: GRUParams, xs: jax.Array, *, lengths, mask,
            initial_state: HiddenState | None, reverse: bool, recurrent_dropout: float, key: jax.Array | None,
            unroll: int | None, backward_unroll: int | None, backward_chunks: int | None,
            native: bool) -> tuple[jax.Array, HiddenState]:
    """The checks, masks and defaults around a `custom_vjp_gru` core; the body of both GRU layers."""
    B, H = cell.check_inputs(params, xs, initial_state)
    dtype = params.w_h.dtype
    if native:
        rnn_ffi.check(name, *params, xs, *(initial_state or ()))
    keep, rmask = prepare(xs, lengths, mask, recurrent_dropout, key, B, H, dtype)
    if initial_state is None:
        initial_state = HiddenState(jnp.zeros((B, H), dtype))
    ys, h_T = core(params, xs, keep, rmask, initial_state.h.astype(dtype), reverse,
                   unroll or FORWARD_UNROLL, backward_unroll or BACKWARD_UNROLL,
                   backward_chunks or BACKWARD_CHUNKS, bool(native))
    return ys, HiddenState(h_T.astype(initial_state.h.dtype))


_gru = custom_vjp_gru(_gru_forward, _gru_backward)


def gru_layer(params: GRUParams, xs: jax.Array, *, lengths=None, mask=None,
              initial_state: HiddenState | None = None, reverse: bool = False, recurrent_dropout: float = 0.0,
              key: jax.Array | None = None, unroll: int | None = None, backward_unroll: int | None = None,
              backward_chunks: int | None = None, native: bool = False) -> tuple[jax.Array, HiddenState]:
    """A GRU (PyTorch variant) over xs [B, T, D] -> (ys [B, T, H], final HiddenState), fused backward pass.

    Same results as `scan.unroll(Cell("gru"), params, xs, ...)` with the same keyword arguments; see
    `lstm_layer` (also for `native`). The "original" (Cho et al.) variant is
    `gru_original.gru_original_layer`.
    """
    return run_gru(_gru, _GRU_CELL, "gru_layer", params, xs, lengths=lengths, mask=mask,
                   initial_state=initial_state, reverse=reverse, recurrent_dropout=recurrent_dropout, key=key,
                   unroll=unroll, backward_unroll=backward_unroll, backward_chunks=backward_chunks,
                   native=native)
