"""The input/output patterns of recurrent models as pure functions.

  * many-to-one:   a sequence -> one vector (last valid output, or masked mean / max pooling);
  * many-to-many, aligned: one output per input step, with the padding mask;
  * one-to-many:   one input vector -> T outputs, feeding back each output (or the same input) as next input;
  * many-to-many, encoder-decoder: an RNN seq2seq with teacher forcing, greedy decoding under jit (static max
    length, EOS handling) and optional Luong ("dot" / "general") or Bahdanau ("bahdanau", additive) attention
    over the encoder outputs, with source padding masked out.

Token arrays are int[B, S] (source) and int[B, T] (target), right-padded; `src_lengths` int[B].
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqjax.cells import Cell
from seqjax.masks import check_lengths, check_token_ids, lengths_to_mask, step_mask
from seqjax.scan import unroll

POOLS = ("last", "mean", "max")
ATTENTIONS = (None, "dot", "general", "bahdanau")

# --------------------------------------------------------------------------------------------------------
# many-to-one and many-to-many (aligned)


def last_valid(ys: jax.Array, *, lengths=None, mask=None) -> jax.Array:
    """ys [B, T, H] -> [B, H]: the output at each sequence's last valid step (zeros for an empty sequence).

    With a mask the last True position is used, so it also works for masks that are not a prefix.
    """
    keep = step_mask(ys, lengths, mask)
    if keep is None:
        return ys[:, -1]
    T = ys.shape[1]
    last = T - 1 - jnp.argmax(keep[:, ::-1], axis=1)  # [B] index of the last True
    picked = jnp.take_along_axis(ys, last[:, None, None], axis=1)[:, 0]  # [B, H]
    return jnp.where(keep.any(axis=1)[:, None], picked, jnp.zeros_like(picked))


def masked_mean(ys: jax.Array, mask: jax.Array) -> jax.Array:
    """ys [B, T, H], mask bool[B, T] -> mean over valid steps [B, H] (zeros for an empty sequence)."""
    w = mask.astype(ys.dtype)[:, :, None]  # [B, T, 1]
    return jnp.sum(ys * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)


def masked_max(ys: jax.Array, mask: jax.Array) -> jax.Array:
    """ys [B, T, H], mask bool[B, T] -> max over valid steps [B, H] (zeros for an empty sequence)."""
    keep = mask[:, :, None]  # [B, T, 1]
    low = jnp.asarray(jnp.finfo(ys.dtype).min, ys.dtype)
    best = jnp.max(jnp.where(keep, ys, low), axis=1)
    return jnp.where(mask.any(axis=1)[:, None], best, jnp.zeros_like(best))


def pool(ys: jax.Array, *, lengths=None, mask=None, method: str = "last") -> jax.Array:
    """Reduce ys [B, T, H] over valid steps to [B, H] by "last", "mean" or "max"."""
    if method not in POOLS:
        raise ValueError(f"method: expected one of {POOLS}, got {method!r}")
    if method == "last":
        return last_valid(ys, lengths=lengths, mask=mask)
    keep = step_mask(ys, lengths, mask)
    if keep is None:
        keep = jnp.ones(ys.shape[:2], bool)
    return masked_mean(ys, keep) if method == "mean" else masked_max(ys, keep)


def many_to_one(cell: Cell, params, xs: jax.Array, *, lengths=None, mask=None, method: str = "last",
                **unroll_kwargs) -> jax.Array:
    """Run the cell over xs [B, T, D] and pool the outputs to [B, H] (method "last" = the final hidden h)."""
    ys, _ = unroll(cell, params, xs, lengths=lengths, mask=mask, **unroll_kwargs)
    return pool(ys, lengths=lengths, mask=mask, method=method)


def many_to_many(cell: Cell, params, xs: jax.Array, *, lengths=None, mask=None,
                 **unroll_kwargs) -> tuple[jax.Array, jax.Array]:
    """Per-step outputs ys [B, T, H] (zero at padding) and the validity mask bool[B, T] for a masked loss."""
    ys, _ = unroll(cell, params, xs, lengths=lengths, mask=mask, **unroll_kwargs)
    keep = step_mask(xs, lengths, mask)
    return ys, (jnp.ones(xs.shape[:2], bool) if keep is None else keep)


# --------------------------------------------------------------------------------------------------------
# one-to-many


def one_to_many(cell: Cell, params, x0: jax.Array, T: int, *,
                readout: Callable[[jax.Array], jax.Array] | None = None, feedback: str = "output",
                initial_state=None) -> tuple[jax.Array, Any]:
    """Generate T outputs from one input x0 [B, D]: returns (outs [B, T, O], final state).

    Replaces the loop
        x, state = x0, initial_state or zeros
        for t in range(T):
            state, y = cell(params, state, x)
            outs[:, t] = o = readout(y)                      # identity when readout is None
            x = o if feedback == "output" else x0           # "fixed": the same x0 at every step
    With feedback="output" the readout must map [B, H] to the input width D.
    """
    if feedback not in ("output", "fixed"):
        raise ValueError(f"feedback: expected 'output' or 'fixed', got {feedback!r}")
    if np.ndim(x0) != 2:
        raise ValueError(f"x0: expected [B, D], got shape {tuple(np.shape(x0))}")
    if int(T) < 1:
        raise ValueError(f"T: expected a positive static length, got {T}")
    readout = readout or (lambda y: y)
    B = x0.shape[0]
    state = cell.zero_state(params, B) if initial_state is None else initial_state
    if feedback == "output":
        out_shape = jax.eval_shape(readout, jax.ShapeDtypeStruct((B, cell.hidden_size(params)), x0.dtype))
        if out_shape.shape != x0.shape:
            raise ValueError(f"readout: feedback='output' needs outputs shaped like x0 {tuple(x0.shape)}, "
                             f"got {out_shape.shape}")

    def body(carry, _):
        state, x = carry
        state, y = cell(params, state, x)
        o = readout(y)
        x = o.astype(x0.dtype) if feedback == "output" else x0
        return (state, x), o

    (state, _), outs = jax.lax.scan(body, (state, x0), None, length=int(T))
    return jnp.swapaxes(outs, 0, 1), state  # [B, T, O]


# --------------------------------------------------------------------------------------------------------
# Attention over encoder outputs


class GeneralAttentionParams(NamedTuple):
    """Luong "general": score(q, k) = q^T W k."""
    w: jax.Array  # [H, H]


class AdditiveAttentionParams(NamedTuple):
    """Bahdanau: score(q, k) = v^T tanh(q W_q + k W_k)."""
    w_q: jax.Array  # [H, A]
    w_k: jax.Array  # [H, A]
    v: jax.Array  # [A]


def attention_keys(kind: str, params, enc: jax.Array) -> jax.Array:
    """Everything about the scores that depends only on the encoder outputs enc [B, S, H], computed once."""
    if kind == "dot":
        return enc
    if kind == "general":
        return jnp.einsum("bsj,ij->bsi", enc, params.w)  # [B, S, H]: W k_s for every s
    if kind == "bahdanau":
        return enc @ params.w_k  # [B, S, A]
    raise ValueError(f"attention: expected one of {ATTENTIONS[1:]}, got {kind!r}")


def attention_scores(kind: str, params, query: jax.Array, keys: jax.Array) -> jax.Array:
    """query [B, H], keys from `attention_keys` -> scores [B, S]."""
    if kind in ("dot", "general"):
        return jnp.einsum("bh,bsh->bs", query, keys)
    q = (query @ params.w_q)[:, None, :]  # [B, 1, A]
    return jnp.einsum("bsa,a->bs", jnp.tanh(keys + q), params.v)


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Softmax over S of scores [B, S] restricted to mask bool[B, S]: exactly 0 on padding, and a row with no
    valid position gets all zeros instead of NaN."""
    scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    weights = jax.nn.softmax(scores, axis=-1)
    return jnp.where(mask, weights, jnp.zeros_like(weights))


