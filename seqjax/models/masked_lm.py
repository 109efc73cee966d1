"""BERT-style masked language model: the transformer `Encoder` with a [MASK] input vector and an MLM head.

    model = MaskedLM(vocab_size=V, d_model=64, num_layers=2, rngs=nnx.Rngs(0))
    corrupted, targets = corruption.mlm_corrupt(key, tokens, valid, mask_id=model.mask_id, vocab_size=V, ...)
    logits = model(corrupted, lengths)                       # [B, T, V]; the loss is taken where targets

Transfer to `TransformerClassifier`: both keep their encoder under the name `encoder` with the same arguments,
so `train.init_from=<MLM workdir>` with `train.init_from_params="encoder"` loads exactly the encoder's
parameters (embedding table, positions, blocks, final norm). To keep the embedding table [V, D] identical to
the classifier's, [MASK] is not a row of it: `mask_id` is V (one past the vocabulary) and its input vector is
the separate parameter `mask_token`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax.models._transformer import ARGUMENT_DOCS, EMBED_INIT_SCALE, valid_or_all
from seqjax.models.encoder import Encoder
from seqjax.nn.linear import Dense, LayerNorm
from seqjax.nn.linear import activation as activation_fn
from seqjax.nn.params import Bias, ClassToken


class MaskedLM(nnx.Module):
    """tokens int[B, T] in [0, V] (V = `mask_id`) + lengths or a padding mask -> logits [B, T, V].

    Head (Devlin et al., 2019): dense D -> D, the activation, LayerNorm, then the tied embedding table
    transposed plus an output bias. Config keys: as for `seqjax.models.encoder.TransformerClassifier` without
    pooling.
    """

    ARGUMENT_DOCS = ARGUMENT_DOCS  # the common keys' meanings (models/_transformer.py)

    def __init__(self, vocab_size: int, *, d_model: int = 128, num_heads: int = 4, num_layers: int = 4,
                 mlp_dim: int = 512, max_len: int = 128, positions: str = "learned",
                 num_kv_heads: int | None = None, embed_dropout: float = 0.0, residual_dropout: float = 0.0,
                 attention_dropout: float = 0.0, pre_ln: bool = True, activation: str = "gelu",
                 layer_norm_epsilon: float = 1e-6, remat: bool = False,
                 attention_implementation: str = "auto", rngs: nnx.Rngs):
        self.encoder = Encoder(vocab_size, d_model=d_model, num_heads=num_heads, num_layers=num_layers,
                               mlp_dim=mlp_dim, max_len=max_len, positions=positions,
                               num_kv_heads=num_kv_heads, embed_dropout=embed_dropout,
                               residual_dropout=residual_dropout, attention_dropout=attention_dropout,
                               pre_ln=pre_ln, activation=activation, layer_norm_epsilon=layer_norm_epsilon,
                               remat=remat, attention_implementation=attention_implementation, rngs=rngs)
        self.vocab_size = self.mask_id = vocab_size
        # [MASK]'s input vector, drawn like an embedding row (a zero vector would be a position-only input).
        self.mask_token = ClassToken(EMBED_INIT_SCALE * jax.random.normal(rngs.params(), (d_model,)),
                                     ("embed",))
        # D -> D: the input splits as "embed" does; the output stays whole (a LayerNorm over D follows).
        self.transform = Dense(d_model, d_model, axes=("embed", None), rngs=rngs)
        self.activation = activation_fn(activation)
        self.transform_norm = LayerNorm(d_model, epsilon=layer_norm_epsilon, rngs=rngs)
        self.output_bias = Bias(jnp.zeros((vocab_size,)), ("vocab",))

    def hidden(self, tokens: jax.Array, lengths: jax.Array | None = None, *, mask: jax.Array | None = None,
               key: jax.Array | None = None) -> jax.Array:
        """The encoder's output h [B, T, D], [MASK] (id V) read as `mask_token`."""
        valid = valid_or_all(lengths, mask, *tokens.shape)
        is_mask = tokens == self.mask_id
        x = self.encoder.embedder.embed(jnp.where(is_mask, 0, tokens))  # [B, T, D]
        x = jnp.where(is_mask[..., None], self.mask_token[...].astype(x.dtype), x)
        h, _ = self.encoder.encode_embeddings(x, valid, key=key)
        return h

    def head(self, h: jax.Array) -> jax.Array:
        """Hidden states h [..., D] -> logits [..., V]. Training applies it to the targets' rows only: at V
        in the tens of thousands and D = 64 this [D, V] product costs far more than the encoder."""
        logits = self.encoder.embedder.embed.attend(self.transform_norm(self.activation(self.transform(h))))
        return logits + self.output_bias[...].reshape((1,) * (logits.ndim - 1) + (-1,))

    def __call__(self, tokens: jax.Array, lengths: jax.Array | None = None, *, mask: jax.Array | None = None,
                 key: jax.Array | None = None) -> jax.Array:
        return self.head(self.hidden(tokens, lengths, mask=mask, key=key))
