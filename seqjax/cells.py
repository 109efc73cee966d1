"""Recurrent cells as pure functions: simple RNN, LSTM and GRU (two variants).

A cell step is `cell(params, state, x_t) -> (state, y_t)` with x_t [B, D], y_t = h_t [B, H]. Each step is
split in two so an unroll can hoist the input work out of the time loop:

  * input projection  `xp = x @ W_x + b_x`  on ALL steps at once: one matmul `[B*T, D] @ [D, G*H]`;
  * recurrent step    given the projected input xp_t [B, G*H]: only `h_{t-1} @ W_h` happens per time step.

`cell(params, state, x_t)` is `recurrent_step(params, state, input_projection(params, x_t))`. A fused kernel
can reuse the same two halves and the same parameter layout.

Gate layouts follow PyTorch so weights map 1:1 (PyTorch's `weight_ih_l0` is [G*H, D]; ours is its transpose):

  * LSTM: gates (i, f, g, o) stacked along the last axis of `w_x` [D, 4H], `w_h` [H, 4H], `b` [4H]. PyTorch's
    two biases `bias_ih + bias_hh` add up to our single `b`. The forget-gate bias starts at 1.0 (Jozefowicz et
    al., 2015) so the cell remembers by default early in training.
  * GRU: gates (r, z, n) stacked as [D, 3H] / [H, 3H], with separate biases `b_x` and `b_h` [3H] because the
    candidate's recurrent bias sits inside the reset product: `n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`.

Parameters are float32 by default; `dtype` (on the functions and on `Cell`) is the computation dtype:
parameters and inputs are cast to it, so bfloat16 compute keeps float32 master weights.

The shape checks of a recurrent layer's inputs live here, once, for every unroll of a cell (`scan.unroll`,
the fused `kernels.rnn` layers): `check_sequence` (xs [B, T, D]) and `Cell.check_inputs` / `Cell.check_state`
(params, input width, initial state [B, H]).
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# ----------------------------------------------------------------------------------------------------
# Parameters and states


class RNNParams(NamedTuple):
    """Simple RNN: h_t = f(x_t @ w_x + h_{t-1} @ w_h + b)."""
    w_x: jax.Array  # [D, H]
    w_h: jax.Array  # [H, H]
    b: jax.Array  # [H]
    BIASES = ("b",)  # the fields that are additive offsets (seqjax.nn.params: never weight-decayed)
    # The logical names of each field's axes (seqjax.nn.params).
    AXES = {"w_x": ("embed", "gates"), "w_h": ("hidden", "gates"), "b": ("gates",)}


class LSTMParams(NamedTuple):
    """LSTM with gates stacked in PyTorch order (i, f, g, o)."""
    w_x: jax.Array  # [D, 4H]
    w_h: jax.Array  # [H, 4H]
    b: jax.Array  # [4H]  (= PyTorch bias_ih + bias_hh)
    BIASES = ("b",)
    AXES = {"w_x": ("embed", "gates"), "w_h": ("hidden", "gates"), "b": ("gates",)}


class GRUParams(NamedTuple):
    """GRU with gates stacked in PyTorch order (r, z, n)."""
    w_x: jax.Array  # [D, 3H]
    w_h: jax.Array  # [H, 3H]
    b_x: jax.Array  # [3H]  (= PyTorch bias_ih)
    b_h: jax.Array  # [3H]  (= PyTorch bias_hh)
    BIASES = ("b_x", "b_h")
    AXES = {"w_x": ("embed", "gates"), "w_h": ("hidden", "gates"), "b_x": ("gates",), "b_h": ("gates",)}


class HiddenState(NamedTuple):
    """State of the simple RNN and the GRU."""
    h: jax.Array  # [B, H]


class LSTMState(NamedTuple):
    h: jax.Array  # [B, H]
    c: jax.Array  # [B, H]


ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}
GRU_VARIANTS = ("pytorch", "original")

# ----------------------------------------------------------------------------------------------------
# Input checks (the cell's own ones are methods of `Cell` below)


def check_sequence(xs, name: str = "xs") -> tuple[int, int, int]:
    """Validate a batch-major sequence batch xs [B, T, D]; returns (B, T, D)."""
    if np.ndim(xs) != 3:
        raise ValueError(f"{name}: expected a batch-major array [B, T, D], got shape {tuple(np.shape(xs))}")
    return tuple(np.shape(xs))


# ----------------------------------------------------------------------------------------------------
# Initialisers


def _uniform(key, shape, fan_in, dtype):
    """Glorot/LeCun-style uniform for the input weights: U(-sqrt(1/fan_in), sqrt(1/fan_in)) like PyTorch."""
    bound = 1.0 / np.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _orthogonal_blocks(key, H, G, dtype):
    """[H, G*H]: one orthogonal [H, H] block per gate, so each gate's recurrence starts norm-preserving."""
    init = jax.nn.initializers.orthogonal()
    return jnp.concatenate([init(k, (H, H), dtype) for k in jax.random.split(key, G)], axis=1)


