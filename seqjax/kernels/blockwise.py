"""Blockwise (flash-style) attention: memory linear in the sequence length, causal blocks skipped.

The plain einsum path materialises the [B, N, T, S] scores (and keeps the weights for the backward pass). Here
queries and keys are cut into blocks of `q_block` x `kv_block`, each block's scores are formed, used and
dropped, and a running (max, sum) per query row -- the online softmax of Milakov & Gimelshein (2018), as in
FlashAttention (Dao et al., 2022) -- rescales the partial outputs, so only O(T) state is kept.

The backward pass is blockwise too (a `jax.custom_vjp`): it saves the output and the per-row logsumexp, and
recomputes each block's weights from them, following FlashAttention-2's backward.

Which blocks run is a static schedule: a list of (query block, key block) pairs. With `causal=True` only the
pairs on or below the diagonal are listed, so the future is never computed and causal attention costs about
half of full attention. Pairs wholly inside the visible region skip the masking work; pairs crossing the
diagonal (or touching padding, or under a user mask) are masked.

Conventions are those of seqjax.attention.dot_product_attention, whose einsum path (differentiated by JAX)
is the reference this kernel is tested against: q [B, T, N, K], k/v [B, S, M, K] with M dividing N (query
head n uses K/V head n // (N // M)); `mask` and `bias` rank 4, broadcastable to [B, N, T, S]; a query whose
keys are all masked outputs zeros; dropout on the attention weights is active iff `key` is given. The shapes
are validated by `masks.check_attention_inputs`, the same check as the core's.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import dropout as dropout_lib
from seqjax import masks as masks_lib

DEFAULT_Q_BLOCK = 256  # measured best on a 2-core AVX-512 CPU at T=512 (see benchmarks/bench_attention.py)
DEFAULT_KV_BLOCK = 128
BLOCK_BYTES = 1 << 20  # target size of one chunk's [c, N, q_block, kv_block] f32 scores (L2-cache sized)


class _Config(NamedTuple):
    """Static (hashable) settings of one blockwise attention call."""
    T: int  # true query length (before padding to a multiple of bq)
    S: int  # true key length
    bq: int
    bk: int
    causal: bool
    scale: float
    dropout_rate: float
    unroll: int | bool
    batch_chunk: int  # batch elements per lax.map step (B: no map)
    free_pairs: tuple[tuple[int, int], ...]  # block pairs needing no mask at all
    masked_pairs: tuple[tuple[int, int], ...]  # block pairs crossing the diagonal or the key padding


def block_schedule(T: int, S: int, bq: int, bk: int, causal: bool, masked: bool):
    """The (query block i, key block j) pairs to compute, split into (free, masked) lists.

    Blocks cover ceil(T / bq) x ceil(S / bk). With `causal`, a pair whose first key comes after its last query
    is left out. A pair is "masked" when some of its (query, key) entries are invisible: it crosses the causal
    diagonal, contains padded keys beyond S, or `masked` says a user mask/bias applies everywhere.
    """
    nq, nk = -(-T // bq), -(-S // bk)
    free, masked_pairs = [], []
    for i in range(nq):
        first_q, last_q = i * bq, min((i + 1) * bq, T) - 1
        for j in range(nk):
            first_k, last_k = j * bk, (j + 1) * bk - 1
            if causal and first_k > last_q:
                continue
            needs_mask = masked or last_k >= S or (causal and last_k > first_q)
            (masked_pairs if needs_mask else free).append((i, j))
    return tuple(free), tuple(masked_pairs)


def _pick_block(length: int, block: int, name: str) -> int:
    if not isinstance(block, int | np.integer) or block <= 0:
        raise ValueError(f"{name}: expected a positive int, got {block!r}")
    return min(int(block), length)


def _pad_axis(x: jax.Array, axis: int, to: int, value) -> jax.Array:
    if x.shape[axis] in (1, to):
        return x
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, to - x.shape[axis])
    return jnp.pad(x, pad, constant_values=value)


def _group_heads(x: jax.Array, M: int) -> jax.Array:
    """A mask/bias [Bx, Nx, Tx, Sx] (Nx in {1, N}) -> [Bx, Mx, Gx, Tx, Sx] in the grouped-head layout."""
    Bx, Nx, Tx, Sx = x.shape
    if Nx == 1:
        return x.reshape(Bx, 1, 1, Tx, Sx)
    return x.reshape(Bx, M, Nx // M, Tx, Sx)  # [Bx, M, G, Tx, Sx]


def _slice_block(x: jax.Array, i, j, bq: int, bk: int) -> jax.Array:
    """The (i, j) block [.., bq, bk] of a [.., Tp, Sp] mask/bias; broadcast (size-1) axes are kept whole."""
    if x.shape[-2] != 1:
        x = jax.lax.dynamic_slice_in_dim(x, i * bq, bq, axis=x.ndim - 2)
    if x.shape[-1] != 1:
        x = jax.lax.dynamic_slice_in_dim(x, j * bk, bk, axis=x.ndim - 1)
    return x


def _block_scores(cfg: _Config, qi, kj, i, j, mask, bias, masked: bool):
    """Scores [B, M, G, bq, bk] of block (i, j), -inf where invisible, and the visibility (None if all)."""
    s = jnp.einsum("bmgqk,bmsk->bmgqs", qi, kj, preferred_element_type=jnp.float32)
    if bias is not None:
        s = s + _slice_block(bias, i, j, cfg.bq, cfg.bk).astype(jnp.float32)
    if not masked:
        return s, None
    q_pos = i * cfg.bq + jnp.arange(cfg.bq)
    k_pos = j * cfg.bk + jnp.arange(cfg.bk)
    visible = k_pos[None, :] < cfg.S  # [1, bk]: keys padded up to a multiple of bk are invisible
    if cfg.causal:
        visible = visible & (k_pos[None, :] <= q_pos[:, None])  # [bq, bk]
    visible = visible[None, None, None]  # [1, 1, 1, bq|1, bk]
    if mask is not None:
        visible = visible & _slice_block(mask, i, j, cfg.bq, cfg.bk)
    return jnp.where(visible, s, -jnp.inf), visible


def _keep_scale(cfg: _Config, key, i, j, shape):
    """Dropout's scaled keep-mask for block (i, j): a pure function of (key, i, j), so the backward pass
    redraws exactly the mask the forward pass used."""
    nk = -(-cfg.S // cfg.bk)
    keep = dropout_lib.keep_mask(jax.random.fold_in(key, i * nk + j), cfg.dropout_rate, shape)
    return keep.astype(jnp.float32) * (1.0 / dropout_lib.keep_probability(cfg.dropout_rate))


def _pair_arrays(pairs):
    arr = np.asarray(pairs, np.int32).reshape(-1, 2)
    return jnp.asarray(arr[:, 0]), jnp.asarray(arr[:, 1])


def _forward(cfg: _Config, q, k, v, mask, bias, key):
    """Online-softmax forward over the scheduled block pairs.

    q [B, M, G, Tp, K] (already scaled), k [B, M, Sp, K], v [B, M, Sp, Kv].
    Returns out [B, M, G, Tp, Kv] (f32) and the row logsumexp lse [B, M, G, Tp] (0 for rows that see no key).
    """
    B, M, G, Tp, _ = q.shape
    Kv = v.shape[-1]
    bq, bk = cfg.bq, cfg.bk
    m0 = jnp.full((B, M, G, Tp), -jnp.inf, jnp.float32)  # running row max
    l0 = jnp.zeros((B, M, G, Tp), jnp.float32)  # running sum of exp(s - max)
    acc0 = jnp.zeros((B, M, G, Tp, Kv), jnp.float32)  # running sum of exp(s - max) v

    def step(carry, ij, masked):
        """One block pair; the scan over pairs replaces
            for i, j in pairs:
                s = q[i] @ k[j].T;  m_new = max(m[i], rowmax(s));  p = exp(s - m_new)
                l[i] = l[i] * exp(m[i] - m_new) + rowsum(p);  acc[i] = acc[i] * exp(m[i] - m_new) + p @ v[j]
                m[i] = m_new
        """
        m, l, acc = carry
        i, j = ij
        qi = jax.lax.dynamic_slice_in_dim(q, i * bq, bq, axis=3)  # [B, M, G, bq, K]
        kj = jax.lax.dynamic_slice_in_dim(k, j * bk, bk, axis=2)  # [B, M, bk, K]
        vj = jax.lax.dynamic_slice_in_dim(v, j * bk, bk, axis=2)  # [B, M, bk, Kv]
        s, _ = _block_scores(cfg, qi, kj, i, j, mask, bias, masked)
        m_i = jax.lax.dynamic_slice_in_dim(m, i * bq, bq, axis=3)
        l_i = jax.lax.dynamic_slice_in_dim(l, i * bq, bq, axis=3)
        acc_i = jax.lax.dynamic_slice_in_dim(acc, i * bq, bq, axis=3)
        m_new = jnp.maximum(m_i, jnp.max(s, axis=-1))
        # A row with no visible key so far has max -inf; shifting by 0 keeps exp(-inf - 0) = 0 (no inf - inf).
        m_safe = jnp.where(m_new == -jnp.inf, 0.0, m_new)
        p = jnp.exp(s - m_safe[..., None])  # [B, M, G, bq, bk]
        alpha = jnp.exp(m_i - m_safe)
        l_i = alpha * l_i + jnp.sum(p, axis=-1)
        if key is not None:
            p = p * _keep_scale(cfg, key, i, j, p.shape)
        pv = jnp.einsum("bmgqs,bmsk->bmgqk", p.astype(v.dtype), vj, preferred_element_type=jnp.float32)
        acc_i = alpha[..., None] * acc_i + pv
        m = jax.lax.dynamic_update_slice_in_dim(m, m_new, i * bq, axis=3)
        l = jax.lax.dynamic_update_slice_in_dim(l, l_i, i * bq, axis=3)
        acc = jax.lax.dynamic_update_slice_in_dim(acc, acc_i, i * bq, axis=3)
        return (m, l, acc), None

    carry = (m0, l0, acc0)
    for pairs, masked in ((cfg.free_pairs, False), (cfg.masked_pairs, True)):
        if pairs:
            carry, _ = jax.lax.scan(lambda c, ij, masked=masked: step(c, ij, masked), carry,
                                    _pair_arrays(pairs), unroll=cfg.unroll)
    m, l, acc = carry
    empty = l == 0.0  # rows that saw no visible key: output zeros, like the einsum path
    out = acc / jnp.where(empty, 1.0, l)[..., None]
    lse = jnp.where(empty, 0.0, m + jnp.log(jnp.where(empty, 1.0, l)))
    return out, lse


def _backward(cfg: _Config, q, k, v, mask, bias, key, out, lse, dout):
    """Blockwise gradients from the saved output and logsumexp (FlashAttention-2's backward).

    Per block pair, with p = exp(s - lse) recomputed and D = rowsum(dout * out):
        dv[j] += p^T dout[i];  dp = dout[i] v[j]^T;  ds = p * (dp - D[i])
        dq[i] += ds k[j];  dk[j] += ds^T q[i];  dbias[i, j] += ds
    Returns dq (w.r.t. the scaled q), dk, dv and dbias (None without a bias), all f32.
    """
    bq, bk = cfg.bq, cfg.bk
    B, M, G, Tp, K = q.shape
    Kv = v.shape[-1]
    delta = jnp.sum(dout * out, axis=-1)  # [B, M, G, Tp]
    dout = dout.astype(v.dtype)
    # dk and dv contract over the query rows. Keeping q and dout transposed, with the (G, T) rows last, makes
    # those products plain [K, rows] @ [rows, bk] matmuls and spares a transpose of every [rows, bk] block.
    qt = q.transpose(0, 1, 4, 2, 3)  # [B, M, K, G, Tp]
    dout_t = dout.transpose(0, 1, 4, 2, 3)  # [B, M, Kv, G, Tp]
    dq0 = jnp.zeros(q.shape, jnp.float32)
    dkt0 = jnp.zeros((B, M, K, k.shape[2]), jnp.float32)  # dk^T [B, M, K, Sp]
    dvt0 = jnp.zeros((B, M, Kv, v.shape[2]), jnp.float32)  # dv^T [B, M, Kv, Sp]
    db0 = None if bias is None else jnp.zeros(bias.shape, jnp.float32)

    def step(carry, ij, masked):
        """One block pair; the scan over pairs replaces the loop in the docstring of `_backward`."""
        dq, dkt, dvt, db = carry
        i, j = ij
        qi = jax.lax.dynamic_slice_in_dim(q, i * bq, bq, axis=3)  # [B, M, G, bq, K]
        qti = jax.lax.dynamic_slice_in_dim(qt, i * bq, bq, axis=4)  # [B, M, K, G, bq]
        doi = jax.lax.dynamic_slice_in_dim(dout, i * bq, bq, axis=3)  # [B, M, G, bq, Kv]
        doti = jax.lax.dynamic_slice_in_dim(dout_t, i * bq, bq, axis=4)  # [B, M, Kv, G, bq]
        lse_i = jax.lax.dynamic_slice_in_dim(lse, i * bq, bq, axis=3)  # [B, M, G, bq]
        delta_i = jax.lax.dynamic_slice_in_dim(delta, i * bq, bq, axis=3)
        kj = jax.lax.dynamic_slice_in_dim(k, j * bk, bk, axis=2)  # [B, M, bk, K]
        vj = jax.lax.dynamic_slice_in_dim(v, j * bk, bk, axis=2)  # [B, M, bk, Kv]
        s, _ = _block_scores(cfg, qi, kj, i, j, mask, bias, masked)
        p = jnp.exp(s - lse_i[..., None])  # [B, M, G, bq, bk]; 0 where invisible (s = -inf)
        dp = jnp.einsum("bmgqk,bmsk->bmgqs", doi, vj, preferred_element_type=jnp.float32)
        if key is not None:
            z = _keep_scale(cfg, key, i, j, p.shape)
            pz, dp = p * z, dp * z
        else:
            pz = p
        ds = p * (dp - delta_i[..., None])
        dvt_j = jnp.einsum("bmkgq,bmgqs->bmks", doti, pz.astype(v.dtype), preferred_element_type=jnp.float32)
        dkt_j = jnp.einsum("bmkgq,bmgqs->bmks", qti, ds.astype(q.dtype), preferred_element_type=jnp.float32)
        dq_i = jnp.einsum("bmgqs,bmsk->bmgqk", ds.astype(k.dtype), kj, preferred_element_type=jnp.float32)
        dq = jax.lax.dynamic_update_slice_in_dim(
            dq, jax.lax.dynamic_slice_in_dim(dq, i * bq, bq, axis=3) + dq_i, i * bq, axis=3)
        dkt = jax.lax.dynamic_update_slice_in_dim(
            dkt, jax.lax.dynamic_slice_in_dim(dkt, j * bk, bk, axis=3) + dkt_j, j * bk, axis=3)
        dvt = jax.lax.dynamic_update_slice_in_dim(
            dvt, jax.lax.dynamic_slice_in_dim(dvt, j * bk, bk, axis=3) + dvt_j, j * bk, axis=3)
        if db is not None:
            db_ij = _slice_block(db, i, j, bq, bk)
            # Sum ds over every axis the bias broadcasts along: [B, M, G, bq, bk] -> db_ij's shape.
            axes = tuple(a for a in range(5) if db_ij.shape[a] == 1 and ds.shape[a] != 1)
            db_ij = db_ij + jnp.sum(ds, axis=axes, keepdims=True)
            db = jax.lax.dynamic_update_slice(db, db_ij, (0, 0, 0, i * bq * (db.shape[3] != 1),
                                                          j * bk * (db.shape[4] != 1)))
        return (dq, dkt, dvt, db), None

    carry = (dq0, dkt0, dvt0, db0)
    for pairs, masked in ((cfg.free_pairs, False), (cfg.masked_pairs, True)):
        if pairs:
            carry, _ = jax.lax.scan(lambda c, ij, masked=masked: step(c, ij, masked), carry,
                                    _pair_arrays(pairs), unroll=cfg.unroll)
    dq, dkt, dvt, db = carry
    return dq, dkt.transpose(0, 1, 3, 2), dvt.transpose(0, 1, 3, 2), db


def _over_batch_chunks(cfg: _Config, fn, *args):
    """fn(*args) computed chunk by chunk along the batch axis, `cfg.batch_chunk` sequences at a time.

    Replaces `concatenate([fn(*(a[i:i + c] for a in args)) for i in range(0, B, c)])`: with fewer heads per
    step a block's scores stay in cache. Arguments without a batch axis of size B (a broadcast mask or bias,
    None) are passed whole; fn must return arrays with a leading batch axis of size c.
    """
    B, c = args[0].shape[0], cfg.batch_chunk
    if c >= B:
        return fn(*args)
    chunked = [a is not None and a.ndim > 0 and a.shape[0] == B for a in args]
    xs = [a.reshape(B // c, c, *a.shape[1:]) if split else None
          for a, split in zip(args, chunked, strict=True)]

    def one_chunk(xs_i):
        return fn(*(x if split else a for x, a, split in zip(xs_i, args, chunked, strict=True)))

    outs = jax.lax.map(one_chunk, xs)
    return jax.tree.map(lambda o: o.reshape(B, *o.shape[2:]), outs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _core(cfg, q, k, v, mask, bias, key):
    out, _ = _over_batch_chunks(cfg, functools.partial(_forward, cfg), q, k, v, mask, bias, key)
    return out


def _core_fwd(cfg, q, k, v, mask, bias, key):
    out, lse = _over_batch_chunks(cfg, functools.partial(_forward, cfg), q, k, v, mask, bias, key)
    return out, (q, k, v, mask, bias, key, out, lse)


def _core_bwd(cfg, res, dout):
    q, k, v, mask, bias, key, out, lse = res
    bias_batched = bias is not None and bias.shape[0] == q.shape[0]

    def grads(q, k, v, mask, bias, key, out, lse, dout):
        dq, dk, dv, db = _backward(cfg, q, k, v, mask, bias, key, out, lse, dout)
        if db is not None and not bias_batched:
            db = db[None]  # [1, ...]: summed over the chunks below
        return dq, dk, dv, db

    dq, dk, dv, db = _over_batch_chunks(cfg, grads, q, k, v, mask, bias, key, out, lse,
                                        dout.astype(jnp.float32))
    if db is not None:
        if not bias_batched:
            db = jnp.sum(db, axis=0) if cfg.batch_chunk < q.shape[0] else db[0]
        db = db.astype(bias.dtype)
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None, db, None


_core.defvjp(_core_fwd, _core_bwd)


def blockwise_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                        bias: jax.Array | None = None, *, causal: bool = False, scale: float | None = None,
                        dropout_rate: float = 0.0, key: jax.Array | None = None,
                        q_block: int = DEFAULT_Q_BLOCK, kv_block: int = DEFAULT_KV_BLOCK,
                        batch_chunk: int | None = None, unroll: int | bool = 1) -> jax.Array:
    """softmax(q k^T * scale + bias, masked) v, computed block by block in O(T) memory.

    Args:
      q: [B, T, N, K] queries. k: [B, S, M, K] keys. v: [B, S, M, Kv] values; M divides N (grouped-query).
      mask: bool broadcastable to [B, N, T, S] (rank 4), True = may attend (other dtypes are an error: an
        additive float mask goes in `bias`). A query with no visible key outputs zeros. A full [B, N, T, S]
        mask is itself quadratic: prefer `causal` and [B, 1, 1, S] masks.
      bias: float broadcastable to [B, N, T, S] (rank 4), added to the scaled scores; differentiable.
      causal: query t sees key s only when s <= t (top-left aligned); blocks above the diagonal are skipped.
      scale: score scale, default 1 / sqrt(K).
      dropout_rate: dropout on the attention weights, active iff `key` is given (the mask is drawn per
        block from `key`, so it differs from the einsum path's draw but has the same distribution).
      key: the dropout PRNG key; None = no dropout.
      q_block: query block size (clipped to T); T need not be a multiple (it is padded).
      kv_block: key/value block size (clipped to S); S need not be a multiple (it is padded).
      batch_chunk: sequences processed together (a lax.map over batch chunks); None picks the largest divisor
        of B whose [chunk, N, q_block, kv_block] scores fit in about 1 MiB (whole batch with dropout).
      unroll: passed to the lax.scan over block pairs.
    Returns:
      [B, T, N, Kv] in q's dtype.
    """
    B, T, N, K, S, M = masks_lib.check_attention_inputs(q, k, v, mask, bias)
    if T == 0 or S == 0:  # the block schedule would be empty and the padded shapes zero-sized
        raise ValueError(f"q, k: need T > 0 and S > 0, got q {tuple(q.shape)}, k {tuple(k.shape)}")
    dropout_lib.check_rate(dropout_rate, "dropout_rate")
    bq = _pick_block(T, q_block, "q_block")
    bk = _pick_block(S, kv_block, "kv_block")
    Tp, Sp = -(-T // bq) * bq, -(-S // bk) * bk
    G = N // M
    scale = 1.0 / math.sqrt(K) if scale is None else float(scale)
    if key is None or dropout_rate == 0.0:
        key, dropout_rate = None, 0.0
    if batch_chunk is None:
        fits = [c for c in range(1, B + 1) if B % c == 0 and c * N * bq * bk * 4 <= BLOCK_BYTES]
        batch_chunk = B if key is not None else max(fits, default=1)
    elif not isinstance(batch_chunk, int | np.integer) or batch_chunk <= 0 or B % batch_chunk:
        raise ValueError(f"batch_chunk: expected a positive divisor of B = {B}, got {batch_chunk!r}")
    elif key is not None and batch_chunk != B:
        raise ValueError(f"batch_chunk: dropout draws one mask per block for the whole batch; use "
                         f"batch_chunk=None or B = {B}, got {batch_chunk}")
    free, masked = block_schedule(T, S, bq, bk, causal, masked=mask is not None)
    cfg = _Config(T=T, S=S, bq=bq, bk=bk, causal=bool(causal), scale=scale, dropout_rate=float(dropout_rate),
                  unroll=unroll, batch_chunk=int(batch_chunk), free_pairs=free, masked_pairs=masked)

    # Grouped-head layout: query heads sharing a K/V head sit together, time is the second-to-last axis.
    qg = (q * jnp.asarray(scale, q.dtype)).reshape(B, T, M, G, K).transpose(0, 2, 3, 1, 4)  # [B, M, G, T, K]
    qg = _pad_axis(qg, 3, Tp, 0)
    kg = _pad_axis(k.transpose(0, 2, 1, 3), 2, Sp, 0)  # [B, M, Sp, K]
    vg = _pad_axis(v.transpose(0, 2, 1, 3), 2, Sp, 0)  # [B, M, Sp, Kv]
    if mask is not None:
        mask = _group_heads(_pad_axis(_pad_axis(mask, 2, Tp, False), 3, Sp, False), M)  # [B|1, M|1, G|1, .]
    if bias is not None:
        bias = _group_heads(_pad_axis(_pad_axis(bias, 2, Tp, 0), 3, Sp, 0), M)
    out = _core(cfg, qg, kg, vg, mask, bias, key)  # [B, M, G, Tp, Kv]
    out = out[:, :, :, :T].transpose(0, 3, 1, 2, 4).reshape(B, T, N, v.shape[3])  # [B, T, N, Kv]
    return out.astype(q.dtype)
