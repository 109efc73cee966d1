"""One step's gate arithmetic through the C++ kernels (`rnn_gates.cc`, loaded by `kernels.native`).

Each function is one `jax.ffi.ffi_call` computing what the pure-JAX step bodies of the fused layers
(`kernels/lstm.py`, `gru.py`, `gru_original.py`) compute between their matmuls; the matmuls stay XLA's.
Conventions (see rnn_gates.cc): `keep` is float32 [B] (1 valid, 0 padding), `rmask` the [B, H] recurrent
dropout mask or None, and the backward functions take the gradient w.r.t. the carried h in two parts,
`dhw` (the recurrent matmul's output, before the dropout mask) and `dh_pass`, whose sum
`dhw * rmask + dh_pass` they form themselves.

Float32 only; the layers call these only after `supported(...)` says yes.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from seqjax.kernels import native


def _call(name, outputs, *args, **attrs):
    shapes = [jax.ShapeDtypeStruct(shape, jnp.float32) for shape in outputs]
    # vmap runs the kernel once per mapped element: its loops index rows of [B, G*H] buffers only.
    return jax.ffi.ffi_call(name, shapes, vmap_method="sequential")(*args, **attrs)


def supported(*arrays) -> bool:
    """The kernels compute in float32: every array (params, inputs, states) must be float32."""
    return all(jnp.result_type(a) == jnp.float32 for a in arrays)


def check(layer: str, *arrays) -> None:
    """Raise, naming the problem, unless `layer` can run with native=True on these arrays."""
    if not supported(*arrays):
        raise ValueError(f"{layer}(native=True): the C++ kernels compute in float32 only; got dtypes "
                         f"{sorted({str(jnp.result_type(a)) for a in arrays})}")
    if native.load() is None:
        raise ValueError(f"{layer}(native=True): the C++ kernels are unavailable ({native.reason()})")


def keep_vector(keep: jax.Array | None, T: int, B: int) -> jax.Array:
    """The layers' mask bool[T, B, 1] (or None = all valid) -> float32 [T, B], the kernels' form."""
    if keep is None:
        return jnp.ones((T, B), jnp.float32)
    return keep[:, :, 0].astype(jnp.float32)


def _dropout_args(rmask):
    """(rmask buffer, dropout attribute): a [1, 1] placeholder the kernel never reads when there is none."""
    if rmask is None:
        return jnp.zeros((1, 1), jnp.float32), 0
    return rmask, 1


def lstm_fwd(xp_t, hw, h, c, keep_t):
    """xp_t, hw [B, 4H] (input projection, recurrent matmul), h, c [B, H], keep_t [B] -> h_new, c_new [B, H],
    acts [B, 4H] = sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)."""
    B, H = h.shape
    return _call("seqjax_lstm_fwd", [(B, H), (B, H), (B, 4 * H)], xp_t, hw, h, c, keep_t)


def lstm_bwd(acts, c_t, c_before, dy_t, dhw, dh_pass, dc, keep_t, rmask):
    """-> d_gates [B, 4H] (pre-activations), dh_pass [B, H] (what passes padded steps), dc_prev [B, H]."""
    B, H = c_t.shape
    rm, dropout = _dropout_args(rmask)
    return _call("seqjax_lstm_bwd", [(B, 4 * H), (B, H), (B, H)], acts, c_t, c_before, dy_t, dhw, dh_pass, dc,
                 keep_t, rm, dropout=dropout)


def gru_fwd(xp_t, hw, b_h, h, keep_t):
    """xp_t, hw [B, 3H], b_h [3H], h [B, H], keep_t [B] -> h_new [B, H], acts [B, 4H] = (r, z, n,
    hw_n + b_hn)."""
    B, H = h.shape
    return _call("seqjax_gru_fwd", [(B, H), (B, 4 * H)], xp_t, hw, b_h, h, keep_t)


def gru_bwd(acts, h_before, dy_t, dhw, dh_pass, keep_t, rmask):
    """-> d_hp [B, 3H] (gradient of hw + b_h), da_n [B, H] (of the candidate's pre-activation), dh_pass."""
    B, H = h_before.shape
    rm, dropout = _dropout_args(rmask)
    return _call("seqjax_gru_bwd", [(B, 3 * H), (B, H), (B, H)], acts, h_before, dy_t, dhw, dh_pass, keep_t,
                 rm, dropout=dropout)


def gru_orig_rz(xp_t, a_rz, b_h, hh):
    """Original GRU, first half: xp_t [B, 3H], a_rz = `hh @ W_h[:, :2H]` [B, 2H], b_h [3H], hh [B, H] (the
    dropped h) -> rz [B, 2H] = sigmoid gates r, z, and rh = r * hh [B, H] for the candidate's matmul."""
    B, H = hh.shape
    return _call("seqjax_gru_orig_rz", [(B, 2 * H), (B, H)], xp_t, a_rz, b_h, hh)


def gru_orig_n(xp_t, a_n, b_h, rz, h, keep_t):
    """Second half: a_n = `rh @ W_h[:, 2H:]` [B, H] -> h_new [B, H], n [B, H] (the candidate)."""
    B, H = h.shape
    return _call("seqjax_gru_orig_n", [(B, H), (B, H)], xp_t, a_n, b_h, rz, h, keep_t)


def gru_orig_bwd_n(rz, n, h_before, dy_t, dhw, dhr, dh_pass, keep_t, rmask):
    """Backward, first half; the carried gradient is (dhw + dhr) * rmask + dh_pass -> da_n, da_z, dh_pass."""
    B, H = h_before.shape
    rm, dropout = _dropout_args(rmask)
    return _call("seqjax_gru_orig_bwd_n", [(B, H), (B, H), (B, H)], rz, n, h_before, dy_t, dhw, dhr, dh_pass,
                 keep_t, rm, dropout=dropout)


def gru_orig_bwd_rz(d_rh, hh, rz, da_z):
    """Backward, second half: d_rh = da_n @ W_hn^T [B, H] -> da_rz [B, 2H], dhr = r * d_rh [B, H]."""
    B, H = hh.shape
    return _call("seqjax_gru_orig_bwd_rz", [(B, 2 * H), (B, H)], d_rh, hh, rz, da_z)
