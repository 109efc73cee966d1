"""Masks as data. A padding mask is bool[B, T] with True at valid (unpadded) steps; sequences are
right-padded. Attention masks (causal, padding, cross, prefix-LM) are bool, rank 4, broadcastable to
[B, N, T, S], True = may attend; `combine_masks` ANDs them.

Also the home of the batch input checks: lengths, padding masks, token ids, and the q/k/v/mask/bias shapes
and dtypes of attention (`check_attention_inputs`, the one check shared by `seqjax.attention` and the
kernels).

Which checks hold where. Shapes and dtypes are static, so their checks raise at trace time, inside `jit` as
outside. Value checks need concrete data: they raise on the host, and inside `jit` (where values are tracers
and nothing can raise) the bad value is made loud instead, by NaNs that reach the loss or the logits:
- token ids outside [0, V): `check_token_ids` raises when concrete; under jit `embedding.lookup` reads a row
  of NaNs.
- positions past a position table (`positional.add_positions` with an offset): raise when the offset is
  concrete; under jit the rows past the table are NaN.
- a KV-cache write past S_max (`decoding.cache_update`, the models' `decode`): raises when the index is
  concrete; under jit the written keys/values are NaN, so the logits are.
- lengths outside [0, T]: `check_lengths` raises when concrete. A bool mask cannot carry a NaN, so under jit
  `lengths_to_mask` acts as if they were clamped to [0, T]; lengths are therefore validated on the host
  before any jitted call: by the model call when outside jit, by `data.iterators` (the arrays it is told are
  lengths, when the iterator is built), and by `generate` (GPT, EncoderDecoder) before its jitted loop.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def lengths_to_mask(lengths: jax.Array, T: int) -> jax.Array:
    """bool[B, T]: mask[b, t] = t < lengths[b].

    Unchecked: a length above T acts as T and a negative one as 0 (a bool mask has no NaN to be loud with),
    so lengths are validated on the host (`check_lengths`, `valid_mask`; see the module docstring).
    """
    if lengths.ndim != 1:
        raise ValueError(f"lengths: expected shape (B,), got {tuple(lengths.shape)}")
    return jnp.arange(T)[None, :] < lengths[:, None]


def check_lengths(lengths, B: int, T: int, name: str = "lengths") -> None:
    """Validate a lengths array against a [B, T] batch: shape at trace time, values when concrete.

    Out-of-range lengths would otherwise be silently clamped by JAX's indexing inside jit.
    """
    shape = tuple(np.shape(lengths))
    if shape != (B,):
        raise ValueError(f"{name}: expected shape (B,) = ({B},) to match inputs [B, T] = [{B}, {T}], "
                         f"got {shape}")
    if not jnp.issubdtype(jnp.asarray(lengths).dtype, jnp.integer):
        raise ValueError(f"{name}: expected an integer array, got dtype {jnp.asarray(lengths).dtype}")
    if not isinstance(lengths, jax.core.Tracer):
        values = np.asarray(lengths)
        if values.size and (values.min() < 0 or values.max() > T):
            raise ValueError(f"{name}: every length must lie in [0, T] = [0, {T}], got min {values.min()}, "
                             f"max {values.max()}")


def check_mask(mask, B: int, T: int, name: str = "mask") -> None:
    """Validate a padding mask bool[B, T] against a [B, T] batch."""
    shape = tuple(np.shape(mask))
    if shape != (B, T):
        raise ValueError(f"{name}: expected shape (B, T) = ({B}, {T}) to match the inputs, got {shape}")


# ----------------------------------------------------------------------------------------------------------
# Attention masks. ONE representation: a bool array of rank 4 that broadcasts to [B, N, T, S] (batch, heads,
# queries, keys), True = the query may attend to the key. Builders return the smallest broadcastable shape
# ([B, 1, T, S], [1, 1, T, S], ...) and `combine_masks` ANDs them. `seqjax.attention` turns False into
# the finite score jnp.finfo(dtype).min and zeroes the weights of masked keys, so a fully masked query
# row outputs zeros.
# ----------------------------------------------------------------------------------------------------------


def causal_mask(T: int, S: int | None = None, offset: int | jax.Array = 0) -> jax.Array:
    """bool[1, 1, T, S]: query t (at absolute position t + offset) may attend key s iff s <= t + offset.

    offset=0, S=T is the usual square lower-triangular mask (top-left aligned, as
    jax.nn.dot_product_attention's `is_causal`). With a KV cache, the T new queries sit at positions
    offset..offset+T-1 of an S-long cache.
    """
    S = T if S is None else S
    q_pos = jnp.arange(T)[:, None] + offset  # [T, 1]
    allowed = jnp.arange(S)[None, :] <= q_pos  # [T, S]
    return allowed[None, None, :, :]


def padding_mask(kv_mask: jax.Array, q_mask: jax.Array | None = None) -> jax.Array:
    """Self-attention padding mask from bool[B, S] key validity (and optionally bool[B, T] query validity).

    Returns bool[B, 1, 1, S] (keys only) or bool[B, 1, T, S] when `q_mask` is given; padded query rows are
    then fully masked and their attention output is zeros.
    """
    if kv_mask.ndim != 2:
        raise ValueError(f"kv_mask: expected shape (B, S), got {tuple(kv_mask.shape)}")
    kv = kv_mask.astype(bool)[:, None, None, :]  # [B, 1, 1, S]
    if q_mask is None:
        return kv
    if q_mask.ndim != 2 or q_mask.shape[0] != kv_mask.shape[0]:
        raise ValueError(f"q_mask: expected shape (B, T) with B = {kv_mask.shape[0]}, "
                         f"got {tuple(q_mask.shape)}")
    return q_mask.astype(bool)[:, None, :, None] & kv  # [B, 1, T, S]


def lengths_to_attention_mask(lengths: jax.Array, T: int, *, mask_queries: bool = False) -> jax.Array:
    """Self-attention padding mask from lengths int[B]: bool[B, 1, 1, T] ([B, 1, T, T] with mask_queries)."""
    valid = lengths_to_mask(lengths, T)
    return padding_mask(valid, valid if mask_queries else None)


def cross_attention_mask(src_mask: jax.Array, q_mask: jax.Array | None = None) -> jax.Array:
    """Decoder queries bool[B, T] (optional) vs encoder source validity bool[B, S] -> bool[B, 1, T|1, S]."""
    if src_mask.ndim != 2:
        raise ValueError(f"src_mask: expected shape (B, S), got {tuple(src_mask.shape)}")
    return padding_mask(src_mask, q_mask)


def prefix_lm_mask(prefix_lengths: jax.Array, T: int) -> jax.Array:
    """bool[B, 1, T, T]: bidirectional over each sequence's prefix, causal after it (prefix-LM, T5/UniLM).

    Query t may attend key s iff s < prefix_lengths[b] or s <= t.
    """
    if prefix_lengths.ndim != 1:
        raise ValueError(f"prefix_lengths: expected shape (B,), got {tuple(prefix_lengths.shape)}")
    s = jnp.arange(T)
    in_prefix = s[None, None, :] < prefix_lengths[:, None, None]  # [B, 1, S]
    causal = s[None, :] <= s[:, None]  # [T, S]
    return (in_prefix | causal[None, :, :])[:, None, :, :]


def combine_masks(*masks: jax.Array | None) -> jax.Array | None:
    """Logical AND of attention masks (None entries are skipped); None when every entry is None.

    Each mask must be rank 4 and the shapes must broadcast together; the result has the broadcast shape.
    """
    present = [m for m in masks if m is not None]
    if not present:
        return None
    for i, m in enumerate(present):
        if m.ndim != 4:
            raise ValueError(f"combine_masks: mask {i} must have rank 4 (broadcastable to [B, N, T, S]), "
                             f"got shape {tuple(m.shape)}")
    shapes = [tuple(m.shape) for m in present]
    try:
        target = np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"combine_masks: mask shapes do not broadcast together: {shapes}") from None
    out = jnp.broadcast_to(present[0].astype(bool), target)
    for m in present[1:]:
        out = out & jnp.broadcast_to(m.astype(bool), target)
    return out


def check_attention_mask(mask, B: int, N: int, T: int, S: int, name: str = "mask") -> None:
    """Validate that `mask` is rank 4 and broadcasts to [B, N, T, S] (each dim equal or 1)."""
    shape = tuple(np.shape(mask))
    full = (B, N, T, S)
    if len(shape) != 4 or any(d not in (1, f) for d, f in zip(shape, full, strict=True)):
        raise ValueError(f"{name}: expected a rank-4 array broadcastable to [B, N, T, S] = {list(full)}, "
                         f"got shape {shape}")


def check_attention_inputs(q, k, v, mask=None, bias=None) -> tuple[int, int, int, int, int, int]:
    """Validate the inputs of an attention call; returns (B, T, N, K, S, M).

    q [B, T, N, K], k [B, S, M, K], v [B, S, M, Kv] floating point with M dividing N (grouped-query); mask
    (bool) and bias (floating point), if given, rank 4 and broadcastable to [B, N, T, S]. The one check of
    these shapes and dtypes for every attention path (`attention.dot_product_attention`,
    `kernels.blockwise.blockwise_attention`).
    """
    if np.ndim(q) != 4 or np.ndim(k) != 4 or np.ndim(v) != 4:
        raise ValueError(f"q, k, v: expected rank-4 [B, T, N, K], [B, S, M, K], [B, S, M, Kv], got "
                         f"{tuple(np.shape(q))}, {tuple(np.shape(k))}, {tuple(np.shape(v))}")
    B, T, N, K = np.shape(q)
    _, S, M, _ = np.shape(k)
    if np.shape(k)[0] != B or np.shape(k)[3] != K:
        raise ValueError(f"k: expected [B, S, M, K] with batch B = {B} and head width K = {K} from q "
                         f"{tuple(np.shape(q))}, got {tuple(np.shape(k))}")
    if np.shape(v)[:3] != np.shape(k)[:3]:
        raise ValueError(f"v: expected [B, S, M, Kv] = [{B}, {S}, {M}, Kv] like k, got {tuple(np.shape(v))}")
    if N % M != 0:
        raise ValueError(f"k: number of K/V heads M = {M} must divide the query heads N = {N}")
    dtypes = [_dtype(x) for x in (q, k, v)]
    if not all(jnp.issubdtype(d, jnp.floating) for d in dtypes):
        # Integer scores would truncate (and the blockwise path's 1/sqrt(K) scale would cast to 0).
        raise ValueError(f"q, k, v: expected floating-point arrays, got dtypes {', '.join(map(str, dtypes))}")
    if mask is not None:
        check_attention_mask(mask, B, N, T, S, "mask")
        if _dtype(mask) != jnp.bool_:
            # A float mask is ambiguous: PyTorch's additive 0 / -inf masks would read as True = 0 = masked.
            raise ValueError(f"mask: expected a bool array (True = may attend), got dtype {_dtype(mask)}; "
                             f"pass an additive float mask (0 / -inf) as bias= instead")
    if bias is not None:
        check_attention_mask(bias, B, N, T, S, "bias")
        if not jnp.issubdtype(_dtype(bias), jnp.floating):
            raise ValueError(f"bias: expected a floating-point array (added to the scores), got dtype "
                             f"{_dtype(bias)}; pass a boolean mask as mask=")
    return B, T, N, K, S, M


def _dtype(x) -> np.dtype:
    """The dtype of an array, tracer or array-like, without copying a concrete array to the device."""
    return x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype


def valid_mask(lengths, mask, B: int, T: int, name: str = "lengths"):
    """The padding description of a [B, T, ...] batch, validated: bool[B, T] (True = valid), or None.

    Sequences are described by per-sequence `lengths` int[B] or a `mask` bool[B, T], never both. The one
    validator of "lengths or mask" (recurrent layers via `step_mask`, transformers directly).
    """
    if lengths is not None and mask is not None:
        raise ValueError(f"{name}, mask: give either lengths or mask, not both")
    if lengths is not None:
        check_lengths(lengths, B, T, name)
        return lengths_to_mask(jnp.asarray(lengths), T)
    if mask is not None:
        check_mask(mask, B, T)
        return jnp.asarray(mask, bool)
    return None


def step_mask(xs, lengths=None, mask=None):
    """`valid_mask` for the batch xs [B, T, ...] of a recurrent layer."""
    B, T = np.shape(xs)[:2]
    return valid_mask(lengths, mask, B, T)


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Softmax over the last axis of scores [..., S] restricted to mask (bool, broadcastable): exactly 0 where
    masked, and a row with no valid position gets all zeros instead of NaN or a uniform row. Masked scores are
    set to the finite finfo.min (never -inf). The one masked softmax: attention's and the RNN decoder's."""
    scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    weights = jax.nn.softmax(scores, axis=-1)
    return jnp.where(mask, weights, jnp.zeros_like(weights))


def check_token_ids(ids, V: int, name: str = "tokens") -> None:
    """Token ids must be integers in [0, V): the dtype at trace time, the values when the array is concrete,
    since `jnp.take` clamps out-of-range ids silently inside jit."""
    dtype = ids.dtype if isinstance(ids, jax.core.Tracer) else jnp.asarray(ids).dtype
    if not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"{name}: expected integer token ids, got dtype {dtype}")
    if not isinstance(ids, jax.core.Tracer):
        values = np.asarray(ids)
        if values.size and (values.min() < 0 or values.max() >= V):
            raise ValueError(f"{name}: token ids must lie in [0, V) = [0, {V}), got min {values.min()}, "
                             f"max {values.max()}")
