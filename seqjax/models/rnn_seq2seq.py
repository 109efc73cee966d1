"""An RNN encoder-decoder: the NNX module over the pure seq2seq of `seqjax.patterns`.

    model = RNNSeq2Seq(src_vocab_size=30, tgt_vocab_size=42, pad_id=0, bos_id=1, eos_id=2, rngs=nnx.Rngs(0))
    logits = model(src, src_lengths, tgt_in, key=key)        # [B, T, V_tgt], teacher forcing
    tokens = model.translate(src, src_lengths, max_len=20)   # int32[B, 20]: greedy; beam_size=4 for beams

The architecture (encoder, attention, decoder) is `patterns.Seq2SeqSpec`; the parameters are one
`patterns.Seq2SeqParams` held as a `ParamTree`.
"""
from __future__ import annotations

import jax
from flax import nnx

from seqjax import patterns
from seqjax.cells import Cell
from seqjax.nn import ParamTree


class RNNSeq2Seq(nnx.Module):
    """Source tokens -> target tokens with a recurrent encoder and an attention decoder.

    Data arguments: the two vocabulary sizes and the target's special ids (`pad_id` fills decoded rows after
    EOS). Config keys: `embed_dim` E of both embeddings, `hidden_size` H of every cell, `cell`, `attention`
    (None, "dot", "general", "bahdanau"), `bidirectional` encoder (with a tanh memory projection of the two
    directions and a bridge to the decoder's initial state), `embed_dropout` on the source embeddings and
    `memory_dropout` on the encoder memory, both only when a key is given (training).
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, pad_id: int, bos_id: int, eos_id: int, *,
                 embed_dim: int = 64, hidden_size: int = 128, cell: str = "gru",
                 attention: str | None = "general", bidirectional: bool = True, embed_dropout: float = 0.0,
                 memory_dropout: float = 0.0, rngs: nnx.Rngs):
        """The config keys (arguments without a default come from the data).

        Args:
            embed_dim: E, the width of the token embeddings.
            hidden_size: H, the width of every recurrent cell.
            cell: "rnn", "lstm" or "gru".
            attention: the decoder's attention over the encoder outputs: "dot", "general" (Luong), "bahdanau"
                (additive) or None.
            bidirectional: a bidirectional encoder, its outputs projected to H (tanh) and its final states
                bridged to the decoder's.
            embed_dropout: dropout rate on the token embeddings; training only.
            memory_dropout: dropout rate on the encoder outputs the decoder attends to; training only.
        """
        self.spec = patterns.Seq2SeqSpec(cell=Cell(cell), attention=attention, bidirectional=bidirectional,
                                         embed_dropout=embed_dropout, memory_dropout=memory_dropout)
        self.pad_id, self.bos_id, self.eos_id = int(pad_id), int(bos_id), int(eos_id)
        self.params = ParamTree(patterns.init_seq2seq(rngs.params(), self.spec, src_vocab_size,
                                                      tgt_vocab_size, embed_dim, hidden_size))

    def encode(self, src: jax.Array, src_lengths: jax.Array, *, key: jax.Array | None = None
               ) -> patterns.Encoded:
        """src int[B, S], src_lengths int[B] -> memory [B, S, H], attention keys, mask, decoder state."""
        return patterns.encode(self.spec, self.params.get(), src, src_lengths, key=key)

    def __call__(self, src: jax.Array, src_lengths: jax.Array, tgt_in: jax.Array, *,
                 key: jax.Array | None = None) -> jax.Array:
        """Teacher forcing: logits [B, T, V_tgt] from the true previous tokens tgt_in int[B, T], BOS first."""
        return patterns.teacher_forcing(self.spec, self.params.get(), src, src_lengths, tgt_in, key=key)

    def translate(self, src: jax.Array, src_lengths: jax.Array, max_len: int,
                  beam_size: int = 1) -> jax.Array:
        """Decoded tokens int32[B, max_len] (BOS dropped, `pad_id` after EOS): greedy for beam_size 1, else
        the best beam of `decoding.beam_search`."""
        return patterns.translate(self.spec, self.params.get(), src, src_lengths, max_len=max_len,
                                  bos_id=self.bos_id, eos_id=self.eos_id, pad_id=self.pad_id,
                                  beam_size=beam_size)
