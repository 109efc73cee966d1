"""The input/output patterns of recurrent models as pure functions.

  * many-to-one:   a sequence -> one vector (last valid output, or masked mean / max pooling);
  * many-to-many, aligned: one output per input step, with the padding mask;
  * one-to-many:   one input vector -> T outputs, feeding back each output (or the same input) as next input;
  * many-to-many, encoder-decoder: the one RNN seq2seq of the library (`Seq2SeqSpec`: a unidirectional
    encoder, or a bidirectional one with a memory projection and a bridge to the decoder state), with teacher
    forcing, optional Luong ("dot" / "general") or Bahdanau ("bahdanau", additive) attention over the encoder
    memory with source padding masked out, and decoding (`translate`: greedy via `decoding.generate`, or
    `decoding.beam_search`) under jit with a static maximum length.

Token arrays are int[B, S] (source) and int[B, T] (target), right-padded; `src_lengths` int[B].
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from seqjax import decoding
from seqjax.cells import Cell, HiddenState, LSTMState
from seqjax.dropout import dropout, split_keys
from seqjax.embedding import lookup
from seqjax.masks import check_lengths, check_token_ids, lengths_to_mask, masked_softmax, step_mask
from seqjax.scan import BidirectionalParams, bidirectional, unroll

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
    AXES = {"w": ("hidden", "hidden")}  # logical axis names (seqjax.nn.params)


class AdditiveAttentionParams(NamedTuple):
    """Bahdanau: score(q, k) = v^T tanh(q W_q + k W_k)."""
    w_q: jax.Array  # [H, A]
    w_k: jax.Array  # [H, A]
    v: jax.Array  # [A]
    AXES = {"w_q": ("hidden", "attention"), "w_k": ("hidden", "attention"), "v": ("attention",)}


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

    Encoder (source embeddings x_s = emb(src_s), E wide):
      bidirectional False: one cell over x; the memory (what attention reads) is its outputs [B, S, H] and the
        decoder starts from its final state (Sutskever et al., 2014).
      bidirectional True: a forward and a backward cell over x (Bahdanau et al., 2015); the memory is
        tanh([y_fwd; y_bwd] W_m + b_m) [B, S, H], and the decoder starts from the bridge
        tanh([h_fwd; h_bwd] W_s + b_s) of the two directions' final hidden states (for an LSTM the bridge
        gives [h; c], 2H wide).
    Memory is zero at source padding. Dropout, only when a key is given: `embed_dropout` on the source
    embeddings, `memory_dropout` on the memory (before the attention keys are computed from it).

    Decoder, per step from the previous target token y_{t-1}:
      attention None: h_t = cell(s, emb(y_{t-1})); logits = h_t W_out + b.
      "dot" / "general" (Luong et al., 2015): h_t = cell(s, emb(y_{t-1})); c_t = attend(h_t);
        logits = tanh([c_t; h_t] W_c) W_out + b.
      "bahdanau" (Bahdanau et al., 2015): c_t = attend(s_{t-1}.h); h_t = cell(s, [emb(y_{t-1}); c_t]);
        logits = [h_t; c_t] W_out + b.
    """
    cell: Cell = Cell("gru")
    attention: str | None = None
    bidirectional: bool = False
    embed_dropout: float = 0.0
    memory_dropout: float = 0.0

    def __post_init__(self):
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention: expected one of {ATTENTIONS}, got {self.attention!r}")
        for name in ("embed_dropout", "memory_dropout"):
            rate = getattr(self, name)
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name}: expected a rate in [0, 1), got {rate}")


class Projection(NamedTuple):
    """An affine map x [..., D] @ w [D, O] + b [O]."""
    w: jax.Array  # [D, O]
    b: jax.Array  # [O]
    BIASES = ("b",)  # additive offsets (seqjax.nn.params: never weight-decayed)
    AXES = {"w": ("hidden", "hidden"), "b": ("hidden",)}  # as used here: [2H, H] and [2H, n H]


