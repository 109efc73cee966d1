"""Fused LSTM and GRU layers for training: a hand-written backward pass (`jax.custom_vjp`) around `lax.scan`.

`lstm_layer(params, xs, ...)` and `gru_layer(params, xs, ...)` compute exactly what `scan.unroll` computes
with `Cell("lstm")` / `Cell("gru")` (PyTorch variant), including padding (a padded step keeps the state and
outputs zeros), reverse scans and variational recurrent dropout, but differentiate much more cheaply:

  * forward: the input projection of all T steps is one matmul `[B*T, D] @ [D, G*H]` before the scan; the scan
    does only `h @ W_h` and the gate maths, and saves the gate activations it has computed anyway;
  * backward: a reverse scan that does only the per-step gate gradients and `dh_{t-1} = dgates_t @ W_h^T`.
    Every weight gradient is one large matmul after that scan, with no sequential work:
        dW_h = H_prev^T @ dGates   ([H, T*B] @ [T*B, G*H]),   dW_x = X^T @ dGates,   dX = dGates @ W_x^T.

Autodiff through `scan.unroll` instead transposes the scan body step by step: the weight gradients are then
accumulated inside the loop as T small [H, B] @ [B, G*H] matmuls plus a carried [H, G*H] sum. On CPU the
fused LSTM training step takes about 0.68x the CPU time of the autodiff one (GRU 0.72x). Only the default
computation dtype (the parameters' own) is supported; use `scan.unroll` for mixed precision, the "original"
GRU variant or plain step functions.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqjax.cells import Cell, GRUParams, HiddenState, LSTMParams, LSTMState
from seqjax.dropout import dropout_mask
from seqjax.masks import step_mask

# Default lax.scan unroll factors of the forward and backward scans: on CPU, unroll 2 and 4 were no faster
# (B=32, T=128, H=256), since XLA still runs each step's dot and fusions as separate kernels.
FORWARD_UNROLL = 1
BACKWARD_UNROLL = 1
# Time blocks of the backward scan; each block's weight gradients can then overlap the rest of the scan on
# an idle core. Equal CPU time; a wall-clock gain could not be measured on a loaded 2-core machine.
BACKWARD_CHUNKS = 1
# The cells these layers fuse: `check_inputs` validates params, xs and initial_state as scan.unroll does.
_LSTM_CELL = Cell("lstm")
_GRU_CELL = Cell("gru", variant="pytorch")


def _prepare(xs, lengths, mask, recurrent_dropout, key, B, H, dtype):
    """Time-major mask bool[T, B, 1] (or None) and the variational dropout mask [B, H] (or None)."""
    keep = step_mask(xs, lengths, mask)
    keep = None if keep is None else keep.T[:, :, None]  # [T, B, 1]
    rmask = dropout_mask(key, recurrent_dropout, (B, H), dtype)
    return keep, rmask


def _previous(seq: jax.Array, first: jax.Array, reverse: bool) -> jax.Array:
    """seq [T, B, H] of states after each step -> the state before each step (`first` before step one)."""
    if reverse:
        return jnp.concatenate([seq[1:], first[None]], axis=0)
    return jnp.concatenate([first[None], seq[:-1]], axis=0)


def _dropped(h: jax.Array, rmask: jax.Array | None) -> jax.Array:
    """h [B, H] or [T, B, H] as it enters the recurrent matmul: times the variational mask [B, H], if any."""
    if rmask is None:
        return h
    return h * (rmask if h.ndim == 2 else rmask[None])


def _backward_scan(step, carry, inputs, reverse: bool, unroll: int, chunks: int, gradients):
    """The backward scan in `chunks` consecutive time blocks, latest-processed-first, with the weight
    gradients of each block computed as soon as its per-step gradients exist.

    The blocks' weight-gradient matmuls do not depend on the rest of the scan, so XLA can run them on
    another core while the (mostly sequential) scan goes on. Equivalent to one scan over all of time:

        carry, per_step = lax.scan(step, carry, inputs, reverse=not reverse)
        return carry, gradients(slice(0, T), per_step)
    with the partial results of `gradients(block, per_step_of_block)` summed, except the last one (dxs
    [B, T_block, D]), which is concatenated along time.
    """
    T = jax.tree.leaves(inputs)[0].shape[0]
    bounds = np.linspace(0, T, min(chunks, T) + 1).astype(int)
    blocks = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    totals, dxs = None, {}
    for block in (blocks if reverse else blocks[::-1]):  # the backward pass walks time against the forward
        carry, per_step = jax.lax.scan(step, carry, jax.tree.map(lambda a, b=block: a[b], inputs),
                                       reverse=not reverse, unroll=unroll)
        *sums, dxs[block.start] = gradients(block, per_step)
        totals = sums if totals is None else [t + s for t, s in zip(totals, sums, strict=True)]
    dxs = jnp.concatenate([dxs[start] for start in sorted(dxs)], axis=1)  # [B, T, D]
    return carry, (*totals, dxs)


def _time_major(xs: jax.Array) -> jax.Array:
    """xs [B, T, D] -> [T*B, D], rows in time-major order (one cheap copy of the narrow input)."""
    B, T, D = xs.shape
    return jnp.swapaxes(xs, 0, 1).reshape(T * B, D)


def _input_projection(xs_tm: jax.Array, w_x: jax.Array, b: jax.Array, T: int) -> jax.Array:
    """xs_tm [T*B, D] -> xs @ w_x + b as [T, B, G]: one plain matmul for every step.

    The matmuls here and in `_weight_gradients` are written as 2-D products of row-major operands: XLA's CPU
    dot is several times slower when an einsum asks it to produce or consume a transposed layout
    (e.g. "btd,dg->tbg" directly).
    """
    return (xs_tm @ w_x + b[None, :]).reshape(T, -1, w_x.shape[1])


def _weight_gradients(xs_tm, w_x, h_prev, d_gates, d_xp=None):
    """Everything that needs no sequential work, from the per-step gradients d_gates [T, B, G]:

        dW_h = H_prev^T @ dGates,  dW_x = X^T @ dXP,  dX = dXP @ W_x^T,  db = sum(dXP),  db_h = sum(dGates)

    with H_prev [T*B, H] the recurrent inputs and X = xs_tm [T*B, D]. dXP (the gradient of the input
    projection) equals d_gates unless given (the GRU's candidate gate differs). Returns (dW_h, db_h, dW_x, db,
    dxs [B, T, D]).
    """
    T, B, G = d_gates.shape
    d_gates = d_gates.reshape(T * B, G)
    d_xp = d_gates if d_xp is None else d_xp.reshape(T * B, G)
    dw_h = h_prev.reshape(T * B, -1).T @ d_gates
    dw_x = xs_tm.T @ d_xp
    dxs = jnp.swapaxes((d_xp @ w_x.T).reshape(T, B, -1), 0, 1)  # [B, T, D]
    return dw_h, jnp.sum(d_gates, axis=0), dw_x, jnp.sum(d_xp, axis=0), dxs


# ---------------------------------------------------------------------------------------------------- LSTM

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


def _lstm_forward(params, xs, keep, rmask, h0, c0, reverse, unroll):
    """The forward scan; returns (ys [B, T, H], (h_T, c_T), residuals). It replaces:

        xp = xs @ w_x + b                                     # [T, B, 4H], one matmul
        for t in (reversed(range(T)) if reverse else range(T)):
            i, f, g, o = sigmoid/tanh of split(xp[t] + (h * rmask) @ w_h)
            c_new = f * c + i * g;  h_new = o * tanh(c_new)
            h, c = where(keep[t], (h_new, c_new), (h, c))     # padded steps keep the state
            acts[t], hs[t], cs[t] = (i, f, g, o), h, c
        ys = hs * keep                                        # zero outputs on padding
    """
    H = params.w_h.shape[0]
    xs_tm = _time_major(xs)  # [T*B, D]
    xp = _input_projection(xs_tm, params.w_x, params.b, xs.shape[1])  # [T, B, 4H]
    w_h = params.w_h

    def step(carry, inputs):
        h, c = carry
        xp_t, keep_t = inputs
        gates = xp_t + _dropped(h, rmask) @ w_h  # [B, 4H]
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

    (h_T, c_T), (acts, hs, cs) = jax.lax.scan(step, (h0, c0), (xp, keep), reverse=reverse, unroll=unroll)
    ys = hs if keep is None else jnp.where(keep, hs, jnp.zeros_like(hs))
    residuals = _LSTMResiduals(xs_tm, params.w_x, w_h, keep, rmask, h0, c0, acts, hs, cs)
    return jnp.swapaxes(ys, 0, 1), (h_T, c_T), residuals  # ys [B, T, H]


def _lstm_backward(res: _LSTMResiduals, d_ys, d_h_T, d_c_T, reverse, unroll, chunks=1):
    """The backward pass: a reverse scan for the gate gradients, then one matmul per weight gradient.

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
    c_prev = _previous(res.cs, res.c0, reverse)  # [T, B, H]
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
        dh_prev = _dropped(d_gates @ w_h_t, res.rmask)
        dc_prev = dc_new * f
        if keep_t is not None:
            dh_prev = dh_prev + jnp.where(keep_t, 0.0, dh)
            dc_prev = dc_prev + jnp.where(keep_t, 0.0, dc)
        return (dh_prev, dc_prev), d_gates

    h_prev = _dropped(_previous(res.hs, res.h0, reverse), res.rmask)  # [T, B, H], as it entered the matmul
    def gradients(block, d_gates):  # d_gates [T_block, B, 4H]
        return _weight_gradients(res.xs_tm[block.start * B:block.stop * B], res.w_x, h_prev[block], d_gates)

    (d_h0, d_c0), (dw_h, _, dw_x, db, dxs) = _backward_scan(
        step, (d_h_T, d_c_T), (res.acts, res.cs, c_prev, d_ys, keep), reverse, unroll, chunks, gradients)
    return LSTMParams(w_x=dw_x, w_h=dw_h, b=db), dxs, d_h0, d_c0


@partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8, 9))
def _lstm(params, xs, keep, rmask, h0, c0, reverse, forward_unroll, backward_unroll, chunks):
    ys, (h_T, c_T), _ = _lstm_forward(params, xs, keep, rmask, h0, c0, reverse, forward_unroll)
    return ys, LSTMState(h_T, c_T)


def _lstm_fwd(params, xs, keep, rmask, h0, c0, reverse, forward_unroll, backward_unroll, chunks):
    ys, (h_T, c_T), residuals = _lstm_forward(params, xs, keep, rmask, h0, c0, reverse, forward_unroll)
    return (ys, LSTMState(h_T, c_T)), residuals


def _lstm_bwd(reverse, forward_unroll, backward_unroll, chunks, residuals, cotangents):
    d_ys, d_final = cotangents
    d_params, dxs, d_h0, d_c0 = _lstm_backward(residuals, d_ys, d_final.h, d_final.c, reverse,
                                               backward_unroll, chunks)
    return d_params, dxs, None, None, d_h0, d_c0


_lstm.defvjp(_lstm_fwd, _lstm_bwd)


def lstm_layer(params: LSTMParams, xs: jax.Array, *, lengths=None, mask=None,
               initial_state: LSTMState | None = None, reverse: bool = False, recurrent_dropout: float = 0.0,
               key: jax.Array | None = None, unroll: int | None = None, backward_unroll: int | None = None,
               backward_chunks: int | None = None) -> tuple[jax.Array, LSTMState]:
    """An LSTM over xs [B, T, D] -> (ys [B, T, H], final LSTMState), with a fused backward pass.

    Same results as `scan.unroll(Cell("lstm"), params, xs, lengths=..., mask=..., initial_state=...,
    reverse=..., recurrent_dropout=..., key=...)`: padded steps keep the state and output zeros, the final
    state is each sequence's state after its last valid step, recurrent dropout draws one [B, H] mask from
    `key` (None = off). `unroll` / `backward_unroll` are the lax.scan unroll factors of the two scans.
    """
    B, H = _LSTM_CELL.check_inputs(params, xs, initial_state)
    dtype = params.w_h.dtype
    keep, rmask = _prepare(xs, lengths, mask, recurrent_dropout, key, B, H, dtype)
    if initial_state is None:
        initial_state = LSTMState(jnp.zeros((B, H), dtype), jnp.zeros((B, H), dtype))
    h0, c0 = (s.astype(dtype) for s in initial_state)
    ys, final = _lstm(params, xs, keep, rmask, h0, c0, reverse, unroll or FORWARD_UNROLL,
                      backward_unroll or BACKWARD_UNROLL, backward_chunks or BACKWARD_CHUNKS)
    return ys, LSTMState(*(f.astype(s.dtype) for f, s in zip(final, initial_state, strict=True)))


