"""Unrolling recurrent cells over time with `lax.scan`: masked, reversible, bidirectional, stacked.

Sequences are batch-major xs [B, T, D] and right-padded, described by `lengths` int[B] or `mask` bool[B, T]
(True = valid). A padded step leaves the state untouched and outputs zeros, so:

  * the final state is each sequence's state after its own last valid step (carried through the scan, never
    by stacking all T states and gathering: memory does not grow with T);
  * `reverse=True` scans t = T-1 .. 0; the padded tail of a right-padded sequence is skipped with the state
    still at its initial value, so each sequence is walked from its own last valid step back to step 0, and
    outputs stay aligned with the inputs.

For speed the input projection of every step (`[B*T, D] @ [D, G*H]`) is one matmul before the scan; the scan
body does only the recurrent `h @ W_h` (see cells.py).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from seqjax.cells import Cell, check_sequence
from seqjax.dropout import dropout, dropout_mask
from seqjax.kernels import vendor
from seqjax.kernels.rnn import fused_layer, use_native
from seqjax.masks import step_mask

MERGES = ("concat", "sum", "mean")
IMPLEMENTATIONS = ("auto", "native", "fused", "scan")


class BidirectionalParams(NamedTuple):
    forward: Any  # cell params for the left-to-right pass
    backward: Any  # cell params for the right-to-left pass


class BidirectionalState(NamedTuple):
    forward: Any  # state after each sequence's last valid step
    backward: Any  # state after step 0 of the reverse pass


def _masked_step(step: Callable, keep_mask: bool):
    """Wrap `step(state, x_t) -> (state, y_t)` so masked-out rows keep their old state and output zero."""
    def body(state, inputs):
        x_t, m_t = inputs
        new_state, y_t = step(state, x_t)
        # Keep the carry's dtype (e.g. float32 state under bfloat16 compute) so lax.scan sees a fixed type.
        new_state = jax.tree.map(lambda n, o: n.astype(o.dtype), new_state, state)
        if keep_mask:
            keep = m_t[:, None]  # [B, 1]
            new_state = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new_state, state)
            y_t = jnp.where(keep, y_t, jnp.zeros_like(y_t))
        return new_state, y_t
    return body


def unroll(cell: Cell | Callable, params, xs: jax.Array, *, lengths=None, mask=None, initial_state=None,
           reverse: bool = False, unroll: int = 1, remat: bool = False, recurrent_dropout: float = 0.0,
           key: jax.Array | None = None, implementation: str = "auto") -> tuple[jax.Array, Any]:
    """Run a cell over xs [B, T, D] -> (ys [B, T, H], final_state), skipping padded steps.

    The scan replaces this Python loop (time-major inside, batch-major outside):

        xp = cell.input_projection(params, xs)               # [B, T, G*H], one matmul for all steps
        state = initial_state or zeros
        for t in (reversed(range(T)) if reverse else range(T)):
            new_state, y = cell.recurrent_step(params, state, xp[:, t], recurrent_mask)
            state = where(mask[:, t], new_state, state)      # padded steps leave the state untouched
            ys[:, t] = where(mask[:, t], y, 0)
        return ys, state

    `cell` is a `Cell`, or any step function `cell(params, state, x_t) -> (state, y_t)` (then `initial_state`
    is required and there is no hoisted projection or recurrent dropout). `recurrent_dropout` > 0 with a `key`
    draws ONE mask [B, H] (Gal & Ghahramani, 2016) multiplied into h_{t-1} where it enters the recurrent
    matmul, the same mask at every step; key=None means no dropout. `unroll` is lax.scan's unroll factor;
    `remat=True` recomputes each step in the backward pass (`jax.checkpoint`) instead of storing it.

    `implementation`: "scan" is the loop above, differentiated by JAX step by step; "fused" runs the same
    computation through `kernels.rnn` (LSTM and both GRU variants in the parameters' dtype), whose custom
    backward forms the weight gradients with one large matmul after the reverse scan instead of one small
    matmul per step; "native" is "fused" with each step's gate arithmetic in C++ (float32, CPU; see
    `kernels.rnn`); "auto" (default) takes cuDNN's LSTM on a GPU where `kernels.vendor.rnn_kernel` allows it
    (LSTM, f32/fp16, padding by `lengths`, no reverse, recurrent dropout or remat), else "native" where it
    runs, else "fused" where it exists and `remat` is off, else "scan". `SEQJAX_NATIVE_RNN=0` in the
    environment switches "native" off (auto then logs that it falls back to "fused").
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation: expected one of {IMPLEMENTATIONS}, got {implementation!r}")
    fused = None if implementation == "scan" or remat else fused_layer(cell)
    if implementation in ("fused", "native") and fused is None:
        raise ValueError(f"implementation={implementation!r}: no fused kernel for {cell!r} with "
                         f"remat={remat}; use 'scan' or 'auto'")
    B = check_sequence(xs)[0]
    keep = step_mask(xs, lengths, mask)
    if isinstance(cell, Cell):
        cell.check_inputs(params, xs, initial_state)
        state = cell.zero_state(params, B) if initial_state is None else initial_state
        dtype = cell.dtype or jax.tree.leaves(params)[0].dtype
        vendor_choice, _ = vendor.rnn_kernel(
            jax.default_backend(), cell_kind=cell.kind, dtype=dtype, lengths_only=mask is None,
            reverse=reverse, recurrent_dropout=bool(recurrent_dropout and key is not None), remat=remat)
        if implementation == "auto" and vendor_choice == "cudnn":
            return vendor.cudnn_lstm(params, xs, lengths, state)
        if fused is not None:
            native = (implementation == "native"
                      or (implementation == "auto" and use_native(params, xs, state)))
            return fused(params, xs, mask=keep, initial_state=state, reverse=reverse,
                         recurrent_dropout=recurrent_dropout, key=key, unroll=unroll, native=native)
        rmask = dropout_mask(key, recurrent_dropout, (B, cell.hidden_size(params)))
        inputs = cell.input_projection(params, xs)  # [B, T, G*H]

        def step(state, xp_t):
            return cell.recurrent_step(params, state, xp_t, rmask)
    else:
        if initial_state is None:
            raise ValueError("initial_state: required when `cell` is a plain step function, not a Cell")
        if recurrent_dropout:
            raise ValueError("recurrent_dropout: only supported for a Cell, not a plain step function")
        state, inputs = initial_state, xs

        def step(state, x_t):
            return cell(params, state, x_t)

    body = _masked_step(step, keep is not None)
    if remat:
        body = jax.checkpoint(body)
    time_major = (jnp.swapaxes(inputs, 0, 1), None if keep is None else keep.T)  # [T, B, G*H], [T, B]
    final, ys = jax.lax.scan(body, state, time_major, reverse=reverse, unroll=unroll)
    return jnp.swapaxes(ys, 0, 1), final  # [B, T, H]