def _check_sizes(D, H):
    if int(D) <= 0 or int(H) <= 0:
        raise ValueError(f"cell sizes must be positive, got D={D}, H={H}")


def init_rnn(key: jax.Array, D: int, H: int, dtype=jnp.float32) -> RNNParams:
    _check_sizes(D, H)
    kx, kh = jax.random.split(key)
    return RNNParams(w_x=_uniform(kx, (D, H), D, dtype), w_h=_orthogonal_blocks(kh, H, 1, dtype),
                     b=jnp.zeros((H,), dtype))


def init_lstm(key: jax.Array, D: int, H: int, *, forget_bias: float = 1.0, dtype=jnp.float32) -> LSTMParams:
    """Input weights U(+-1/sqrt(D)), recurrent weights orthogonal per gate, biases 0 except forget = 1."""
    _check_sizes(D, H)
    kx, kh = jax.random.split(key)
    b = jnp.zeros((4, H), dtype).at[1].set(forget_bias).reshape(4 * H)  # gate order i, f, g, o
    return LSTMParams(w_x=_uniform(kx, (D, 4 * H), D, dtype), w_h=_orthogonal_blocks(kh, H, 4, dtype), b=b)


def init_gru(key: jax.Array, D: int, H: int, dtype=jnp.float32) -> GRUParams:
    _check_sizes(D, H)
    kx, kh = jax.random.split(key)
    return GRUParams(w_x=_uniform(kx, (D, 3 * H), D, dtype), w_h=_orthogonal_blocks(kh, H, 3, dtype),
                     b_x=jnp.zeros((3 * H,), dtype), b_h=jnp.zeros((3 * H,), dtype))


# ----------------------------------------------------------------------------------------------------
# The two halves of each cell


def _cast(dtype, *arrays):
    if dtype is None:
        return arrays
    return tuple(a.astype(dtype) for a in arrays)


def _add_bias(y: jax.Array, b: jax.Array) -> jax.Array:
    """y [..., G] + b [G] with b's leading axes made explicit: strict configs forbid rank promotion."""
    return y + jnp.expand_dims(b, tuple(range(y.ndim - 1)))


def _recurrent_input(h: jax.Array, recurrent_mask: jax.Array | None) -> jax.Array:
    """h_{t-1} as it enters the recurrent matmul; variational dropout multiplies its [B, H] mask here."""
    return h if recurrent_mask is None else h * recurrent_mask.astype(h.dtype)


def rnn_input_projection(params: RNNParams, xs: jax.Array, dtype=None) -> jax.Array:
    """xs [..., D] -> [..., H]: x @ w_x + b for every step at once."""
    xs, w_x, b = _cast(dtype, xs, params.w_x, params.b)
    return _add_bias(xs @ w_x, b)


def rnn_recurrent_step(params: RNNParams, state: HiddenState, xp_t: jax.Array, *, activation: str = "tanh",
                       recurrent_mask: jax.Array | None = None, dtype=None) -> tuple[HiddenState, jax.Array]:
    """h_t = f(xp_t + h_{t-1} @ w_h) with xp_t = x_t @ w_x + b already computed: [B, H] -> [B, H]."""
    (w_h,) = _cast(dtype, params.w_h)
    h = _recurrent_input(state.h, recurrent_mask).astype(w_h.dtype)
    h = ACTIVATIONS[activation](xp_t.astype(w_h.dtype) + h @ w_h)
    return HiddenState(h), h


def lstm_input_projection(params: LSTMParams, xs: jax.Array, dtype=None) -> jax.Array:
    """xs [..., D] -> [..., 4H]: the input half of all four gates (i, f, g, o) plus the bias."""
    xs, w_x, b = _cast(dtype, xs, params.w_x, params.b)
    return _add_bias(xs @ w_x, b)


def lstm_recurrent_step(params: LSTMParams, state: LSTMState, xp_t: jax.Array, *,
                        recurrent_mask: jax.Array | None = None, dtype=None) -> tuple[LSTMState, jax.Array]:
    """One LSTM step from the projected input xp_t [B, 4H] (PyTorch's formulas):

        i, f, g, o = split(xp_t + h_{t-1} @ w_h)      # gate pre-activations, each [B, H]
        c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
        h_t = sigmoid(o) * tanh(c_t)
    """
    (w_h,) = _cast(dtype, params.w_h)
    h = _recurrent_input(state.h, recurrent_mask).astype(w_h.dtype)
    gates = xp_t.astype(w_h.dtype) + h @ w_h  # [B, 4H]
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * state.c.astype(gates.dtype) + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return LSTMState(h, c), h