class Seq2SeqParams(NamedTuple):
    src_embed: jax.Array  # [V_src, E]
    tgt_embed: jax.Array  # [V_tgt, E]
    encoder: Any  # cell params, input E; BidirectionalParams for a bidirectional encoder
    memory: Projection | None  # [2H, H], bidirectional encoder only
    bridge: Projection | None  # [2H, H] ([2H, 2H] for an LSTM), bidirectional encoder only
    decoder: Any  # cell params, input E (+ H for bahdanau)
    attention: Any  # None | GeneralAttentionParams | AdditiveAttentionParams
    w_c: jax.Array | None  # [2H, H], Luong's attentional layer
    w_out: jax.Array  # [H, V_tgt], or [2H, V_tgt] for bahdanau
    b_out: jax.Array  # [V_tgt]
    BIASES = ("b_out",)  # additive offsets (seqjax.nn.params: never weight-decayed)
    AXES = {"src_embed": ("vocab", "embed"), "tgt_embed": ("vocab", "embed"), "w_c": ("hidden", "hidden"),
            "w_out": ("hidden", "vocab"), "b_out": ("vocab",)}  # logical axis names (seqjax.nn.params)


class Encoded(NamedTuple):
    outputs: jax.Array  # memory [B, S, H], zero at padding
    keys: jax.Array  # attention_keys(outputs), or outputs when there is no attention
    mask: jax.Array  # bool[B, S]
    state: Any  # the decoder's initial state


def init_seq2seq(key: jax.Array, spec: Seq2SeqSpec, src_vocab_size: int, tgt_vocab_size: int, E: int, H: int,
                 A: int | None = None, dtype=jnp.float32) -> Seq2SeqParams:
    """Weights N(0, 1/fan_in), biases 0 (cells: their own init); A is the additive attention width (default
    H). A unidirectional encoder's cell is drawn from the third of seven keys; a bidirectional encoder splits
    that key into (forward, backward, memory, bridge)."""
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
    memory = bridge = None
    if spec.bidirectional:
        k_f, k_b, k_m, k_s = jax.random.split(k_enc, 4)
        encoder = BidirectionalParams(spec.cell.init(k_f, E, H, dtype), spec.cell.init(k_b, E, H, dtype))
        n_state = 2 if spec.cell.kind == "lstm" else 1
        memory = Projection(normal(k_m, (2 * H, H), 2 * H), jnp.zeros((H,), dtype))
        bridge = Projection(normal(k_s, (2 * H, n_state * H), 2 * H), jnp.zeros((n_state * H,), dtype))
    else:
        encoder = spec.cell.init(k_enc, E, H, dtype)
    return Seq2SeqParams(
        src_embed=normal(k_src, (src_vocab_size, E), E), tgt_embed=normal(k_tgt, (tgt_vocab_size, E), E),
        encoder=encoder, memory=memory, bridge=bridge, decoder=spec.cell.init(k_dec, dec_in, H, dtype),
        attention=attention, w_c=w_c, w_out=normal(k_out, (out_in, tgt_vocab_size), out_in),
        b_out=jnp.zeros((tgt_vocab_size,), dtype))


def encode(spec: Seq2SeqSpec, params: Seq2SeqParams, src: jax.Array, src_lengths: jax.Array, *,
           key: jax.Array | None = None) -> Encoded:
    """src int[B, S], src_lengths int[B] -> memory [B, S, H], attention keys, source mask, decoder state.
    Dropout (embeddings, memory) iff key."""
    if np.ndim(src) != 2:
        raise ValueError(f"src: expected token ids [B, S], got shape {tuple(np.shape(src))}")
    B, S = src.shape
    check_lengths(src_lengths, B, S, "src_lengths")
    k_emb, k_mem = split_keys(key, 2)
    mask = lengths_to_mask(jnp.asarray(src_lengths), S)
    x = dropout(lookup(params.src_embed, src, "src"), spec.embed_dropout, k_emb)  # [B, S, E]
    if spec.bidirectional:
        ys, final = bidirectional(spec.cell, params.encoder, x, mask=mask)  # [B, S, 2H]
        memory = jnp.where(mask[:, :, None], jnp.tanh(_project(params.memory, ys)), 0.0)  # [B, S, H]
        s = jnp.tanh(_project(params.bridge, jnp.concatenate([final.forward.h, final.backward.h], axis=-1)))
        state = LSTMState(*jnp.split(s, 2, axis=-1)) if spec.cell.kind == "lstm" else HiddenState(s)
    else:
        memory, state = unroll(spec.cell, params.encoder, x, mask=mask)  # [B, S, H]
    memory = dropout(memory, spec.memory_dropout, k_mem)
    keys = memory if spec.attention is None else attention_keys(spec.attention, params.attention, memory)
    return Encoded(memory, keys, mask, state)