_unroll = unroll  # the functions below take an `unroll` argument (the scan's unroll factor) that shadows it


def merge_directions(fwd: jax.Array, bwd: jax.Array, merge: str) -> jax.Array:
    """[B, T, H] x 2 -> [B, T, 2H] ("concat") or [B, T, H] ("sum", "mean")."""
    if merge == "concat":
        return jnp.concatenate([fwd, bwd], axis=-1)
    if merge == "sum":
        return fwd + bwd
    if merge == "mean":
        return 0.5 * (fwd + bwd)
    raise ValueError(f"merge: expected one of {MERGES}, got {merge!r}")


def bidirectional(cell: Cell, params: BidirectionalParams, xs: jax.Array, *, lengths=None, mask=None,
                  initial_state: BidirectionalState | None = None, merge: str = "concat", unroll: int = 1,
                  remat: bool = False, recurrent_dropout: float = 0.0, key: jax.Array | None = None,
                  implementation: str = "auto") -> tuple[jax.Array, BidirectionalState]:
    """A forward and a backward pass over each sequence's valid steps, merged per step.

    Equivalent to:
        ys_f, s_f = unroll(cell, params.forward, xs, ...)
        ys_b, s_b = unroll(cell, params.backward, xs, ..., reverse=True)
        return merge(ys_f, ys_b), BidirectionalState(s_f, s_b)
    Outputs at padded steps are zero in both directions.
    """
    if merge not in MERGES:
        raise ValueError(f"merge: expected one of {MERGES}, got {merge!r}")
    if not isinstance(params, BidirectionalParams):
        raise ValueError(f"params: expected BidirectionalParams(forward, backward), "
                         f"got {type(params).__name__}")
    init_f, init_b = (None, None) if initial_state is None else initial_state
    k_f, k_b = (None, None) if key is None else jax.random.split(key)
    common = dict(lengths=lengths, mask=mask, unroll=unroll, remat=remat, recurrent_dropout=recurrent_dropout,
                  implementation=implementation)
    ys_f, s_f = _unroll(cell, params.forward, xs, initial_state=init_f, key=k_f, **common)
    ys_b, s_b = _unroll(cell, params.backward, xs, initial_state=init_b, key=k_b, reverse=True, **common)
    return merge_directions(ys_f, ys_b, merge), BidirectionalState(s_f, s_b)


