"""Recurrent NNX modules over the pure core (seqjax/cells.py, seqjax/scan.py).

Each module holds its cell parameters as a `ParamTree` of the cell's NamedTuple (weights `Kernel`, biases
`Bias`) and calls `scan.unroll` / `scan.bidirectional` / `scan.stack` with `ParamTree.get()`. Dropout is
active iff a `key` is given.

    rnn = RNN(D, H, cell="gru", num_layers=2, bidirectional=True, layer_dropout=0.3, rngs=nnx.Rngs(0))
    ys, finals = rnn(xs, lengths=lengths, key=key)   # xs [B, T, D] -> ys [B, T, 2H], finals: one per layer
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax import scan
from seqjax.cells import Cell
from seqjax.nn.params import ParamTree


class RecurrentLayer(nnx.Module):
    """One recurrent layer: `__call__(xs [B, T, D], *, lengths, mask, initial_state, reverse, key) ->
    (ys [B, T, H], final_state)`. `recurrent_dropout` (one [B, H] mask on h_{t-1}, reused at every step)
    applies iff key. `implementation` ("auto" | "native" | "fused" | "scan") is passed to `scan.unroll`."""

    def __init__(self, cell: Cell, in_features: int, hidden_size: int, *, recurrent_dropout: float = 0.0,
                 unroll: int = 1, remat: bool = False, implementation: str = "auto", param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        if implementation not in scan.IMPLEMENTATIONS:
            raise ValueError(f"implementation: expected one of {scan.IMPLEMENTATIONS}, "
                             f"got {implementation!r}")
        self.cell = cell
        self.in_features, self.hidden_size = in_features, hidden_size
        self.recurrent_dropout, self.unroll, self.remat = recurrent_dropout, unroll, remat
        self.implementation = implementation
        self.params = ParamTree(cell.init(rngs.params(), in_features, hidden_size, param_dtype))

    def __call__(self, xs, *, lengths=None, mask=None, initial_state=None, reverse: bool = False,
                 key: jax.Array | None = None):
        return scan.unroll(self.cell, self.params.get(), xs, lengths=lengths, mask=mask,
                           initial_state=initial_state, reverse=reverse, unroll=self.unroll, remat=self.remat,
                           recurrent_dropout=self.recurrent_dropout, key=key,
                           implementation=self.implementation)


class SimpleRNN(RecurrentLayer):
    """h_t = f(x_t W_x + h_{t-1} W_h + b), f = tanh or relu."""

    def __init__(self, in_features: int, hidden_size: int, *, activation: str = "tanh", dtype=None,
                 recurrent_dropout: float = 0.0, unroll: int = 1, remat: bool = False,
                 implementation: str = "auto", param_dtype=jnp.float32, rngs: nnx.Rngs):
        super().__init__(Cell("rnn", activation=activation, dtype=dtype), in_features, hidden_size,
                         recurrent_dropout=recurrent_dropout, unroll=unroll, remat=remat,
                         implementation=implementation, param_dtype=param_dtype, rngs=rngs)


class LSTM(RecurrentLayer):
    """LSTM, gates (i, f, g, o) as in PyTorch, forget-gate bias initialised to 1."""

    def __init__(self, in_features: int, hidden_size: int, *, dtype=None, recurrent_dropout: float = 0.0,
                 unroll: int = 1, remat: bool = False, implementation: str = "auto", param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        super().__init__(Cell("lstm", dtype=dtype), in_features, hidden_size,
                         recurrent_dropout=recurrent_dropout, unroll=unroll, remat=remat,
                         implementation=implementation, param_dtype=param_dtype, rngs=rngs)


class GRU(RecurrentLayer):
    """GRU, variant "pytorch" (reset after the recurrent matmul, cuDNN) or "original" (Cho et al. 2014)."""

    def __init__(self, in_features: int, hidden_size: int, *, variant: str = "pytorch", dtype=None,
                 recurrent_dropout: float = 0.0, unroll: int = 1, remat: bool = False,
                 implementation: str = "auto", param_dtype=jnp.float32, rngs: nnx.Rngs):
        super().__init__(Cell("gru", variant=variant, dtype=dtype), in_features, hidden_size,
                         recurrent_dropout=recurrent_dropout, unroll=unroll, remat=remat,
                         implementation=implementation, param_dtype=param_dtype, rngs=rngs)


class Bidirectional(nnx.Module):
    """Two recurrent layers of the same cell, one per direction, merged per step ("concat", "sum", "mean")."""

    def __init__(self, forward: RecurrentLayer, backward: RecurrentLayer, *, merge: str = "concat"):
        if forward.cell != backward.cell or forward.hidden_size != backward.hidden_size:
            raise ValueError(f"Bidirectional: both directions need the same cell and width, got "
                             f"{forward.cell}/{forward.hidden_size} and "
                             f"{backward.cell}/{backward.hidden_size}")
        if merge not in scan.MERGES:
            raise ValueError(f"merge: expected one of {scan.MERGES}, got {merge!r}")
        self.forward, self.backward, self.merge = forward, backward, merge
        self.out_features = 2 * forward.hidden_size if merge == "concat" else forward.hidden_size

    def bidirectional_params(self) -> scan.BidirectionalParams:
        return scan.BidirectionalParams(self.forward.params.get(), self.backward.params.get())

    def __call__(self, xs, *, lengths=None, mask=None, initial_state=None, key: jax.Array | None = None):
        f = self.forward
        return scan.bidirectional(f.cell, self.bidirectional_params(), xs, lengths=lengths, mask=mask,
                                  initial_state=initial_state, merge=self.merge, unroll=f.unroll,
                                  remat=f.remat, recurrent_dropout=f.recurrent_dropout, key=key,
                                  implementation=f.implementation)


class RNN(nnx.Module):
    """A stack of recurrent layers (`cell` "lstm" | "gru" | "rnn"), each optionally bidirectional, with
    dropout between layers (`layer_dropout`) and variational recurrent dropout, both active iff `key`.

    `__call__(xs [B, T, D], *, lengths, mask, initial_states, key) -> (ys [B, T, out_features], finals)` where
    finals holds one final state per layer (a BidirectionalState for bidirectional layers).
    """

    def __init__(self, in_features: int, hidden_size: int, *, cell: str = "lstm", num_layers: int = 1,
                 bidirectional: bool = False, merge: str = "concat", layer_dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, variant: str = "pytorch", activation: str = "tanh",
                 dtype=None, unroll: int = 1, remat: bool = False, implementation: str = "auto",
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        if num_layers < 1:
            raise ValueError(f"num_layers: expected >= 1, got {num_layers}")
        if not 0.0 <= layer_dropout < 1.0:
            raise ValueError(f"layer_dropout: expected a rate in [0, 1), got {layer_dropout}")
        if layer_dropout and num_layers == 1:
            # It would do nothing: the rate acts between stacked layers, and one layer has no such gap.
            raise ValueError(f"layer_dropout={layer_dropout}: acts between stacked layers, and num_layers=1 "
                             "has none; use num_layers >= 2, or output/embedding dropout")
        self.cell = Cell(cell, activation=activation, variant=variant, dtype=dtype)
        self.layer_dropout, self.merge = layer_dropout, merge
        self.unroll, self.remat, self.recurrent_dropout = unroll, remat, recurrent_dropout
        self.implementation = implementation

        def make(width: int) -> RecurrentLayer:
            return RecurrentLayer(self.cell, width, hidden_size, recurrent_dropout=recurrent_dropout,
                                  unroll=unroll, remat=remat, implementation=implementation,
                                  param_dtype=param_dtype, rngs=rngs)

        layers, width = [], in_features
        for _ in range(num_layers):
            layer = Bidirectional(make(width), make(width), merge=merge) if bidirectional else make(width)
            width = layer.out_features if bidirectional else hidden_size
            layers.append(layer)
        self.layers = nnx.List(layers)
        self.out_features = width

    def stack_params(self) -> tuple:
        """The pure `scan.stack` parameters: per layer cell params or BidirectionalParams."""
        return tuple(l.bidirectional_params() if isinstance(l, Bidirectional) else l.params.get()
                     for l in self.layers)

    def __call__(self, xs, *, lengths=None, mask=None, initial_states=None, key: jax.Array | None = None):
        return scan.stack(self.cell, self.stack_params(), xs, lengths=lengths, mask=mask,
                          initial_states=initial_states, merge=self.merge, dropout_rate=self.layer_dropout,
                          recurrent_dropout=self.recurrent_dropout, key=key, unroll=self.unroll,
                          remat=self.remat, implementation=self.implementation)