def _project(p: Projection, x: jax.Array) -> jax.Array:
    """x [..., D] -> x @ w + b [..., O]."""
    y = x @ p.w
    return y + jnp.reshape(p.b, (1,) * (y.ndim - 1) + (-1,))


def decoder_step(spec: Seq2SeqSpec, params: Seq2SeqParams, enc: Encoded, state,
                 token: jax.Array) -> tuple[Any, jax.Array, jax.Array | None]:
    """One decoder step from the previous token int[B]: (state, logits [B, V_tgt], weights [B, S] | None)."""
    emb = lookup(params.tgt_embed, token, "tgt_in")  # [B, E]
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
                    tgt_in: jax.Array, *, key: jax.Array | None = None, return_attention: bool = False):
    """Logits [B, T, V_tgt] for every target position given the true previous tokens tgt_in int[B, T]
    (BOS followed by the target shifted right). Padded target positions produce logits that a masked loss
    ignores. With return_attention also the weights [B, T, S] (zeros without attention). Dropout iff key.

        enc = encode(src, key); state = enc.state
        for t in range(T):
            state, logits[:, t], weights[:, t] = decoder_step(state, tgt_in[:, t])
    """
    if np.ndim(tgt_in) != 2 or tgt_in.shape[0] != np.shape(src)[0]:
        raise ValueError(f"tgt_in: expected token ids [B, T] with B = {np.shape(src)[0]}, "
                         f"got shape {tuple(np.shape(tgt_in))}")
    check_token_ids(tgt_in, params.tgt_embed.shape[0], "tgt_in")
    enc = encode(spec, params, src, src_lengths, key=key)
    S = enc.mask.shape[1]

    def body(state, token):
        state, logits, weights = decoder_step(spec, params, enc, state, token)
        return state, (logits, jnp.zeros((token.shape[0], S), logits.dtype) if weights is None else weights)

    _, (logits, weights) = jax.lax.scan(body, enc.state, jnp.swapaxes(tgt_in, 0, 1))
    logits = jnp.swapaxes(logits, 0, 1)  # [B, T, V]
    return (logits, jnp.swapaxes(weights, 0, 1)) if return_attention else logits


def translate(spec: Seq2SeqSpec, params: Seq2SeqParams, src: jax.Array, src_lengths: jax.Array, *,
              max_len: int, bos_id: int, eos_id: int, pad_id: int = 0, beam_size: int = 1) -> jax.Array:
    """Decoded tokens int32[B, max_len] (BOS dropped): each sequence's tokens up to and including its first
    EOS, then `pad_id`. beam_size 1 is greedy (`decoding.generate` without a key); larger widths return the
    best beam of `decoding.beam_search`. The decoder state and the encoded source are the decoding cache.
    """
    if int(beam_size) < 1:
        raise ValueError(f"beam_size: expected >= 1, got {beam_size}")
    enc = encode(spec, params, src, src_lengths)
    B, W = np.shape(src)[0], int(beam_size)
    if W > 1:  # beam search runs B * W rows, beam-major within each batch entry
        enc = jax.tree.map(lambda a: jnp.repeat(a, W, axis=0), enc)

    def step_fn(tokens, cache):
        """tokens int[R, t] -> logits [R, V] after the last token; cache = (decoder state, encoded source)."""
        state, e = cache
        state, logits, _ = decoder_step(spec, params, e, state, tokens[:, -1])
        return logits, (state, e)

    prompt = jnp.full((B, 1), bos_id, jnp.int32)
    if W == 1:
        return decoding.generate(step_fn, prompt, (enc.state, enc), int(max_len), eos_id=eos_id,
                                 pad_id=pad_id)[:, 1:]
    seqs, _ = decoding.beam_search(step_fn, prompt, (enc.state, enc), int(max_len), beam_size=W,
                                   eos_id=eos_id, pad_id=pad_id)
    return seqs[:, 0, 1:]
