"""What the fused LSTM and GRU layers (`kernels/lstm.py`, `kernels/gru.py`) share: input preparation, the
chunked backward scan and the weight gradients as one large matmul each. See `kernels/rnn.py` for the method.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from seqjax.dropout import dropout_mask
from seqjax.masks import step_mask

# Default lax.scan unroll factors of the forward and backward scans: on CPU, unroll 2 and 4 were no faster
# (B=32, T=128, H=256), since XLA still runs each step's dot and fusions as separate kernels.
FORWARD_UNROLL = 1
BACKWARD_UNROLL = 1
# Time blocks of the backward scan; each block's weight gradients can then overlap the rest of the scan on
# an idle core. Equal CPU time; a wall-clock gain could not be measured on a loaded 2-core machine.
BACKWARD_CHUNKS = 1


def prepare(xs, lengths, mask, recurrent_dropout, key, B, H, dtype):
    """Time-major mask bool[T, B, 1] (or None) and the variational dropout mask [B, H] (or None)."""
    keep = step_mask(xs, lengths, mask)
    keep = None if keep is None else keep.T[:, :, None]  # [T, B, 1]
    rmask = dropout_mask(key, recurrent_dropout, (B, H), dtype)
    return keep, rmask


def previous(seq: jax.Array, first: jax.Array, reverse: bool) -> jax.Array:
    """seq [T, B, H] of states after each step -> the state before each step (`first` before step one)."""
    if reverse:
        return jnp.concatenate([seq[1:], first[None]], axis=0)
    return jnp.concatenate([first[None], seq[:-1]], axis=0)


def dropped(h: jax.Array, rmask: jax.Array | None) -> jax.Array:
    """h [B, H] or [T, B, H] as it enters the recurrent matmul: times the variational mask [B, H], if any."""
    if rmask is None:
        return h
    return h * (rmask if h.ndim == 2 else rmask[None])


def backward_scan(step, carry, inputs, reverse: bool, unroll: int, chunks: int, gradients):
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


def time_major(xs: jax.Array) -> jax.Array:
    """xs [B, T, D] -> [T*B, D], rows in time-major order (one cheap copy of the narrow input)."""
    B, T, D = xs.shape
    return jnp.swapaxes(xs, 0, 1).reshape(T * B, D)


def input_projection(xs_tm: jax.Array, w_x: jax.Array, b: jax.Array, T: int) -> jax.Array:
    """xs_tm [T*B, D] -> xs @ w_x + b as [T, B, G]: one plain matmul for every step.

    The matmuls here and in `weight_gradients` are written as 2-D products of row-major operands: XLA's CPU
    dot is several times slower when an einsum asks it to produce or consume a transposed layout
    (e.g. "btd,dg->tbg" directly).
    """
    return (xs_tm @ w_x + b[None, :]).reshape(T, -1, w_x.shape[1])


def weight_gradients(xs_tm, w_x, h_prev, d_gates, d_xp=None):
    """Everything that needs no sequential work, from the per-step gradients d_gates [T, B, G]:

        dW_h = H_prev^T @ dGates,  dW_x = X^T @ dXP,  dX = dXP @ W_x^T,  db = sum(dXP),  db_h = sum(dGates)

    with H_prev [T*B, H] the recurrent inputs and X = xs_tm [T*B, D]. dXP (the gradient of the input
    projection) equals d_gates unless given (the GRU's candidate gate differs). Returns (dW_h, db_h, dW_x, db,
    dxs [B, T, D]).
    """
    T, B, G = d_gates.shape
    d_gates = d_gates.reshape(T * B, G)
    dw_h = h_prev.reshape(T * B, -1).T @ d_gates
    return (dw_h, jnp.sum(d_gates, axis=0),
            *input_gradients(xs_tm, w_x, d_gates.reshape(T, B, G) if d_xp is None else d_xp))


def input_gradients(xs_tm, w_x, d_xp):
    """The input projection's gradients from d_xp [T, B, G]: dW_x = X^T dXP, db = sum(dXP), dxs [B, T, D]."""
    T, B, G = d_xp.shape
    d_xp = d_xp.reshape(T * B, G)
    dxs = jnp.swapaxes((d_xp @ w_x.T).reshape(T, B, -1), 0, 1)  # [B, T, D]
    return xs_tm.T @ d_xp, jnp.sum(d_xp, axis=0), dxs
