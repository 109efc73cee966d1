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

from seqjax.cells import Cell
from seqjax.kernels.gru import gru_layer
from seqjax.kernels.lstm import lstm_layer
from seqjax.kernels.rnn_common import BACKWARD_CHUNKS, BACKWARD_UNROLL, FORWARD_UNROLL

__all__ = ["BACKWARD_CHUNKS", "BACKWARD_UNROLL", "FORWARD_UNROLL", "fused_layer", "gru_layer", "lstm_layer"]


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
