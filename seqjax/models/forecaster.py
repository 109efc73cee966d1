"""Direct multi-step forecasting of a multivariate series with a recurrent stack.

    model = Forecaster(num_inputs=6, num_outputs=4, horizon=1, rngs=nnx.Rngs(0))
    y = model(x, key=key)   # x [B, W, C_in] -> [B, horizon, C_out]
"""
from __future__ import annotations

import jax
from flax import nnx

from seqjax.dropout import dropout, split_keys
from seqjax.nn import RNN, Dense


class Forecaster(nnx.Module):
    """Window x [B, W, C_in] -> the next `horizon` rows of C_out targets, [B, horizon, C_out].

    A recurrent stack reads the window; its output at the last step (dropout, then a dense layer) predicts
    all horizon x C_out values at once (direct multi-step forecasting, no feedback of predictions).
    Data arguments: `num_inputs` C_in, `num_outputs` C_out, `horizon`. `layer_dropout` acts between stacked
    layers, `output_dropout` on the last step's output; both only when a key is given.

    Args:
        hidden_size: H, the width of each recurrent layer.
        cell: the recurrent cell, "rnn", "lstm" or "gru".
        num_layers: stacked recurrent layers.
        layer_dropout: dropout rate between stacked layers (training only).
        output_dropout: dropout rate on the last step's output, before the dense layer (training only).
    """

    def __init__(self, num_inputs: int, num_outputs: int, horizon: int, *, hidden_size: int = 32,
                 cell: str = "lstm", num_layers: int = 1, layer_dropout: float = 0.0,
                 output_dropout: float = 0.0, rngs: nnx.Rngs):
        self.horizon, self.num_outputs = int(horizon), int(num_outputs)
        self.output_dropout = float(output_dropout)
        self.rnn = RNN(num_inputs, hidden_size, cell=cell, num_layers=num_layers, layer_dropout=layer_dropout,
                       rngs=rngs)
        self.head = Dense(hidden_size, self.horizon * self.num_outputs, axes=("hidden", "classes"), rngs=rngs)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        if x.ndim != 3:
            raise ValueError(f"x: expected a window [B, W, C_in], got shape {tuple(x.shape)}")
        k_rnn, k_out = split_keys(key, 2)
        ys, _ = self.rnn(x, key=k_rnn)  # [B, W, H]
        h = dropout(ys[:, -1], self.output_dropout, k_out)  # [B, H]
        return self.head(h).reshape(x.shape[0], self.horizon, self.num_outputs)  # [B, horizon, C_out]