def attend(kind: str, params, query: jax.Array, keys: jax.Array, values: jax.Array,
           mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(context [B, H], weights [B, S]) for query [B, H] over values [B, S, H] at valid source positions."""
    weights = masked_softmax(attention_scores(kind, params, query, keys), mask)
    return jnp.einsum("bs,bsh->bh", weights, values), weights


# --------------------------------------------------------------------------------------------------------
# RNN encoder-decoder


@dataclasses.dataclass(frozen=True)
class Seq2SeqSpec:
    """Static description of an RNN seq2seq (hashable, so it can be closed over or passed static to jit).

    attention None: the decoder sees only the encoder's final state (Sutskever et al., 2014).
    "dot" / "general" (Luong et al., 2015): h_t = cell(s, emb(y_{t-1})); c_t = attend(h_t);
        logits = tanh([c_t; h_t] W_c) W_out + b.
    "bahdanau" (Bahdanau et al., 2015): c_t = attend(s_{t-1}.h); h_t = cell(s, [emb(y_{t-1}); c_t]);
        logits = [h_t; c_t] W_out + b.
    """
    cell: Cell = Cell("gru")
    attention: str | None = None

    def __post_init__(self):
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention: expected one of {ATTENTIONS}, got {self.attention!r}")


class Seq2SeqParams(NamedTuple):
    src_embed: jax.Array  # [V_src, E]
    tgt_embed: jax.Array  # [V_tgt, E]
    encoder: Any  # cell params, input E
    decoder: Any  # cell params, input E (+ H for bahdanau)
    attention: Any  # None | GeneralAttentionParams | AdditiveAttentionParams
    w_c: jax.Array | None  # [2H, H], Luong's attentional layer
    w_out: jax.Array  # [H, V_tgt], or [2H, V_tgt] for bahdanau
    b_out: jax.Array  # [V_tgt]
    BIASES = ("b_out",)  # additive offsets (seqjax.nn.params: never weight-decayed)


class Encoded(NamedTuple):
    outputs: jax.Array  # [B, S, H], zero at padding
    keys: jax.Array  # attention_keys(outputs), or outputs when there is no attention
    mask: jax.Array  # bool[B, S]
    state: Any  # encoder state after each source's last valid step


def init_seq2seq(key: jax.Array, spec: Seq2SeqSpec, src_vocab: int, tgt_vocab: int, E: int, H: int,
                 A: int | None = None, dtype=jnp.float32) -> Seq2SeqParams:
    """Weights N(0, 1/fan_in), output bias 0; A is the additive attention width (default H)."""
    k_src, k_tgt, k_enc, k_dec, k_att, k_c, k_out = jax.random.split(key, 7)
    normal = lambda k, shape, fan_in: jax.random.normal(k, shape, dtype) / np.sqrt(fan_in)
    attention, w_c = None, None
    dec_in, out_in = E, H
    if spec.attention == "general":
        attention = GeneralAttentionParams(normal(k_att, (H, H), H))
    elif spec.attention == "bahdanau":
        A = A or H
        k_q, k_k, k_v = jax.random.split(k_att, 3)
        attention = AdditiveAttentionParams(normal(k_q, (H, A), H), normal(k_k, (H, A), H),
                                            normal(k_v, (A,), A))
        dec_in, out_in = E + H, 2 * H
    if spec.attention in ("dot", "general"):
        w_c = normal(k_c, (2 * H, H), 2 * H)
    return Seq2SeqParams(
        src_embed=normal(k_src, (src_vocab, E), E), tgt_embed=normal(k_tgt, (tgt_vocab, E), E),
        encoder=spec.cell.init(k_enc, E, H, dtype), decoder=spec.cell.init(k_dec, dec_in, H, dtype),
        attention=attention, w_c=w_c, w_out=normal(k_out, (out_in, tgt_vocab), out_in),
        b_out=jnp.zeros((tgt_vocab,), dtype))


def encode(spec: Seq2SeqSpec, params: Seq2SeqParams, src: jax.Array, src_lengths: jax.Array) -> Encoded:
    """src int[B, S], src_lengths int[B] -> encoder outputs, attention keys, source mask and final state."""
    if np.ndim(src) != 2:
        raise ValueError(f"src: expected token ids [B, S], got shape {tuple(np.shape(src))}")
    B, S = src.shape
    check_lengths(src_lengths, B, S, "src_lengths")
    check_token_ids(src, params.src_embed.shape[0], "src")
    mask = lengths_to_mask(jnp.asarray(src_lengths), S)
    outputs, state = unroll(spec.cell, params.encoder, jnp.take(params.src_embed, src, axis=0), mask=mask)
    keys = outputs if spec.attention is None else attention_keys(spec.attention, params.attention, outputs)
    return Encoded(outputs, keys, mask, state)


def decoder_step(spec: Seq2SeqSpec, params: Seq2SeqParams, enc: Encoded, state,
                 token: jax.Array) -> tuple[Any, jax.Array, jax.Array | None]:
    """One decoder step from the previous token int[B]: (state, logits [B, V_tgt], weights [B, S] | None)."""
    emb = jnp.take(params.tgt_embed, token, axis=0)  # [B, E]
    cell, kind = spec.cell, spec.attention
    weights = None
    if kind == "bahdanau":
        context, weights = attend(kind, params.attention, state.h, enc.keys, enc.outputs, enc.mask)
        state, h = cell(params.decoder, state, jnp.concatenate([emb, context.astype(emb.dtype)], axis=-1))
        out = jnp.concatenate([h, context.astype(h.dtype)], axis=-1)  # [B, 2H]
    else:
        state, h = cell(params.decoder, state, emb)
        out = h
        if kind is not None:
            context, weights = attend(kind, params.attention, h, enc.keys, enc.outputs, enc.mask)
            out = jnp.tanh(jnp.concatenate([context.astype(h.dtype), h], axis=-1) @ params.w_c)  # [B, H]
    logits = out @ params.w_out + params.b_out[None, :]
    return state, logits, weights


def teacher_forcing(spec: Seq2SeqSpec, params: Seq2SeqParams, src: jax.Array, src_lengths: jax.Array,
                    tgt_in: jax.Array, *, return_attention: bool = False):
    """Logits [B, T, V_tgt] for every target position given the true previous tokens tgt_in int[B, T]
    (BOS followed by the target shifted right). Padded target positions produce logits that a masked loss
    ignores. With return_attention also the weights [B, T, S] (zeros without attention).

        enc = encode(src); state = enc.state
        for t in range(T):
            state, logits[:, t], weights[:, t] = decoder_step(state, tgt_in[:, t])
    """
    if np.ndim(tgt_in) != 2 or tgt_in.shape[0] != np.shape(src)[0]:
        raise ValueError(f"tgt_in: expected token ids [B, T] with B = {np.shape(src)[0]}, "
                         f"got shape {tuple(np.shape(tgt_in))}")
    check_token_ids(tgt_in, params.tgt_embed.shape[0], "tgt_in")
    enc = encode(spec, params, src, src_lengths)
    S = enc.mask.shape[1]

    def body(state, token):
        state, logits, weights = decoder_step(spec, params, enc, state, token)
        return state, (logits, jnp.zeros((token.shape[0], S), logits.dtype) if weights is None else weights)

    _, (logits, weights) = jax.lax.scan(body, enc.state, jnp.swapaxes(tgt_in, 0, 1))
    logits = jnp.swapaxes(logits, 0, 1)  # [B, T, V]
    return (logits, jnp.swapaxes(weights, 0, 1)) if return_attention else logits


def greedy_decode(spec: Seq2SeqSpec, params: Seq2SeqParams, src: jax.Array, src_lengths: jax.Array, *,
                  max_len: int, bos_id: int, eos_id: int, pad_id: int = 0, return_attention: bool = False):
    """Greedy decoding for a static `max_len` (jit-friendly): tokens int[B, max_len], lengths int[B].

    A sequence's tokens run up to and including its first EOS, then `pad_id`; lengths count the tokens up to
    and including EOS (max_len if none was produced). With return_attention also weights [B, max_len, S]
    (zero after EOS).

        token, done = bos, False
        for t in range(max_len):
            state, logits, w = decoder_step(state, token)
            token = pad if done else argmax(logits)
            tokens[:, t] = token
            done = done or token == eos
    """
    if int(max_len) < 1:
        raise ValueError(f"max_len: expected a positive static length, got {max_len}")
    enc = encode(spec, params, src, src_lengths)
    B, S = enc.mask.shape

    def body(carry, _):
        state, token, done = carry
        new_state, logits, weights = decoder_step(spec, params, enc, state, token)
        state = jax.tree.map(lambda n, o: jnp.where(done[:, None], o, n), new_state, state)
        nxt = jnp.argmax(logits, axis=-1).astype(token.dtype)
        nxt = jnp.where(done, jnp.full_like(nxt, pad_id), nxt)
        weights = jnp.zeros((B, S), logits.dtype) if weights is None else weights
        weights = jnp.where(done[:, None], jnp.zeros_like(weights), weights)
        alive = ~done
        return (state, nxt, done | (nxt == eos_id)), (nxt, alive, weights)

    start = (enc.state, jnp.full((B,), bos_id, jnp.int32), jnp.zeros((B,), bool))
    _, (tokens, alive, weights) = jax.lax.scan(body, start, None, length=int(max_len))
    tokens = jnp.swapaxes(tokens, 0, 1)  # [B, max_len]
    lengths = jnp.sum(alive, axis=0).astype(jnp.int32)
    if return_attention:
        return tokens, lengths, jnp.swapaxes(weights, 0, 1)
    return tokens, lengths
