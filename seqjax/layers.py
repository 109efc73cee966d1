"""Thin Flax NNX modules over the pure recurrent core: they declare `nnx.Param`s and call cells/scan/patterns.

Every module's `__call__` takes `key=None`: dropout is active iff a key is given (training). Modules split
the key for their children (`jax.random.split` / `fold_in`), so a train step stays a pure function of
(params, batch, key).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax import patterns, scan
from seqjax.cells import Cell
from seqjax.dropout import dropout
from seqjax.masks import check_token_ids
from seqjax.patterns import Seq2SeqSpec


class ParamTuple(nnx.Module):
    """Holds a NamedTuple of arrays as one `nnx.Param` per field; `get()` rebuilds the NamedTuple.

    This is how the NNX layer meets the pure core: modules store these, and pass `.get()` to the functions.
    """

    def __init__(self, params: NamedTuple):
        self._type = type(params)
        for name, value in zip(params._fields, params, strict=True):
            setattr(self, name, None if value is None else nnx.Param(value))

    def get(self) -> NamedTuple:
        values = (getattr(self, name) for name in self._type._fields)
        return self._type(*(None if v is None else v[...] for v in values))


class RecurrentLayer(nnx.Module):
    """One recurrent layer: `__call__(xs [B, T, D], *, lengths, mask, initial_state, key) -> (ys [B, T, H],
    final_state)`. `recurrent_dropout` (one [B, H] mask on h_{t-1}, reused at every step) applies iff key.
    `implementation` ("auto" | "fused" | "scan") is passed to `scan.unroll`."""

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
        self.params = ParamTuple(cell.init(rngs.params(), in_features, hidden_size, param_dtype))

    def __call__(self, xs, *, lengths=None, mask=None, initial_state=None, reverse: bool = False,
                 key: jax.Array | None = None):
        return scan.unroll(self.cell, self.params.get(), xs, lengths=lengths, mask=mask,
                           initial_state=initial_state, reverse=reverse, unroll=self.unroll, remat=self.remat,
                           recurrent_dropout=self.recurrent_dropout, key=key,
                           implementation=self.implementation)


class SimpleRNN(RecurrentLayer):
    """h_t = f(x_t W_x + h_{t-1} W_h + b), f = tanh or relu."""

    def __init__(self, in_features: int, hidden_size: int, *, activation: str = "tanh", dtype=None,
                 rngs: nnx.Rngs, **kwargs):
        super().__init__(Cell("rnn", activation=activation, dtype=dtype), in_features, hidden_size, rngs=rngs,
                         **kwargs)


class LSTM(RecurrentLayer):
    """LSTM, gates (i, f, g, o) as in PyTorch, forget-gate bias initialised to 1."""

    def __init__(self, in_features: int, hidden_size: int, *, dtype=None, rngs: nnx.Rngs, **kwargs):
        super().__init__(Cell("lstm", dtype=dtype), in_features, hidden_size, rngs=rngs, **kwargs)


class GRU(RecurrentLayer):
    """GRU, variant "pytorch" (reset after the recurrent matmul, cuDNN) or "original" (Cho et al. 2014)."""

    def __init__(self, in_features: int, hidden_size: int, *, variant: str = "pytorch", dtype=None,
                 rngs: nnx.Rngs, **kwargs):
        super().__init__(Cell("gru", variant=variant, dtype=dtype), in_features, hidden_size, rngs=rngs,
                         **kwargs)


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
    dropout between layers and variational recurrent dropout, both active iff `key` is given.

    `__call__(xs [B, T, D], *, lengths, mask, initial_states, key) -> (ys [B, T, out_features], finals)` where
    finals holds one final state per layer (a BidirectionalState for bidirectional layers).
    """

    def __init__(self, in_features: int, hidden_size: int, *, cell: str = "lstm", num_layers: int = 1,
                 bidirectional: bool = False, merge: str = "concat", dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, variant: str = "pytorch", activation: str = "tanh",
                 dtype=None, unroll: int = 1, remat: bool = False, implementation: str = "auto",
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        if num_layers < 1:
            raise ValueError(f"num_layers: expected >= 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a rate in [0, 1), got {dropout}")
        self.cell = Cell(cell, activation=activation, variant=variant, dtype=dtype)
        self.dropout, self.merge = dropout, merge
        self.unroll, self.remat, self.recurrent_dropout = unroll, remat, recurrent_dropout
        self.implementation = implementation
        make = lambda d: RecurrentLayer(self.cell, d, hidden_size, recurrent_dropout=recurrent_dropout,
                                        unroll=unroll, remat=remat, implementation=implementation,
                                        param_dtype=param_dtype, rngs=rngs)
        layers, width = [], in_features
        for _ in range(num_layers):
            layer = Bidirectional(make(width), make(width), merge=merge) if bidirectional else make(width)
            width = layer.out_features if bidirectional else hidden_size
            layers.append(layer)
        self.layers = nnx.List(layers)
        self.out_features = width

    def __call__(self, xs, *, lengths=None, mask=None, initial_states=None, key: jax.Array | None = None):
        params = tuple(l.bidirectional_params() if isinstance(l, Bidirectional) else l.params.get()
                       for l in self.layers)
        return scan.stack(self.cell, params, xs, lengths=lengths, mask=mask, initial_states=initial_states,
                          merge=self.merge, dropout_rate=self.dropout,
                          recurrent_dropout=self.recurrent_dropout, key=key, unroll=self.unroll,
                          remat=self.remat, implementation=self.implementation)


class Embedding(nnx.Module):
    """Token ids int[...] -> vectors [..., E]; ids are checked to lie in [0, V) when concrete (JAX would clamp
    them silently). `attend(x [..., E]) -> [..., V]` is the tied output projection x @ embedding^T."""

    def __init__(self, num_embeddings: int, features: int, *, init_scale: float | None = None,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        """Entries start N(0, init_scale^2); the default init_scale is 1/sqrt(features)."""
        self.num_embeddings, self.features = num_embeddings, features
        scale = 1.0 / np.sqrt(features) if init_scale is None else init_scale
        init = scale * jax.random.normal(rngs.params(), (num_embeddings, features), param_dtype)
        self.table = nnx.Param(init)  # [V, E]

    def __call__(self, ids: jax.Array) -> jax.Array:
        check_token_ids(ids, self.num_embeddings, "tokens")
        return jnp.take(self.table[...], ids, axis=0)

    def attend(self, x: jax.Array) -> jax.Array:
        if x.shape[-1] != self.features:
            raise ValueError(f"x: expected last axis E = {self.features}, got shape {tuple(x.shape)}")
        return jnp.einsum("...e,ve->...v", x, self.table[...])


class Dense(nnx.Module):
    """x [..., D] @ w [D, O] + b [O], LeCun-normal weights."""

    def __init__(self, in_features: int, out_features: int, *, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.w = nnx.Param(jax.random.normal(rngs.params(), (in_features, out_features), param_dtype)
                           / np.sqrt(in_features))
        self.b = nnx.Param(jnp.zeros((out_features,), param_dtype))

    def __call__(self, x):
        b = self.b[...]
        return x @ self.w[...] + jnp.expand_dims(b, tuple(range(x.ndim - 1)))


class _Head(nnx.Module):
    """Pool (optional), dropout (iff key), then a dense layer.

    ys [B, T, H] with pool "last" | "mean" | "max" -> [B, O] (many-to-one); pool=None -> [B, T, O] per step
    (many-to-many aligned); ys [B, H] is taken as already pooled.
    """

    def __init__(self, in_features: int, out_features: int, *, pool: str | None = "last",
                 dropout: float = 0.0, rngs: nnx.Rngs):
        if pool is not None and pool not in patterns.POOLS:
            raise ValueError(f"pool: expected None or one of {patterns.POOLS}, got {pool!r}")
        self.pool, self.dropout = pool, dropout
        self.dense = Dense(in_features, out_features, rngs=rngs)

    def __call__(self, ys, *, lengths=None, mask=None, key: jax.Array | None = None):
        if ys.ndim == 3 and self.pool is not None:
            ys = patterns.pool(ys, lengths=lengths, mask=mask, method=self.pool)
        return self.dense(dropout(ys, self.dropout, key))


class ClassificationHead(_Head):
    """Logits [B, num_classes] (or [B, T, num_classes] with pool=None)."""

    def __init__(self, in_features: int, num_classes: int, **kwargs):
        super().__init__(in_features, num_classes, **kwargs)


class RegressionHead(_Head):
    """Real outputs [B, out_features] (or [B, T, out_features] with pool=None)."""

    def __init__(self, in_features: int, out_features: int = 1, **kwargs):
        super().__init__(in_features, out_features, **kwargs)


class Seq2Seq(nnx.Module):
    """RNN encoder-decoder over patterns.py, optionally with Luong ("dot" | "general") or Bahdanau attention.

    `__call__(src, src_lengths, tgt_in)` gives teacher-forced logits [B, T, V_tgt]; `generate(...)` decodes
    greedily. It has no dropout; `key` is accepted for the common interface and unused.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, embed_dim: int, hidden_size: int, *, cell: str = "gru",
                 attention: str | None = None, attention_dim: int | None = None, variant: str = "pytorch",
                 dtype=None, param_dtype=jnp.float32, rngs: nnx.Rngs):
        self.spec = Seq2SeqSpec(Cell(cell, variant=variant, dtype=dtype), attention)
        p = patterns.init_seq2seq(rngs.params(), self.spec, src_vocab, tgt_vocab, embed_dim, hidden_size,
                                  attention_dim, param_dtype)
        self.src_embed, self.tgt_embed = nnx.Param(p.src_embed), nnx.Param(p.tgt_embed)
        self.encoder, self.decoder = ParamTuple(p.encoder), ParamTuple(p.decoder)
        self.attention = None if p.attention is None else ParamTuple(p.attention)
        self.w_c = None if p.w_c is None else nnx.Param(p.w_c)
        self.w_out, self.b_out = nnx.Param(p.w_out), nnx.Param(p.b_out)

    def seq2seq_params(self) -> patterns.Seq2SeqParams:
        return patterns.Seq2SeqParams(
            self.src_embed[...], self.tgt_embed[...], self.encoder.get(), self.decoder.get(),
            None if self.attention is None else self.attention.get(),
            None if self.w_c is None else self.w_c[...], self.w_out[...], self.b_out[...])

    def __call__(self, src, src_lengths, tgt_in, *, return_attention: bool = False, key: Any = None):
        return patterns.teacher_forcing(self.spec, self.seq2seq_params(), src, src_lengths, tgt_in,
                                        return_attention=return_attention)

    def generate(self, src, src_lengths, *, max_len: int, bos_id: int, eos_id: int, pad_id: int = 0,
                 return_attention: bool = False):
        return patterns.greedy_decode(self.spec, self.seq2seq_params(), src, src_lengths, max_len=max_len,
                                      bos_id=bos_id, eos_id=eos_id, pad_id=pad_id,
                                      return_attention=return_attention)
