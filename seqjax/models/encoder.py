"""The bidirectional (BERT-style) transformer encoder, and a sequence classifier on top of it."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax import masks, patterns
from seqjax.dropout import split_keys
from seqjax.models._transformer import ARGUMENT_DOCS, TokenEmbedder, block_config, valid_or_all
from seqjax.nn.blocks import Stack
from seqjax.nn.linear import Dense
from seqjax.nn.params import ClassToken

POOLINGS = ("cls", "mean")


class Encoder(nnx.Module):
    """tokens int[B, T] (+ lengths or a padding mask) -> hidden states [B, T, D]; every position sees every
    valid position. Config keys as for `seqjax.models.gpt.GPT`."""

    ARGUMENT_DOCS = ARGUMENT_DOCS  # the common keys' meanings (models/_transformer.py)

    def __init__(self, vocab_size: int, *, d_model: int = 128, num_heads: int = 4, num_layers: int = 4,
                 mlp_dim: int = 512, max_len: int = 128, positions: str = "learned",
                 num_kv_heads: int | None = None, embed_dropout: float = 0.0, residual_dropout: float = 0.0,
                 attention_dropout: float = 0.0, pre_ln: bool = True, activation: str = "gelu",
                 layer_norm_epsilon: float = 1e-6, remat: bool = False,
                 attention_implementation: str = "auto", rngs: nnx.Rngs):
        cfg = block_config(d_model=d_model, num_heads=num_heads, mlp_dim=mlp_dim, num_kv_heads=num_kv_heads,
                           residual_dropout=residual_dropout, attention_dropout=attention_dropout,
                           pre_ln=pre_ln, positions=positions, activation=activation,
                           layer_norm_epsilon=layer_norm_epsilon,
                           attention_implementation=attention_implementation)
        self.vocab_size = vocab_size
        self.embedder = TokenEmbedder(vocab_size, cfg, positions=positions, max_len=max_len,
                                      embed_dropout=embed_dropout, rngs=rngs)
        self.stack = Stack(cfg, num_layers, causal=False, cross_attention=False, remat=remat, rngs=rngs)

    def encode_embeddings(self, x: jax.Array, valid: jax.Array, *, key=None, return_attention=False):
        """Token vectors x [B, T, D] (no positions yet), valid bool[B, T] -> (h [B, T, D], weights
        [L, B, N, T, T] or None)."""
        k_emb, k_stack = split_keys(key, 2)
        out = self.stack(self.embedder.add_positions(x, key=k_emb), masks.padding_mask(valid), key=k_stack,
                         return_attention=return_attention)
        return out.x, out.weights.get("self")

    def __call__(self, tokens: jax.Array, lengths: jax.Array | None = None, *, mask: jax.Array | None = None,
                 key: jax.Array | None = None, return_attention: bool = False):
        """Returns h [B, T, D], or (h, weights [L, B, N, T, T]) with return_attention."""
        valid = valid_or_all(lengths, mask, *tokens.shape)
        h, w = self.encode_embeddings(self.embedder.embed(tokens), valid, key=key,
                                      return_attention=return_attention)
        return (h, w) if return_attention else h


class TransformerClassifier(nnx.Module):
    """Encoder + pooling + linear head: tokens int[B, T], lengths int[B] -> logits [B, num_classes].

    pooling="cls": a learned [CLS] vector is prepended (the encoder sees T + 1 positions, so max_len must
    cover T + 1) and its output is classified; pooling="mean": the mean of the valid positions' outputs.
    """

    ARGUMENT_DOCS = ARGUMENT_DOCS  # the common keys' meanings (models/_transformer.py)

    def __init__(self, vocab_size: int, num_classes: int, *, pooling: str = "cls", d_model: int = 128,
                 num_heads: int = 4, num_layers: int = 4, mlp_dim: int = 512, max_len: int = 128,
                 positions: str = "learned", num_kv_heads: int | None = None, embed_dropout: float = 0.0,
                 residual_dropout: float = 0.0, attention_dropout: float = 0.0, pre_ln: bool = True,
                 activation: str = "gelu", layer_norm_epsilon: float = 1e-6, remat: bool = False,
                 attention_implementation: str = "auto", rngs: nnx.Rngs):
        """The config keys (arguments without a default come from the data).

        Args:
            pooling: "cls" (a learned [CLS] token is prepended and classified; max_len must cover T + 1) or
                "mean" (the mean of the valid positions).
        """
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
        self.encoder = Encoder(vocab_size, d_model=d_model, num_heads=num_heads, num_layers=num_layers,
                               mlp_dim=mlp_dim, max_len=max_len, positions=positions,
                               num_kv_heads=num_kv_heads,
                               embed_dropout=embed_dropout, residual_dropout=residual_dropout,
                               attention_dropout=attention_dropout, pre_ln=pre_ln, activation=activation,
                               layer_norm_epsilon=layer_norm_epsilon, remat=remat,
                               attention_implementation=attention_implementation, rngs=rngs)
        self.cls = ClassToken(jnp.zeros((d_model,)), ("embed",)) if pooling == "cls" else None
        self.head = Dense(d_model, num_classes, axes=("embed", "classes"), rngs=rngs)
        self.pooling = pooling

    def __call__(self, tokens: jax.Array, lengths: jax.Array | None = None, *, mask: jax.Array | None = None,
                 key: jax.Array | None = None, return_attention: bool = False):
        """Returns logits [B, C], or (logits, weights [L, B, N, T', T']) with return_attention (T' = T + 1
        with a [CLS] token)."""
        B, T = tokens.shape
        x = self.encoder.embedder.embed(tokens)  # [B, T, D]
        valid = valid_or_all(lengths, mask, B, T)
        if self.pooling == "cls":
            cls = jnp.broadcast_to(self.cls[...][None, None, :], (B, 1, x.shape[-1]))
            x = jnp.concatenate([cls.astype(x.dtype), x], axis=1)  # [B, 1 + T, D]
            valid = jnp.concatenate([jnp.ones((B, 1), bool), valid], axis=1)
        h, w = self.encoder.encode_embeddings(x, valid, key=key, return_attention=return_attention)
        pooled = h[:, 0] if self.pooling == "cls" else patterns.pool(h, mask=valid, method="mean")
        logits = self.head(pooled)
        return (logits, w) if return_attention else logits