def gru_input_projection(params: GRUParams, xs: jax.Array, dtype=None) -> jax.Array:
    """xs [..., D] -> [..., 3H]: W_ir x + b_ir, W_iz x + b_iz, W_in x + b_in."""
    xs, w_x, b_x = _cast(dtype, xs, params.w_x, params.b_x)
    return _add_bias(xs @ w_x, b_x)


def gru_recurrent_step(params: GRUParams, state: HiddenState, xp_t: jax.Array, *, variant: str = "pytorch",
                       recurrent_mask: jax.Array | None = None, dtype=None) -> tuple[HiddenState, jax.Array]:
    """One GRU step from the projected input xp_t [B, 3H]. With hh = h_{t-1} (dropout-masked, if any):

        r = sigmoid(W_ir x + b_ir + W_hr hh + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz hh + b_hz)
        variant="pytorch"  (cuDNN):          n = tanh(W_in x + b_in + r * (W_hn hh + b_hn))
        variant="original" (Cho et al. 2014): n = tanh(W_in x + b_in + W_hn (r * hh) + b_hn)
        h_t = (1 - z) * n + z * h_{t-1}

    "pytorch" does all three recurrent matmuls as one [H, 3H] product before the reset gate is known;
    "original" needs a second, dependent matmul per step. The interpolation uses the undropped h_{t-1}.
    """
    if variant not in GRU_VARIANTS:
        raise ValueError(f"variant: expected one of {GRU_VARIANTS}, got {variant!r}")
    w_h, b_h = _cast(dtype, params.w_h, params.b_h)
    H = w_h.shape[0]
    h_prev = state.h.astype(w_h.dtype)
    hh = _recurrent_input(h_prev, recurrent_mask)
    xp_t = xp_t.astype(w_h.dtype)
    x_rz, x_n = xp_t[..., : 2 * H], xp_t[..., 2 * H:]
    if variant == "pytorch":
        h_all = _add_bias(hh @ w_h, b_h)  # [B, 3H]
        rz = jax.nn.sigmoid(x_rz + h_all[..., : 2 * H])
        r, z = rz[..., :H], rz[..., H:]
        n = jnp.tanh(x_n + r * h_all[..., 2 * H:])
    else:
        rz = jax.nn.sigmoid(x_rz + _add_bias(hh @ w_h[:, : 2 * H], b_h[: 2 * H]))
        r, z = rz[..., :H], rz[..., H:]
        n = jnp.tanh(x_n + _add_bias((r * hh) @ w_h[:, 2 * H:], b_h[2 * H:]))
    h = (1.0 - z) * n + z * h_prev
    return HiddenState(h), h


def rnn_cell(params: RNNParams, state: HiddenState, x_t: jax.Array, *, activation="tanh", dtype=None):
    """One simple-RNN step from the raw input x_t [B, D]."""
    return rnn_recurrent_step(params, state, rnn_input_projection(params, x_t, dtype), activation=activation,
                              dtype=dtype)


def lstm_cell(params: LSTMParams, state: LSTMState, x_t: jax.Array, *, dtype=None):
    """One LSTM step from the raw input x_t [B, D]."""
    return lstm_recurrent_step(params, state, lstm_input_projection(params, x_t, dtype), dtype=dtype)


def gru_cell(params: GRUParams, state: HiddenState, x_t: jax.Array, *, variant="pytorch", dtype=None):
    """One GRU step from the raw input x_t [B, D]."""
    return gru_recurrent_step(params, state, gru_input_projection(params, x_t, dtype), variant=variant,
                              dtype=dtype)


# ----------------------------------------------------------------------------------------------------
# Cell: a static (hashable) description of which cell to run, used by scan.py, kernels/rnn.py, patterns.py
# and layers.py


_KINDS = ("rnn", "lstm", "gru")
_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_PARAMS = {"rnn": RNNParams, "lstm": LSTMParams, "gru": GRUParams}


