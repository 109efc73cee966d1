"""Autoregressive decoding shared by decoder-only and encoder-decoder models: KV cache, sampling, beam search.

Decoding functions are model-agnostic. They drive a `step_fn(tokens, cache) -> (logits, cache)` where
tokens is int[B, t] (t > 1 for the prompt prefill, t = 1 afterwards), logits [B, V] are the next-token logits
after the last of those tokens, and cache is any pytree the model threads through (e.g. stacked `KVCache`s).
Everything runs under jit with static shapes: outputs are [B, T0 + max_new_tokens], sequences that emit
`eos_id` keep emitting `pad_id`, and the loop stops early once every sequence has finished.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

StepFn = Callable[[jax.Array, Any], tuple[jax.Array, Any]]
_NEG = -1e9  # finite "impossible" log-probability: keeps sums free of inf - inf


class KVCache(NamedTuple):
    """Keys/values of the first `index` positions of each sequence; the rest of the buffer is unused.

    k, v: [B, S_max, M, K]; index: int32[] (stacked over L layers: [L, B, S_max, M, K] and [L]).
    """
    k: jax.Array
    v: jax.Array
    index: jax.Array


class CrossKV(NamedTuple):
    """An encoder output's cross-attention keys/values, projected once per source for all decode steps.

    k, v: [B, S, M, K] (stacked over L decoder layers: [L, B, S, M, K]). Recomputing them at every step
    would redo L * 2 [B * S, D] x [D, M * K] products per generated token.
    """
    k: jax.Array
    v: jax.Array


def init_cache(B: int, S_max: int, M: int, K: int, dtype=jnp.float32) -> KVCache:
    """An empty cache for B sequences of up to S_max positions, M K/V heads of width K."""
    zeros = jnp.zeros((B, S_max, M, K), dtype)
    return KVCache(k=zeros, v=zeros, index=jnp.zeros((), jnp.int32))


def cache_update(cache: KVCache, k_new: jax.Array, v_new: jax.Array) -> KVCache:
    """Write t new positions k_new, v_new [B, t, M, K] at cache.index and advance the index by t.

    A step that would run past S_max raises when the index is concrete. Under jit the index is a tracer and
    cannot raise (a model's `generate` checks the total length up front); there the t positions are written
    as NaNs (at the clamped start S_max - t), so the queries that attend to them, and every later step, get
    NaN logits instead of silently overwriting the end of the cache.
    """
    B, S_max, M, K = cache.k.shape
    if k_new.shape[0] != B or k_new.shape[2:] != (M, K) or v_new.shape != k_new.shape:
        raise ValueError(f"k_new, v_new: expected [B, t, M, K] = [{B}, t, {M}, {K}], "
                         f"got {tuple(k_new.shape)}, {tuple(v_new.shape)}")
    t = k_new.shape[1]
    if t > S_max:
        raise ValueError(f"k_new: t = {t} new positions exceed the cache length S_max = {S_max}")
    if not isinstance(cache.index, jax.core.Tracer) and int(cache.index) + t > S_max:
        raise ValueError(f"cache: writing {t} positions at index {int(cache.index)} exceeds the cache length "
                         f"S_max = {S_max}")
    k_new, v_new = k_new.astype(cache.k.dtype), v_new.astype(cache.v.dtype)
    if isinstance(cache.index, jax.core.Tracer):
        overflow = cache.index + t > S_max  # a select: in-range writes keep their values bit for bit
        k_new = jnp.where(overflow, jnp.asarray(jnp.nan, k_new.dtype), k_new)
        v_new = jnp.where(overflow, jnp.asarray(jnp.nan, v_new.dtype), v_new)
    start = (0, cache.index, 0, 0)
    k = jax.lax.dynamic_update_slice(cache.k, k_new, start)
    v = jax.lax.dynamic_update_slice(cache.v, v_new, start)
    return KVCache(k=k, v=v, index=cache.index + t)


def cache_attention_mask(index: jax.Array, t: int, S_max: int) -> jax.Array:
    """bool[1, 1, t, S_max] for t new queries written at `index`: query i sees cache positions s <= index + i.

    This is both causal among the new tokens and blind to the unused tail of the buffer.
    """
    q_pos = index + jnp.arange(t)[:, None]  # [t, 1]
    return (jnp.arange(S_max)[None, :] <= q_pos)[None, None]


# ---------------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------------


def greedy(logits: jax.Array) -> jax.Array:
    """int32[B]: argmax of logits [B, V] (lowest index on ties)."""
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def filter_logits(logits: jax.Array, *, top_k: int | None = None, top_p: float | None = None) -> jax.Array:
    """Set logits [B, V] outside the top-k and/or the nucleus (top-p) to a finite minimum.

    The nucleus is the smallest set of most-likely tokens whose probability reaches top_p (Holtzman et al.,
    2020); it always keeps the most likely token. A top_k above the vocabulary size V keeps all V tokens
    (clamped, as Hugging Face and PyTorch samplers do), so one setting such as top_k=40 serves any vocabulary.
    """
    logits = logits.astype(jnp.float32)
    low = jnp.finfo(jnp.float32).min
    V = logits.shape[-1]
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k: must be >= 1 (values above V = {V} keep every token), got {top_k}")
        kth = jax.lax.top_k(logits, min(top_k, V))[0][:, -1:]  # [B, 1]
        logits = jnp.where(logits < kth, low, logits)
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p: must lie in (0, 1], got {top_p}")
        sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]  # [B, V] descending
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        kept = mass_before < top_p  # prefix of the sorted order; the first entry is always kept
        threshold = jnp.min(jnp.where(kept, sorted_logits, jnp.inf), axis=-1, keepdims=True)  # [B, 1]
        logits = jnp.where(logits < threshold, low, logits)
    return logits


def sample_logits(key: jax.Array | None, logits: jax.Array, *, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None) -> jax.Array:
    """int32[B] sampled from softmax(filtered logits / temperature); greedy if key is None or temp. 0."""
    if temperature < 0:
        raise ValueError(f"temperature: must be >= 0, got {temperature}")
    if key is None or temperature == 0.0:
        return greedy(logits)
    logits = filter_logits(logits, top_k=top_k, top_p=top_p)
    return jax.random.categorical(key, logits / temperature, axis=-1).astype(jnp.int32)


def _check_prompt(prompt: jax.Array, max_new_tokens: int):
    if prompt.ndim != 2 or prompt.shape[1] < 1:
        raise ValueError(f"prompt: expected int[B, T0] with T0 >= 1, got shape {tuple(prompt.shape)}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens: must be >= 1, got {max_new_tokens}")


def generate(step_fn: StepFn, prompt: jax.Array, cache: Any, max_new_tokens: int, *,
             key: jax.Array | None = None, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, eos_id: int | None = None, pad_id: int = 0) -> jax.Array:
    """Greedy (key=None) or sampled continuation of prompt int[B, T0] -> int[B, T0 + max_new_tokens].

    The cache must hold T0 + max_new_tokens - 1 positions (the last token is never fed back). Equivalent to:

        logits, cache = step_fn(prompt, cache)
        for i in range(max_new_tokens):
            if i > 0: logits, cache = step_fn(out[:, i - 1 : i], cache)
            out[:, i] = pad_id if finished else sample(logits)
            finished |= out[:, i] == eos_id
            if all(finished): break  # the rest of out stays pad_id
    """
    _check_prompt(prompt, max_new_tokens)
    B = prompt.shape[0]

    def pick(i, logits, finished):
        step_key = None if key is None else jax.random.fold_in(key, i)
        tok = sample_logits(step_key, logits, temperature=temperature, top_k=top_k, top_p=top_p)
        tok = jnp.where(finished, pad_id, tok)
        if eos_id is not None:
            finished = finished | (tok == eos_id)
        return tok, finished

    logits, cache = step_fn(prompt, cache)
    out = jnp.full((B, max_new_tokens), pad_id, jnp.int32)
    tok, finished = pick(0, logits, jnp.zeros((B,), bool))
    out = out.at[:, 0].set(tok)

    def cond(state):
        i, _, finished, _, _ = state
        return (i < max_new_tokens) & ~jnp.all(finished)

    def body(state):
        i, out, finished, tok, cache = state
        logits, cache = step_fn(tok[:, None], cache)
        tok, finished = pick(i, logits, finished)
        return i + 1, out.at[:, i].set(tok), finished, tok, cache

    state = (jnp.int32(1), out, finished, tok, cache)
    _, out, _, _, _ = jax.lax.while_loop(cond, body, state)
    return jnp.concatenate([prompt.astype(jnp.int32), out], axis=1)


# ---------------------------------------------------------------------------------------------------------
# Beam search
# ---------------------------------------------------------------------------------------------------------


def length_penalty(lengths: jax.Array, alpha: float) -> jax.Array:
    """GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al., 2016); alpha = 0: plain log-probability."""
    return ((5.0 + lengths.astype(jnp.float32)) / 6.0) ** alpha


def reorder_cache(cache: Any, rows: jax.Array, batch_axis: int = 0) -> Any:
    """Gather rows int[R] along `batch_axis` of every cache leaf whose batch axis has size R.

    Leaves without that axis (e.g. the scalar or per-layer write index) are left as they are.
    """
    R = rows.shape[0]

    def gather(leaf):
        if leaf.ndim > batch_axis and leaf.shape[batch_axis] == R:
            return jnp.take(leaf, rows, axis=batch_axis)
        return leaf

    return jax.tree.map(gather, cache)


class BeamState(NamedTuple):
    tokens: jax.Array  # int32[B, W, max_new]
    logp: jax.Array  # float32[B, W]: summed log-probabilities of the generated tokens
    lengths: jax.Array  # int32[B, W]: generated tokens up to and including EOS
    finished: jax.Array  # bool[B, W]


def beam_search(step_fn: StepFn, prompt: jax.Array, cache: Any, max_new_tokens: int, *, beam_size: int,
                eos_id: int | None = None, pad_id: int = 0, alpha: float = 0.6,
                cache_batch_axis: int = 0) -> tuple[jax.Array, jax.Array]:
    """Beam search from prompt int[B, T0]; returns (sequences int[B, W, T0 + max_new], scores float32[B, W]).

    `cache` and `step_fn` work on B * W rows, beam-major within each batch entry (row b * W + w); the prompt
    is repeated W times here. Candidates are ranked by logp / length_penalty(length, alpha); a finished beam
    can only extend by pad at zero cost, so it competes with live beams on its final score. Output beams are
    sorted best first. Equivalent to the loop:

        logits = step_fn(repeat(prompt, W))                 # only beam 0 is alive at first
        for i in range(max_new_tokens):
            cand[b, w, v] = logp[b, w] + log_softmax(logits)[b, w, v]  (finished: pad only, +0)
            keep the W best (w, v) by cand / lp(length); reorder tokens, cache; append v
            if all finished: break
            logits = step_fn(v)
    """
    _check_prompt(prompt, max_new_tokens)
    B, W = prompt.shape[0], beam_size
    if W < 1:
        raise ValueError(f"beam_size: must be >= 1, got {beam_size}")
    offsets = (jnp.arange(B) * W)[:, None]  # [B, 1]: first row of each batch entry

    def select(i, state: BeamState, logits, cache):
        V = logits.shape[-1]
        if W > V:
            raise ValueError(f"beam_size: W = {W} exceeds the vocabulary size V = {V}")
        lp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1).reshape(B, W, V)
        pad_only = jnp.where(jnp.arange(V) == pad_id, 0.0, _NEG)  # [V]
        lp = jnp.where(state.finished[:, :, None], pad_only[None, None, :], lp)
        cand = state.logp[:, :, None] + lp  # [B, W, V]
        new_len = jnp.where(state.finished, state.lengths, state.lengths + 1)  # [B, W]
        rank = cand / length_penalty(new_len, alpha)[:, :, None]
        _, flat = jax.lax.top_k(rank.reshape(B, W * V), W)  # [B, W]
        beam, tok = flat // V, (flat % V).astype(jnp.int32)

        def by_beam(x):  # x [B, W, ...] -> rows of the chosen parent beams
            return jnp.take_along_axis(x, beam.reshape(B, W, *([1] * (x.ndim - 2))), axis=1)

        finished = by_beam(state.finished)
        if eos_id is not None:
            finished = finished | (tok == eos_id)
        state = BeamState(tokens=by_beam(state.tokens).at[:, :, i].set(tok),
                          logp=jnp.take_along_axis(cand.reshape(B, W * V), flat, axis=1),
                          lengths=by_beam(new_len), finished=finished)
        cache = reorder_cache(cache, (offsets + beam).reshape(B * W), cache_batch_axis)
        return state, tok, cache

    logits, cache = step_fn(jnp.repeat(prompt, W, axis=0), cache)
    # All W beams start identical: only beam 0 may expand at the first step, or the top W would be W copies.
    init = BeamState(tokens=jnp.full((B, W, max_new_tokens), pad_id, jnp.int32),
                     logp=jnp.tile(jnp.where(jnp.arange(W) == 0, 0.0, _NEG)[None, :], (B, 1)),
                     lengths=jnp.zeros((B, W), jnp.int32), finished=jnp.zeros((B, W), bool))
    state, tok, cache = select(0, init, logits, cache)

    def cond(carry):
        i, state, _, _ = carry
        return (i < max_new_tokens) & ~jnp.all(state.finished)

    def body(carry):
        i, state, tok, cache = carry
        logits, cache = step_fn(tok.reshape(B * W, 1), cache)
        state, tok, cache = select(i, state, logits, cache)
        return i + 1, state, tok, cache

    _, state, _, _ = jax.lax.while_loop(cond, body, (jnp.int32(1), state, tok, cache))
    scores = state.logp / length_penalty(state.lengths, alpha)
    order = jnp.argsort(-scores, axis=1)  # [B, W] best first
    tokens = jnp.take_along_axis(state.tokens, order[:, :, None], axis=1)
    prompt_rep = jnp.broadcast_to(prompt.astype(jnp.int32)[:, None, :], (B, W, prompt.shape[1]))
    return jnp.concatenate([prompt_rep, tokens], axis=2), jnp.take_along_axis(scores, order, axis=1)

