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
computation dtype (the parameters' own) is supported; use `scan.unroll` for mixed precision or plain step
functions.

Native gate kernels (`native=True`; `scan.unroll` picks them under implementation="auto"): the elementwise
work of each step, forward and backward, is one C++ call through the XLA FFI (`rnn_gates.cc`, built by
`kernels.native` with the system compiler, AVX-512 / AVX2 / baseline code paths chosen from cpuid at load
time), while XLA keeps the recurrent matmuls. float32 on the CPU backend only.
"""
from __future__ import annotations

import jax

from seqjax.cells import Cell
from seqjax.kernels import native, rnn_ffi
from seqjax.kernels.gru import gru_layer
from seqjax.kernels.gru_original import gru_original_layer
from seqjax.kernels.lstm import lstm_layer
from seqjax.kernels.rnn_common import BACKWARD_CHUNKS, BACKWARD_UNROLL, FORWARD_UNROLL

__all__ = ["BACKWARD_CHUNKS", "BACKWARD_UNROLL", "FORWARD_UNROLL", "fused_layer", "gru_layer",
           "gru_original_layer", "lstm_layer", "use_native"]


def fused_layer(cell: Cell):
    """The fused layer computing `scan.unroll(cell, ...)` for this cell, or None if there is none.

    LSTM and both GRU variants in the parameters' own dtype are fused; the simple RNN and mixed-precision
    cells (`Cell(..., dtype=...)`) are not. The returned function takes the keyword arguments of
    `scan.unroll` except `remat` (its backward stores only gate activations anyway), and `native`.
    """
    if not isinstance(cell, Cell) or cell.dtype is not None:
        return None
    if cell.kind == "lstm":
        return lstm_layer
    if cell.kind == "gru":
        return gru_layer if cell.variant == "pytorch" else gru_original_layer
    return None


def use_native(params, xs, initial_state=None) -> bool:
    """Whether implementation="auto" runs a fused layer with the native gate kernels: float32 arrays and
    the kernels loaded (CPU backend, not switched off, built; `kernels.native.load` logs why not)."""
    return rnn_ffi.supported(*params, xs, *jax.tree.leaves(initial_state)) and native.available()
