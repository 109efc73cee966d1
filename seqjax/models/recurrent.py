"""Recurrent models for the experiments: forecaster, sentence classifier, G2P encoder-decoder, pattern demos.

Each model is a thin NNX module over the pure core: parameters are the core's NamedTuples with every array
wrapped in `nnx.Param` (so optimisers and checkpoints see ordinary NNX state), and `__call__` unwraps them
and calls `seqjax.scan` / `seqjax.patterns` / `seqjax.decoding`. Dropout is active iff a `key` is given.

    model = sentiment_classifier(config.model, vocab_size, nnx.Rngs(0))
    logits = model(tokens, lengths)                          # [B, 2]; key=None: evaluation
    model = g2p_rnn(config.model, V_src, V_tgt, nnx.Rngs(0), bos_id=1, eos_id=2)
    logits = model(src, src_lengths, tgt_in)                 # [B, T, V_tgt], teacher forcing
    tokens = model.generate(src, src_lengths, max_len=20, beam_size=4)   # [B, max_len]
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax import decoding, dropout, masks, patterns, scan
from seqjax.cells import Cell, LSTMState
from seqjax.layers import RNN, Embedding


def _wrap(tree: Any) -> Any:
    """Core params (NamedTuples of arrays, maybe with None) -> the same tree of nnx.Param, as module data."""
    return nnx.data(jax.tree.map(nnx.Param, tree))


def _unwrap(tree: Any) -> Any:
    return jax.tree.map(lambda v: v[...], tree, is_leaf=lambda v: isinstance(v, nnx.Variable))


def _keys(key: jax.Array | None, n: int) -> list:
    return [None] * n if key is None else list(jax.random.split(key, n))


# ------------------------------------------------------------------------------------------------ forecasting


class Forecaster(nnx.Module):
    """Window x [B, W, C_in] -> the next `horizon` rows of C_out targets, [B, horizon, C_out].

    A recurrent stack reads the window; its output at the last step (dropout, then a linear layer) predicts
    all horizon x C_out values at once (direct multi-step forecasting, no feedback of predictions).
    """

    def __init__(self, num_inputs: int, num_outputs: int, horizon: int = 1, *, hidden: int = 32,
                 cell: str = "lstm", num_layers: int = 1, dropout: float = 0.0, rngs: nnx.Rngs):
        self.horizon, self.num_outputs, self.dropout = int(horizon), int(num_outputs), float(dropout)
        self.rnn = RNN(num_inputs, hidden, cell=cell, num_layers=num_layers, dropout=dropout, rngs=rngs)
        self.head = nnx.Linear(hidden, self.horizon * self.num_outputs, rngs=rngs)

    def __call__(self, x: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        if x.ndim != 3:
            raise ValueError(f"x: expected a window [B, W, C_in], got shape {tuple(x.shape)}")
        k_rnn, k_out = _keys(key, 2)
        ys, _ = self.rnn(x, key=k_rnn)  # [B, W, H]
        h = dropout.dropout(ys[:, -1], self.dropout, k_out)  # [B, H]
        return self.head(h).reshape(x.shape[0], self.horizon, self.num_outputs)  # [B, h, C]


# -------------------------------------------------------------------------------------------------- sentiment


class SentimentRNN(nnx.Module):
    """tokens [B, T], lengths [B] -> logits [B, classes]: embedding, (bi)directional RNN, pooling, linear.

    Pooling ("last" | "mean" | "max") covers each sentence's valid steps only (seqjax.patterns.pool); for a
    bidirectional "last" the backward half is its state after reading back to step 0.
    """

    def __init__(self, vocab_size: int, *, embed_dim: int = 128, hidden: int = 128, cell: str = "lstm",
                 num_layers: int = 1, bidirectional: bool = True, pool: str = "max",
                 embed_init: float = 1.0, embed_dropout: float = 0.0, word_dropout: float = 0.0,
                 unk_id: int = 1,
                 dropout: float = 0.0, recurrent_dropout: float = 0.0, classes: int = 2, rngs: nnx.Rngs):
        if pool not in patterns.POOLS:
            raise ValueError(f"pool: expected one of {patterns.POOLS}, got {pool!r}")
        self.pool, self.bidirectional = pool, bool(bidirectional)
        self.embed_dropout, self.dropout = float(embed_dropout), float(dropout)
        self.word_dropout, self.unk_id = float(word_dropout), int(unk_id)
        self.embed = Embedding(vocab_size, embed_dim, init_scale=embed_init, rngs=rngs)
        self.rnn = RNN(embed_dim, hidden, cell=cell, num_layers=num_layers, bidirectional=bidirectional,
                       dropout=dropout, recurrent_dropout=recurrent_dropout, rngs=rngs)
        self.head = nnx.Linear(self.rnn.out_features, classes, rngs=rngs)

    def __call__(self, tokens: jax.Array, lengths: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        if tokens.ndim != 2:
            raise ValueError(f"tokens: expected [B, T], got shape {tuple(tokens.shape)}")
        k_word, k_emb, k_rnn, k_out = _keys(key, 4)
        if k_word is not None and self.word_dropout > 0:
            # Word dropout: during training some words become <unk>, so the model cannot lean on single rare
            # words and learns what an unknown word in context means.
            drop = jax.random.bernoulli(k_word, self.word_dropout, tokens.shape)
            tokens = jnp.where(drop & (tokens > self.unk_id), self.unk_id, tokens)
        x = dropout.dropout(self.embed(tokens), self.embed_dropout, k_emb)  # [B, T, E]
        ys, finals = self.rnn(x, lengths=lengths, key=k_rnn)  # [B, T, H']
        if self.pool == "last" and self.bidirectional:
            # The backward direction ends at step 0: take both directions' final states, not ys at T-1.
            last = finals[-1]
            h = jnp.concatenate([last.forward.h, last.backward.h], axis=-1)  # [B, 2H]
        else:
            h = patterns.pool(ys, lengths=lengths, method=self.pool)  # [B, H']
        return self.head(dropout.dropout(h, self.dropout, k_out))


def sentiment_classifier(model_cfg, vocab_size: int, rngs: nnx.Rngs) -> SentimentRNN:
    """The builder behind config.model.family == "recurrent" (same interface as the transformer's)."""
    c = model_cfg
    return SentimentRNN(vocab_size, embed_dim=c.embed_dim, hidden=c.hidden, cell=c.cell,
                        num_layers=c.get("num_layers", 1), bidirectional=c.get("bidirectional", False),
                        pool=c.get("pool", "last"), embed_dropout=c.get("embed_dropout", 0.0),
                        word_dropout=c.get("word_dropout", 0.0), embed_init=c.get("embed_init", 1.0),
                        dropout=c.get("dropout", 0.0), recurrent_dropout=c.get("recurrent_dropout", 0.0),
                        rngs=rngs)


# -------------------------------------------------------------------------------------------------------- G2P


class AttentionSeq2Seq(nnx.Module):
    """RNN encoder-decoder with attention: a bidirectional encoder and a `seqjax.patterns` attention decoder.

    The encoder is a bidirectional `layers.RNN` layer over source embeddings; its [B, S, 2H] outputs are
    projected to H (tanh) to serve as attention memory, and its two final states are projected to the
    decoder's initial state. Each decoder step is `patterns.decoder_step` (Luong "dot"/"general" or
    "bahdanau" attention, source padding masked). Dropout (when a key is given) on source embeddings and on
    the attention memory. Greedy decoding and beam search use `seqjax.decoding` with the decoder state as
    cache.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, *, embed_dim: int = 64, hidden: int = 128,
                 cell: str = "lstm", attention: str = "general", dropout: float = 0.0, bos_id: int = 1,
                 eos_id: int = 2, pad_id: int = 0, rngs: nnx.Rngs):
        if attention is None:
            raise ValueError("attention: this model needs one of 'dot', 'general', 'bahdanau'")
        self.spec = patterns.Seq2SeqSpec(cell=Cell(cell), attention=attention)
        self.dropout = float(dropout)
        self.bos_id, self.eos_id, self.pad_id = int(bos_id), int(eos_id), int(pad_id)
        H = hidden
        core = patterns.init_seq2seq(rngs.params(), self.spec, src_vocab, tgt_vocab, embed_dim, H)
        # The patterns encoder is unidirectional; this model brings its own bidirectional one instead.
        self.decoder = _wrap(core._replace(encoder=None))
        self.encoder = RNN(embed_dim, H, cell=cell, bidirectional=True, rngs=rngs)
        self.memory_proj = nnx.Linear(2 * H, H, rngs=rngs)
        n_state = 2 if cell == "lstm" else 1
        self.bridge = nnx.Linear(2 * H, n_state * H, rngs=rngs)

    def encode(self, src: jax.Array, src_lengths: jax.Array, key: jax.Array | None = None
               ) -> patterns.Encoded:
        """src [B, S], src_lengths [B] -> attention memory [B, S, H], keys, mask bool[B, S], decoder state."""
        if src.ndim != 2:
            raise ValueError(f"src: expected token ids [B, S], got shape {tuple(src.shape)}")
        B, S = src.shape
        p = _unwrap(self.decoder)
        masks.check_token_ids(src, p.src_embed.shape[0], "src")
        k_emb, k_mem = _keys(key, 2)
        x = dropout.dropout(jnp.take(p.src_embed, src, axis=0), self.dropout, k_emb)  # [B, S, E]
        mask = masks.lengths_to_mask(src_lengths, S)
        ys, finals = self.encoder(x, lengths=src_lengths)  # [B, S, 2H]
        memory = jnp.where(mask[:, :, None], jnp.tanh(self.memory_proj(ys)), 0.0)  # [B, S, H]
        memory = dropout.dropout(memory, self.dropout, k_mem)
        both = finals[-1]
        h = jnp.tanh(self.bridge(jnp.concatenate([both.forward.h, both.backward.h], axis=-1)))  # [B, n*H]
        if self.spec.cell.kind == "lstm":
            h, c = jnp.split(h, 2, axis=-1)
            state = LSTMState(h=h, c=c)
        else:
            state = type(both.forward)(h)
        keys = patterns.attention_keys(self.spec.attention, p.attention, memory)
        return patterns.Encoded(memory, keys, mask, state)

    def __call__(self, src: jax.Array, src_lengths: jax.Array, tgt_in: jax.Array, *,
                 key: jax.Array | None = None) -> jax.Array:
        """Teacher forcing: logits [B, T, V_tgt] given the true previous tokens tgt_in [B, T] (BOS first).

            enc = encode(src); state = enc.state
            for t in range(T):
                state, logits[:, t], _ = decoder_step(state, tgt_in[:, t])
        """
        if tgt_in.ndim != 2 or tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"tgt_in: expected [B, T] with B = {src.shape[0]}, "
                             f"got shape {tuple(tgt_in.shape)}")
        p = _unwrap(self.decoder)
        masks.check_token_ids(tgt_in, p.tgt_embed.shape[0], "tgt_in")
        enc = self.encode(src, src_lengths, key)

        def body(state, token):
            state, logits, _ = patterns.decoder_step(self.spec, p, enc, state, token)
            return state, logits

        _, logits = jax.lax.scan(body, enc.state, jnp.swapaxes(tgt_in, 0, 1))
        return jnp.swapaxes(logits, 0, 1)  # [B, T, V]

    def generate(self, src: jax.Array, src_lengths: jax.Array, max_len: int, beam_size: int = 1) -> jax.Array:
        """Decoded tokens [B, max_len] (no BOS): the tokens up to and including EOS, then padding.

        beam_size 1 is greedy decoding; larger widths use `decoding.beam_search` and return the best beam.
        """
        p = _unwrap(self.decoder)
        enc = self.encode(src, src_lengths)
        B = src.shape[0]
        W = int(beam_size)
        if W > 1:  # every row of the cache is repeated per beam, beam-major within each batch entry
            enc = jax.tree.map(lambda a: jnp.repeat(a, W, axis=0), enc)

        def step_fn(tokens, cache):
            """tokens [R, t] -> logits [R, V] after the last token; the cache is (decoder state, encoded)."""
            state, e = cache
            state, logits, _ = patterns.decoder_step(self.spec, p, e, state, tokens[:, -1])
            return logits, (state, e)

        prompt = jnp.full((B, 1), self.bos_id, jnp.int32)
        if W == 1:
            out = decoding.generate(step_fn, prompt, (enc.state, enc), max_len, eos_id=self.eos_id,
                                    pad_id=self.pad_id)
            return out[:, 1:]
        seqs, _ = decoding.beam_search(step_fn, prompt, (enc.state, enc), max_len, beam_size=W,
                                       eos_id=self.eos_id, pad_id=self.pad_id)
        return seqs[:, 0, 1:]


def g2p_rnn(model_cfg, src_vocab: int, tgt_vocab: int, rngs: nnx.Rngs, *, bos_id: int = 1,
            eos_id: int = 2) -> AttentionSeq2Seq:
    """The recurrent builder behind config.model.family == "recurrent" for the g2p task."""
    c = model_cfg
    return AttentionSeq2Seq(src_vocab, tgt_vocab, embed_dim=c.embed_dim, hidden=c.hidden, cell=c.cell,
                            attention=c.get("attention", "general"), dropout=c.get("dropout", 0.0),
                            bos_id=bos_id, eos_id=eos_id, rngs=rngs)


# ----------------------------------------------------------------------------------------------- I/O patterns


class PatternModels(nnx.Module):
    """Five independent small recurrent models, one per input/output pattern (seqjax/tasks/patterns.py)."""

    def __init__(self, *, T: int, hidden: int = 32, cell: str = "gru", vocab: int = 13, bos_id: int = 1,
                 eos_id: int = 2, rngs: nnx.Rngs):
        self.T, self.bos_id, self.eos_id = int(T), int(bos_id), int(eos_id)
        self.cell = Cell(cell)
        H = hidden
        # one-to-one: a single recurrent step over a length-1 sequence (an RNN degenerates to a feed-forward
        # layer), then a classifier.
        self.o2o = _wrap(self.cell.init(rngs.params(), 2, H))
        self.o2o_head = nnx.Linear(H, 2, rngs=rngs)
        # one-to-many: the same input vector at every step (feedback="fixed"), a linear readout per step.
        self.o2m = _wrap(self.cell.init(rngs.params(), 3, H))
        self.o2m_head = nnx.Linear(H, 1, rngs=rngs)
        # many-to-one: one-hot bits, the last valid output, T + 1 count classes.
        self.m2o = _wrap(self.cell.init(rngs.params(), 2, H))
        self.m2o_head = nnx.Linear(H, T + 1, rngs=rngs)
        # many-to-many aligned: one-hot digits, a classifier per step.
        self.m2m = _wrap(self.cell.init(rngs.params(), 10, H))
        self.m2m_head = nnx.Linear(H, 10, rngs=rngs)
        # encoder-decoder: patterns' seq2seq with Luong dot attention.
        self.s2s_spec = patterns.Seq2SeqSpec(cell=self.cell, attention="dot")
        self.s2s = _wrap(patterns.init_seq2seq(rngs.params(), self.s2s_spec, vocab, vocab, 16, H))

    def one_to_one(self, x: jax.Array, *, key=None) -> jax.Array:
        """x [B, 2] -> logits [B, 2]."""
        ys, _ = scan.unroll(self.cell, _unwrap(self.o2o), x[:, None, :])  # [B, 1, H]
        return self.o2o_head(ys[:, 0])

    def one_to_many(self, x: jax.Array, *, key=None) -> jax.Array:
        """x [B, 3] -> wave [B, T]."""
        ys, _ = patterns.one_to_many(self.cell, _unwrap(self.o2m), x, self.T, feedback="fixed")  # [B, T, H]
        return self.o2m_head(ys)[..., 0]

    def many_to_one(self, bits: jax.Array, lengths: jax.Array, *, key=None) -> jax.Array:
        """bits int[B, T], lengths [B] -> logits [B, T + 1] over the count of ones."""
        h = patterns.many_to_one(self.cell, _unwrap(self.m2o), jax.nn.one_hot(bits, 2), lengths=lengths)
        return self.m2o_head(h)

    def many_to_many(self, digits: jax.Array, lengths: jax.Array, *, key=None) -> jax.Array:
        """digits int[B, T], lengths [B] -> logits [B, T, 10] (one classification per step)."""
        xs = jax.nn.one_hot(digits, 10)  # [B, T, 10]
        ys, _ = patterns.many_to_many(self.cell, _unwrap(self.m2m), xs, lengths=lengths)
        return self.m2m_head(ys)

    def seq2seq(self, src, src_lengths, tgt_in, *, key=None) -> jax.Array:
        return patterns.teacher_forcing(self.s2s_spec, _unwrap(self.s2s), src, src_lengths, tgt_in)

    def generate(self, src, src_lengths, max_len: int) -> jax.Array:
        tokens, _ = patterns.greedy_decode(self.s2s_spec, _unwrap(self.s2s), src, src_lengths,
                                           max_len=max_len, bos_id=self.bos_id, eos_id=self.eos_id)
        return tokens


def count_params(model: nnx.Module) -> int:
    return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(nnx.state(model, nnx.Param))))