@dataclasses.dataclass(frozen=True)
class Cell:
    """Which recurrent cell to run. It holds no arrays (a frozen, hashable dataclass, not a pytree), so it can
    be a static argument under jit and a plain attribute of an NNX module.

    `Cell("lstm")`, `Cell("gru", variant="original")`, `Cell("rnn", activation="relu")`, `Cell("lstm",
    dtype=jnp.bfloat16)`. Calling it is one full step: `cell(params, state, x_t) -> (state, y_t)`.
    """
    kind: str = "lstm"
    activation: str = "tanh"  # simple RNN only
    variant: str = "pytorch"  # GRU only
    dtype: Any = None  # computation dtype; None = the parameters' dtype

    def __post_init__(self):
        self.validate()

    def validate(self) -> Cell:
        if self.kind not in _KINDS:
            raise ValueError(f"cell kind: expected one of {_KINDS}, got {self.kind!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {tuple(ACTIVATIONS)}, got {self.activation!r}")
        if self.variant not in GRU_VARIANTS:
            raise ValueError(f"variant: expected one of {GRU_VARIANTS}, got {self.variant!r}")
        return self

    def init(self, key: jax.Array, D: int, H: int, dtype=jnp.float32):
        self.validate()
        if self.kind == "lstm":
            return init_lstm(key, D, H, dtype=dtype)
        return init_gru(key, D, H, dtype) if self.kind == "gru" else init_rnn(key, D, H, dtype)

    def input_projection(self, params, xs: jax.Array) -> jax.Array:
        """xs [..., D] -> [..., G*H], G = 1 (rnn), 4 (lstm), 3 (gru)."""
        self._check_params(params)
        project = {"rnn": rnn_input_projection, "lstm": lstm_input_projection, "gru": gru_input_projection}
        return project[self.kind](params, xs, self.dtype)

    def recurrent_step(self, params, state, xp_t: jax.Array, recurrent_mask: jax.Array | None = None):
        """(state, xp_t [B, G*H]) -> (state, y_t [B, H])."""
        if self.kind == "lstm":
            return lstm_recurrent_step(params, state, xp_t, recurrent_mask=recurrent_mask, dtype=self.dtype)
        if self.kind == "gru":
            return gru_recurrent_step(params, state, xp_t, variant=self.variant,
                                      recurrent_mask=recurrent_mask, dtype=self.dtype)
        return rnn_recurrent_step(params, state, xp_t, activation=self.activation,
                                  recurrent_mask=recurrent_mask, dtype=self.dtype)

    def __call__(self, params, state, x_t: jax.Array):
        return self.recurrent_step(params, state, self.input_projection(params, x_t))

    def hidden_size(self, params) -> int:
        return params.w_h.shape[0]

    def input_size(self, params) -> int:
        return params.w_x.shape[0]

    def zero_state(self, params, B: int, dtype=None):
        """The all-zero state for a batch of B, in `dtype`, else the cell's dtype, else the params' dtype."""
        H = self.hidden_size(params)
        dtype = dtype or self.dtype or params.w_h.dtype
        zeros = jnp.zeros((B, H), dtype)
        return LSTMState(zeros, zeros) if self.kind == "lstm" else HiddenState(zeros)

    def state_type(self):
        return LSTMState if self.kind == "lstm" else HiddenState

    def check_inputs(self, params, xs: jax.Array, initial_state=None) -> tuple[int, int]:
        """Validate params, xs [B, T, D] against the cell's input size D and, when given, initial_state
        (each leaf [B, H]); returns (B, H)."""
        self._check_params(params)
        B, _, D = check_sequence(xs)
        if D != self.input_size(params):
            raise ValueError(f"xs: expected feature width D = {self.input_size(params)} (the cell's input "
                             f"size), got xs shape {tuple(np.shape(xs))}")
        if initial_state is not None:
            self.check_state(params, initial_state, B)
        return B, self.hidden_size(params)

    def check_state(self, params, state, B: int, name: str = "initial_state") -> None:
        """Validate a state for a batch of B: this cell's state type, every leaf [B, H]."""
        H = self.hidden_size(params)
        expected = self.state_type()
        if not isinstance(state, expected):
            raise ValueError(f"{name}: Cell({self.kind!r}) expects a {expected.__name__}, "
                             f"got {type(state).__name__}")
        for field, leaf in zip(state._fields, state, strict=True):
            if tuple(np.shape(leaf)) != (B, H):
                raise ValueError(f"{name}.{field}: expected shape (B, H) = ({B}, {H}), "
                                 f"got {tuple(np.shape(leaf))}")

    def _check_params(self, params):
        self.validate()
        expected = _PARAMS[self.kind]
        if not isinstance(params, expected):
            raise ValueError(f"params: Cell({self.kind!r}) expects {expected.__name__}, "
                             f"got {type(params).__name__}")
        D, GH = params.w_x.shape
        H = params.w_h.shape[0]
        if GH != _GATES[self.kind] * H or params.w_h.shape != (H, GH):
            raise ValueError(f"params: inconsistent {self.kind} shapes w_x {params.w_x.shape}, "
                             f"w_h {params.w_h.shape}; expected [D, {_GATES[self.kind]}H] and [H, "
                             f"{_GATES[self.kind]}H]")
