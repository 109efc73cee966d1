"""Sequence classification with a recurrent network over learned token embeddings.

    model = RNNClassifier(vocab_size=16025, num_classes=2, unk_id=1, rngs=nnx.Rngs(0))
    logits = model(tokens, lengths, key=key)   # tokens int[B, T], lengths int[B] -> [B, num_classes]
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax import patterns
from seqjax.dropout import dropout, split_keys
from seqjax.nn import RNN, Dense, Embedding


class RNNClassifier(nnx.Module):
    """tokens [B, T], lengths [B] -> logits [B, num_classes]: embedding, (bi)directional RNN, pooling, dense.

    Pooling ("last" | "mean" | "max") covers each sequence's valid steps only (seqjax.patterns.pool); for a
    bidirectional "last" the backward half is its state after reading back to step 0. Embedding entries start
    N(0, embed_init^2). Regularisation, only when a key is given: `word_dropout` replaces training tokens
    (ids above `unk_id`) by `unk_id`; `embed_dropout` on the embeddings; `layer_dropout` between stacked
    layers; `recurrent_dropout` on h_{t-1} (one mask per sequence); `output_dropout` on the pooled vector.
    """

    def __init__(self, vocab_size: int, num_classes: int, unk_id: int, *, embed_dim: int = 128,
                 hidden_size: int = 128, cell: str = "lstm", num_layers: int = 1, bidirectional: bool = False,
                 pool: str = "last", embed_init: float = 1.0, word_dropout: float = 0.0,
                 embed_dropout: float = 0.0, layer_dropout: float = 0.0, recurrent_dropout: float = 0.0,
                 output_dropout: float = 0.0, rngs: nnx.Rngs):
        """The config keys (arguments without a default come from the data).

        Args:
            embed_dim: E, the width of the token embeddings.
            hidden_size: H, the width of every recurrent cell.
            cell: "rnn", "lstm" or "gru".
            num_layers: stacked recurrent layers.
            bidirectional: read each sequence both ways and concatenate the two directions.
            pool: how the outputs over the valid steps become one vector: "last", "mean" or "max".
            embed_init: standard deviation of the embedding entries at initialisation.
            word_dropout: probability that a training word becomes <unk>; training only.
            embed_dropout: dropout rate on the token embeddings; training only.
            layer_dropout: dropout rate between stacked layers (needs num_layers >= 2); training only.
            recurrent_dropout: variational dropout rate on h_{t-1}, one mask per sequence; training only.
            output_dropout: dropout rate on the pooled output before the classifier; training only.
        """
        if pool not in patterns.POOLS:
            raise ValueError(f"pool: expected one of {patterns.POOLS}, got {pool!r}")
        self.pool, self.bidirectional = pool, bool(bidirectional)
        self.unk_id, self.word_dropout = int(unk_id), float(word_dropout)
        self.embed_dropout, self.output_dropout = float(embed_dropout), float(output_dropout)
        self.embed = Embedding(vocab_size, embed_dim, init_scale=embed_init, rngs=rngs)
        self.rnn = RNN(embed_dim, hidden_size, cell=cell, num_layers=num_layers, bidirectional=bidirectional,
                       layer_dropout=layer_dropout, recurrent_dropout=recurrent_dropout, rngs=rngs)
        self.head = Dense(self.rnn.out_features, num_classes, axes=("hidden", "classes"), rngs=rngs)

    def __call__(self, tokens: jax.Array, lengths: jax.Array, *, key: jax.Array | None = None) -> jax.Array:
        if tokens.ndim != 2:
            raise ValueError(f"tokens: expected [B, T], got shape {tuple(tokens.shape)}")
        k_word, k_emb, k_rnn, k_out = split_keys(key, 4)
        if k_word is not None and self.word_dropout > 0:
            # Word dropout: during training some words become <unk>, so the model cannot lean on single rare
            # words and learns what an unknown word in context means.
            drop = jax.random.bernoulli(k_word, self.word_dropout, tokens.shape)
            tokens = jnp.where(drop & (tokens > self.unk_id), self.unk_id, tokens)
        x = dropout(self.embed(tokens), self.embed_dropout, k_emb)  # [B, T, E]
        ys, finals = self.rnn(x, lengths=lengths, key=k_rnn)  # [B, T, H'] (H' = 2H if bidirectional)
        if self.pool == "last" and self.bidirectional:
            # The backward direction ends at step 0: take both directions' final states, not ys at T-1.
            last = finals[-1]
            h = jnp.concatenate([last.forward.h, last.backward.h], axis=-1)  # [B, 2H]
        else:
            h = patterns.pool(ys, lengths=lengths, method=self.pool)  # [B, H']
        return self.head(dropout(h, self.output_dropout, k_out))  # [B, num_classes]
