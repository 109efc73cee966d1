"""What the transformer models share: the token + position embedding front end and its checks.

How the transformers' parameters are sharded (GPT, Encoder, TransformerClassifier, EncoderDecoder, ViT). Each
parameter names its axes where it is created (seqjax.nn.params.LOGICAL_AXES); `train.sharding_rules` maps
them onto the axes of `train.mesh` (seqjax/sharding.py). Under the default rules
`embed:fsdp,vocab:tensor,heads:tensor,kv_heads:tensor,mlp:tensor`:

| parameter                | shape             | logical axes                | fsdp splits | tensor splits |
|--------------------------|-------------------|-----------------------------|-------------|---------------|
| token table              | [V, D]            | vocab, embed                | D           | V             |
| learned positions        | [T_max, D]        | length, embed               | D           | -             |
| attention wq             | [L, D, N, K]      | layers, embed, heads, kv    | D           | N (columns)   |
| attention wk, wv         | [L, D, M, K]      | layers, embed, kv_heads, kv | D           | M (columns)   |
| attention wo             | [L, N, K, D]      | layers, heads, kv, embed    | D           | N (rows)      |
| biases bq / bk, bv / bo  | [L, N, K] / ...   | (layers, heads, kv) / ...   | bo: D       | bq: N; bk: M  |
| MLP fc1 kernel, bias     | [L, D, F], [L, F] | layers, embed, mlp          | kernel: D   | F (columns)   |
| MLP fc2 kernel, bias     | [L, F, D], [L, D] | layers, mlp, embed          | D           | F (rows)      |
| LayerNorm scale, offset  | [L, D] or [D]     | (layers,) embed             | D           | -             |
| untied head kernel, bias | [D, V], [V]       | embed, vocab                | D           | V             |
| classifier head          | [D, C], [C]       | embed, classes              | D           | -             |
| ViT patch embedding      | [ph pw C, D]      | patch, embed                | D           | -             |
| class token              | [D]               | embed                       | D           | -             |

"layers" is never split (the layer scan reads one layer at a time). An axis whose size the mesh axes do not
divide stays whole (e.g. a 65-character vocabulary under tensor:2); `sharding.state_shardings` lists them.
The recurrent models name their axes too (embed, hidden, gates, attention, vocab, classes), and only "embed"
and "vocab" of their parameters follow the default rules.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax import decoding, masks, positional
from seqjax.dropout import dropout
from seqjax.nn.blocks import BlockConfig
from seqjax.nn.embedding import Embedding, PositionEmbedding

# Embedding tables start N(0, 0.02^2), as GPT-2 and BERT.
EMBED_INIT_SCALE = 0.02


# The meaning of every transformer model's common config keys, in one place (configs.argument_docs reads a
# class's ARGUMENT_DOCS; `--show_config` and the config reference print them).
ARGUMENT_DOCS = {
    "d_model": 'D, the model width.',
    "num_heads": 'N, attention heads (N divides D).',
    "num_layers": 'L, transformer blocks.',
    "num_encoder_layers": 'L of the encoder.',
    "num_decoder_layers": 'L of the decoder.',
    "mlp_dim": "F, the hidden width of each block's MLP.",
    "max_len": 'the length of the position table: the longest sequence the model reads.',
    "max_src_len": "the longest source sequence (the encoder's position table).",
    "max_tgt_len": "the longest target sequence (the decoder's position table and cache).",
    "positions": '"learned", "sinusoidal" or "rope" (rotary, applied inside attention).',
    "num_kv_heads": 'M, key/value heads for grouped-query attention (None: M = N).',
    "embed_dropout": 'dropout rate on the token (+ position) embeddings; training only.',
    "residual_dropout": "dropout rate on each residual branch's output; training only.",
    "attention_dropout": 'dropout rate on the attention weights; training only.',
    "pre_ln": ('LayerNorm before each branch, x + f(LN(x)) (GPT-2, ViT); False: LN(x + f(x)) (the original '
              'Transformer).'),
    "activation": 'the MLP activation: "gelu" (tanh approximation), "gelu_exact", "relu", "silu" or "tanh".',
    "layer_norm_epsilon": 'added to the variance in every LayerNorm.',
    "tie_embeddings": 'the output layer is the token embedding table transposed (no separate head).',
    "remat": "recompute each layer's activations in the backward pass: less memory, more compute.",
    "attention_implementation": ('the attention kernel: "auto" (cuDNN on GPU / splash on TPU where their '
                                 'constraints hold, else by the size of the scores), "xla", "xla_autodiff", '
                                 '"blockwise", "jax", "cudnn" or "splash" '
                                 '(seqjax.attention.dot_product_attention).'),
}

class TokenEmbedder(nnx.Module):
    """tokens int[B, T] -> token embedding + positions, then `embed_dropout` (active iff key): [B, T, D]."""

    def __init__(self, vocab_size: int, cfg: BlockConfig, *, positions: str, max_len: int,
                 embed_dropout: float, rngs: nnx.Rngs):
        self.embed = Embedding(vocab_size, cfg.d_model, init_scale=EMBED_INIT_SCALE, rngs=rngs)
        self.pos = PositionEmbedding(positions, max_len, cfg.d_model, rngs=rngs)
        self.embed_dropout = embed_dropout

    def add_positions(self, x: jax.Array, *, offset=0, key: jax.Array | None = None) -> jax.Array:
        """Token vectors x [B, T, D] -> with positions and embedding dropout."""
        return dropout(self.pos(x, offset), self.embed_dropout, key)

    def __call__(self, tokens: jax.Array, *, offset=0, key: jax.Array | None = None) -> jax.Array:
        return self.add_positions(self.embed(tokens), offset=offset, key=key)


def block_config(*, d_model: int, num_heads: int, mlp_dim: int, num_kv_heads: int | None,
                 residual_dropout: float, attention_dropout: float, pre_ln: bool, positions: str,
                 activation: str, layer_norm_epsilon: float, attention_implementation: str) -> BlockConfig:
    return BlockConfig(d_model=d_model, num_heads=num_heads, mlp_dim=mlp_dim, num_kv_heads=num_kv_heads,
                       residual_dropout=residual_dropout, attention_dropout=attention_dropout, pre_ln=pre_ln,
                       rope=positions == "rope", activation=activation, layer_norm_epsilon=layer_norm_epsilon,
                       attention_implementation=attention_implementation)


def check_cache_room(cache: decoding.KVCache, t: int) -> None:
    """t new tokens must fit the stacked cache [L, B, S_max, M, K]; the index is checked when concrete."""
    S_max = cache.k.shape[2]
    positional.check_length(t, S_max, "tokens (cache)")
    if not isinstance(cache.index, jax.core.Tracer) and int(cache.index[0]) + t > S_max:
        raise ValueError(f"tokens: writing {t} positions at index {int(cache.index[0])} exceeds the cache "
                         f"length S_max = {S_max}")


def valid_or_all(lengths: jax.Array | None, mask: jax.Array | None, B: int, T: int,
                 name: str = "lengths") -> jax.Array:
    """Padding validity bool[B, T] from lengths or mask (validated, at most one), all True when neither."""
    valid = masks.valid_mask(lengths, mask, B, T, name)
    return jnp.ones((B, T), bool) if valid is None else valid