def init_stack(key: jax.Array, cell: Cell, D: int, H: int, num_layers: int, *, bidirectional: bool = False,
               merge: str = "concat", dtype=jnp.float32) -> tuple:
    """Parameters for `stack`: a tuple of per-layer cell params (or BidirectionalParams)."""
    if num_layers < 1:
        raise ValueError(f"num_layers: expected >= 1, got {num_layers}")
    if merge not in MERGES:
        raise ValueError(f"merge: expected one of {MERGES}, got {merge!r}")
    layers, width = [], D
    for k in jax.random.split(key, num_layers):
        if bidirectional:
            k_f, k_b = jax.random.split(k)
            layers.append(BidirectionalParams(cell.init(k_f, width, H, dtype),
                                              cell.init(k_b, width, H, dtype)))
            width = 2 * H if merge == "concat" else H
        else:
            layers.append(cell.init(k, width, H, dtype))
            width = H
    return tuple(layers)


def stack(cell: Cell, layers: Sequence, xs: jax.Array, *, lengths=None, mask=None,
          initial_states: Sequence | None = None, merge: str = "concat", dropout_rate: float = 0.0,
          recurrent_dropout: float = 0.0, key: jax.Array | None = None, unroll: int = 1,
          remat: bool = False, implementation: str = "auto") -> tuple[jax.Array, tuple]:
    """Several recurrent layers, each unidirectional (cell params) or bidirectional (BidirectionalParams).

        for l, params in enumerate(layers):
            xs, final[l] = (bidirectional if l is bidirectional else unroll)(cell, params, xs, ...)
            if l < L - 1: xs = dropout(xs, dropout_rate, key_l)    # between layers only, as in PyTorch

    Dropout (between layers, fresh per element) and recurrent dropout (one [B, H] mask per layer and
    direction) are active iff `key` is given. Returns (ys of the last layer, one final state per layer).
    """
    check_sequence(xs)
    if len(layers) == 0:
        raise ValueError("layers: expected at least one layer")
    if initial_states is not None and len(initial_states) != len(layers):
        raise ValueError(f"initial_states: expected one per layer ({len(layers)}), got {len(initial_states)}")
    keep = step_mask(xs, lengths, mask)  # validate once; every layer reuses the mask
    finals = []
    for l, params in enumerate(layers):
        k_drop, k_rec = (None, None) if key is None else jax.random.split(jax.random.fold_in(key, l))
        init = None if initial_states is None else initial_states[l]
        common = dict(mask=keep, initial_state=init, unroll=unroll, remat=remat,
                      recurrent_dropout=recurrent_dropout, key=k_rec, implementation=implementation)
        if isinstance(params, BidirectionalParams):
            xs, final = bidirectional(cell, params, xs, merge=merge, **common)
        else:
            xs, final = _unroll(cell, params, xs, **common)
        finals.append(final)
        if l < len(layers) - 1:
            xs = dropout(xs, dropout_rate, k_drop)
    return xs, tuple(finals)
