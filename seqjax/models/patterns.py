"""Five small recurrent models, one per input/output pattern, trained together (seqjax/tasks/patterns.py).

    model = PatternModels(seq_len=8, vocab_size=13, pad_id=0, bos_id=1, eos_id=2, rngs=nnx.Rngs(0))
"""
from __future__ import annotations

import jax
from flax import nnx

from seqjax import patterns, scan
from seqjax.cells import Cell
from seqjax.models.rnn_seq2seq import RNNSeq2Seq
from seqjax.nn import Dense, ParamTree


class PatternModels(nnx.Module):
    """Five independent sub-models, each a cell of `hidden_size` H and a readout:

    one-to-one (a cell step over a length-1 sequence, a classifier), one-to-many (the same input at every one
    of `seq_len` steps, a linear readout per step), many-to-one (one-hot bits, the last valid output,
    seq_len + 1 count classes), many-to-many aligned (one-hot digits, a classifier per step), and an
    encoder-decoder (`RNNSeq2Seq`: unidirectional encoder, Luong dot attention, E = 16) over `vocab_size`
    tokens with the given special ids. No dropout: `key` is accepted for the common interface and unused.
    """

    def __init__(self, seq_len: int, vocab_size: int, pad_id: int, bos_id: int, eos_id: int, *,
                 hidden_size: int = 32, cell: str = "gru", rngs: nnx.Rngs):
        """The config keys (arguments without a default come from the data).

        Args:
            hidden_size: H, the width of every recurrent cell.
            cell: "rnn", "lstm" or "gru".
        """
        self.seq_len = int(seq_len)
        self.cell = Cell(cell)
        H = hidden_size
        self.o2o = ParamTree(self.cell.init(rngs.params(), 2, H))
        self.o2o_head = Dense(H, 2, axes=("hidden", "classes"), rngs=rngs)
        self.o2m = ParamTree(self.cell.init(rngs.params(), 3, H))
        self.o2m_head = Dense(H, 1, axes=("hidden", "classes"), rngs=rngs)
        self.m2o = ParamTree(self.cell.init(rngs.params(), 2, H))
        self.m2o_head = Dense(H, self.seq_len + 1, axes=("hidden", "classes"), rngs=rngs)
        self.m2m = ParamTree(self.cell.init(rngs.params(), 10, H))
        self.m2m_head = Dense(H, 10, axes=("hidden", "classes"), rngs=rngs)
        self.s2s = RNNSeq2Seq(vocab_size, vocab_size, pad_id, bos_id, eos_id, embed_dim=16, hidden_size=H,
                              cell=cell, attention="dot", bidirectional=False, rngs=rngs)

    def one_to_one(self, x: jax.Array, *, key=None) -> jax.Array:
        """x [B, 2] -> logits [B, 2]."""
        ys, _ = scan.unroll(self.cell, self.o2o.get(), x[:, None, :])  # [B, 1, H]
        return self.o2o_head(ys[:, 0])

    def one_to_many(self, x: jax.Array, *, key=None) -> jax.Array:
        """x [B, 3] -> wave [B, T]."""
        ys, _ = patterns.one_to_many(self.cell, self.o2m.get(), x, self.seq_len,
                                     feedback="fixed")  # [B, T, H]
        return self.o2m_head(ys)[..., 0]

    def many_to_one(self, bits: jax.Array, lengths: jax.Array, *, key=None) -> jax.Array:
        """bits int[B, T], lengths [B] -> logits [B, T + 1] over the count of ones."""
        h = patterns.many_to_one(self.cell, self.m2o.get(), jax.nn.one_hot(bits, 2), lengths=lengths)
        return self.m2o_head(h)

    def many_to_many(self, digits: jax.Array, lengths: jax.Array, *, key=None) -> jax.Array:
        """digits int[B, T], lengths [B] -> logits [B, T, 10] (one classification per step)."""
        ys, _ = patterns.many_to_many(self.cell, self.m2m.get(), jax.nn.one_hot(digits, 10), lengths=lengths)
        return self.m2m_head(ys)

    def seq2seq(self, src: jax.Array, src_lengths: jax.Array, tgt_in: jax.Array, *, key=None) -> jax.Array:
        """Teacher forcing: logits [B, T, V]."""
        return self.s2s(src, src_lengths, tgt_in, key=key)

    def translate(self, src: jax.Array, src_lengths: jax.Array, max_len: int) -> jax.Array:
        """Greedy decoding: int32[B, max_len], padding after EOS."""
        return self.s2s.translate(src, src_lengths, max_len)