# ----------------------------------------------------------------------------------------------------- GRU

class _GRUResiduals(NamedTuple):
    xs_tm: jax.Array  # [T*B, D]
    w_x: jax.Array  # [D, 3H]
    w_h: jax.Array  # [H, 3H]
    keep: jax.Array | None  # bool [T, B, 1]
    rmask: jax.Array | None  # [B, H]
    h0: jax.Array  # [B, H]
    acts: jax.Array  # [T, B, 4H]: r, z, n and the candidate's recurrent term W_hn hh + b_hn
    hs: jax.Array  # [T, B, H]: h after each step (the carried, masked state)


def _gru_forward(params, xs, keep, rmask, h0, reverse, unroll):
    """The forward scan; returns (ys [B, T, H], h_T, residuals). It replaces:

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
    xs_tm = _time_major(xs)  # [T*B, D]
    xp = _input_projection(xs_tm, params.w_x, params.b_x, xs.shape[1])  # [T, B, 3H]
    w_h, b_h = params.w_h, params.b_h

    def step(h, inputs):
        xp_t, keep_t = inputs
        hp = _dropped(h, rmask) @ w_h + b_h[None, :]  # [B, 3H]
        rz = jax.nn.sigmoid(xp_t[:, :2 * H] + hp[:, :2 * H])
        r, z = rz[:, :H], rz[:, H:]
        hp_n = hp[:, 2 * H:]
        n = jnp.tanh(xp_t[:, 2 * H:] + r * hp_n)
        h_new = (1.0 - z) * n + z * h
        if keep_t is not None:
            h_new = jnp.where(keep_t, h_new, h)
        return h_new, (jnp.concatenate([rz, n, hp_n], axis=-1), h_new)

    h_T, (acts, hs) = jax.lax.scan(step, h0, (xp, keep), reverse=reverse, unroll=unroll)
    ys = hs if keep is None else jnp.where(keep, hs, jnp.zeros_like(hs))
    residuals = _GRUResiduals(xs_tm, params.w_x, w_h, keep, rmask, h0, acts, hs)
    return jnp.swapaxes(ys, 0, 1), h_T, residuals


def _gru_backward(res: _GRUResiduals, d_ys, d_h_T, reverse, unroll, chunks=1):
    """The backward pass: a reverse scan for the gate gradients, then one matmul per weight gradient.

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
    h_prev = _previous(res.hs, res.h0, reverse)  # [T, B, H], undropped
    h_prev_dropped = _dropped(h_prev, res.rmask)  # as it entered the recurrent matmul
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
        dh_prev = _dropped(d_hp @ w_h_t, res.rmask) + dh_new * z
        if keep_t is not None:
            dh_prev = dh_prev + jnp.where(keep_t, 0.0, dh)
        return dh_prev, (d_hp, da_n)

    def gradients(block, per_step):
        d_hp, da_n = per_step  # [T_block, B, 3H], [T_block, B, H]
        d_xp = jnp.concatenate([d_hp[..., :2 * H], da_n], axis=-1)  # [T_block, B, 3H]
        return _weight_gradients(res.xs_tm[block.start * B:block.stop * B], res.w_x, h_prev_dropped[block],
                                 d_hp, d_xp)

    d_h0, (dw_h, db_h, dw_x, db_x, dxs) = _backward_scan(
        step, d_h_T, (res.acts, h_prev, d_ys, res.keep), reverse, unroll, chunks, gradients)
    return GRUParams(w_x=dw_x, w_h=dw_h, b_x=db_x, b_h=db_h), dxs, d_h0


@partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7, 8))
def _gru(params, xs, keep, rmask, h0, reverse, forward_unroll, backward_unroll, chunks):
    ys, h_T, _ = _gru_forward(params, xs, keep, rmask, h0, reverse, forward_unroll)
    return ys, h_T


def _gru_fwd(params, xs, keep, rmask, h0, reverse, forward_unroll, backward_unroll, chunks):
    ys, h_T, residuals = _gru_forward(params, xs, keep, rmask, h0, reverse, forward_unroll)
    return (ys, h_T), residuals


def _gru_bwd(reverse, forward_unroll, backward_unroll, chunks, residuals, cotangents):
    d_ys, d_h_T = cotangents
    d_params, dxs, d_h0 = _gru_backward(residuals, d_ys, d_h_T, reverse, backward_unroll, chunks)
    return d_params, dxs, None, None, d_h0


_gru.defvjp(_gru_fwd, _gru_bwd)


def gru_layer(params: GRUParams, xs: jax.Array, *, lengths=None, mask=None,
              initial_state: HiddenState | None = None, reverse: bool = False, recurrent_dropout: float = 0.0,
              key: jax.Array | None = None, unroll: int | None = None, backward_unroll: int | None = None,
              backward_chunks: int | None = None) -> tuple[jax.Array, HiddenState]:
    """A GRU (PyTorch variant) over xs [B, T, D] -> (ys [B, T, H], final HiddenState), fused backward pass.

    Same results as `scan.unroll(Cell("gru"), params, xs, ...)` with the same keyword arguments; see
    `lstm_layer`. The "original" (Cho et al.) variant needs a second dependent matmul per step and is only
    available through `scan.unroll`.
    """
    B, H = _GRU_CELL.check_inputs(params, xs, initial_state)
    dtype = params.w_h.dtype
    keep, rmask = _prepare(xs, lengths, mask, recurrent_dropout, key, B, H, dtype)
    if initial_state is None:
        initial_state = HiddenState(jnp.zeros((B, H), dtype))
    ys, h_T = _gru(params, xs, keep, rmask, initial_state.h.astype(dtype), reverse,
                   unroll or FORWARD_UNROLL, backward_unroll or BACKWARD_UNROLL,
                   backward_chunks or BACKWARD_CHUNKS)
    return ys, HiddenState(h_T.astype(initial_state.h.dtype))


def fused_layer(cell: Cell):
    """The fused layer computing `scan.unroll(cell, ...)` for this cell, or None if there is none.

    LSTM and the PyTorch-variant GRU in the parameters' own dtype are fused; the simple RNN, the "original"
    GRU and mixed-precision cells (`Cell(..., dtype=...)`) are not. The returned function takes the keyword
    arguments of `scan.unroll` except `remat` (its backward stores only gate activations anyway).
    """
    if not isinstance(cell, Cell) or cell.dtype is not None:
        return None
    if cell.kind == "lstm":
        return lstm_layer
    if cell.kind == "gru" and cell.variant == "pytorch":
        return gru_layer
    return None
