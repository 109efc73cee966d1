"""Transformer models for the experiments, built from `config.model` fields on seqjax.transformer's modules.

- `char_gpt(cfg, vocab_size, rngs)`: decoder-only character LM (tokens [B, T] -> logits [B, T, V]);
  `sample_chars` continues a prompt past the position table with a sliding KV-cached window.
- `sentiment_classifier(cfg, vocab_size, rngs)`: encoder + CLS/mean pooling, `(tokens, lengths, key=None)
  -> logits [B, 2]` (the interface of seqjax.tasks.sentiment).
- `g2p_transformer(cfg, src_vocab, tgt_vocab, rngs)`: encoder-decoder with `(src, src_lengths, tgt_in,
  key=None) -> logits [B, T, V]` and `generate(src, src_lengths, max_len, beam_size=1) -> tokens [B, max_len]`
  (the interface of seqjax.tasks.g2p).
- `vit(cfg, num_classes, image_shape, rngs)`: Vision Transformer, images [B, H, W, C] -> logits [B, classes].

Config fields read (with defaults): d_model, num_heads, num_layers (num_encoder_layers / num_decoder_layers
for G2P), mlp_dim, dropout, attention_dropout (0), positions ("learned"), max_len, pool ("cls" | "mean"),
patch_size (ViT), remat (False).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax import transformer


def _get(cfg, name, default):
    return cfg.get(name, default) if hasattr(cfg, "get") else getattr(cfg, name, default)


def char_gpt(cfg, vocab_size: int, rngs: nnx.Rngs) -> transformer.DecoderOnly:
    """Decoder-only LM over `vocab_size` characters with tied input/output embeddings."""
    return transformer.DecoderOnly(
        vocab_size, int(cfg.d_model), int(cfg.num_heads), int(cfg.num_layers), int(cfg.mlp_dim),
        int(_get(cfg, "max_len", 128)), positions=_get(cfg, "positions", "learned"),
        dropout_rate=float(_get(cfg, "dropout", 0.0)),
        attention_dropout_rate=float(_get(cfg, "attention_dropout", 0.0)),
        remat=bool(_get(cfg, "remat", False)), rngs=rngs)


def sample_chars(model: transformer.DecoderOnly, prompt_ids, length: int, *, key: jax.Array | None = None,
                 temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None) -> np.ndarray:
    """`length` new token ids int32[length] continuing prompt_ids int[T0], with KV-cached decoding.

    The position table holds max_len tokens, so text longer than that is generated in windows: each window
    re-reads (prefills) the last max_len // 2 tokens as context and generates up to max_len + 1 - context new
    ones with the cache. Window shapes repeat, so decoding compiles at most twice. Equivalent loop:

        for i in range(length): ids.append(sample(model(ids[-max_len:])[-1]))   # up to the window restarts
    """
    ids = [int(i) for i in np.asarray(prompt_ids).reshape(-1)]
    if not ids:
        raise ValueError("prompt_ids: need at least one token to condition on")
    if length < 0:
        raise ValueError(f"length: must be >= 0, got {length}")
    T = model.max_len
    keep = max(1, T // 2)
    out: list[int] = []
    window = 0
    while len(out) < length:
        context = (ids + out)[-keep:] if (window > 0 or len(ids) > T) else ids
        n_new = T + 1 - len(context)  # fills the cache: len(context) + n_new - 1 == T
        chunk_key = None if key is None else jax.random.fold_in(key, window)
        tokens = model.generate(jnp.asarray([context], jnp.int32), n_new, key=chunk_key,
                                temperature=temperature, top_k=top_k, top_p=top_p)
        out.extend(int(t) for t in np.asarray(tokens)[0, len(context):])
        window += 1
    return np.asarray(out[:length], dtype=np.int32)


def sentiment_classifier(cfg, vocab_size: int, rngs: nnx.Rngs) -> transformer.TransformerClassifier:
    """Encoder classifier `(tokens [B, T], lengths [B], key=None) -> logits [B, 2]`."""
    return transformer.TransformerClassifier(
        int(_get(cfg, "num_classes", 2)), vocab_size, int(cfg.d_model), int(cfg.num_heads),
        int(cfg.num_layers), int(cfg.mlp_dim), int(_get(cfg, "max_len", 128)),
        pooling=_get(cfg, "pool", "cls"), positions=_get(cfg, "positions", "learned"),
        dropout_rate=float(_get(cfg, "dropout", 0.0)),
        attention_dropout_rate=float(_get(cfg, "attention_dropout", 0.0)), rngs=rngs)


def _vocab_size(vocab) -> int:
    return vocab if isinstance(vocab, (int, np.integer)) else len(vocab)


class G2PTransformer(nnx.Module):
    """Encoder-decoder with the G2P task's interface; ids as in tokenize.CharVocab: pad 0, bos 1, eos 2."""

    def __init__(self, cfg, src_vocab_size: int, tgt_vocab_size: int, *, pad_id: int = 0, bos_id: int = 1,
                 eos_id: int = 2, rngs: nnx.Rngs):
        self.net = transformer.EncoderDecoder(
            src_vocab_size, tgt_vocab_size, int(cfg.d_model), int(cfg.num_heads), int(cfg.num_encoder_layers),
            int(cfg.num_decoder_layers), int(cfg.mlp_dim), int(_get(cfg, "max_src_len", 32)),
            int(_get(cfg, "max_tgt_len", 48)), positions=_get(cfg, "positions", "learned"),
            dropout_rate=float(_get(cfg, "dropout", 0.0)),
            attention_dropout_rate=float(_get(cfg, "attention_dropout", 0.0)), rngs=rngs)
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.alpha = float(_get(cfg, "length_penalty", 0.6))

    def __call__(self, src: jax.Array, src_lengths: jax.Array, tgt_in: jax.Array, *,
                 key: jax.Array | None = None) -> jax.Array:
        """Teacher forcing: src int[B, S], src_lengths int[B], tgt_in int[B, T] (BOS first) -> [B, T, V]."""
        return self.net(src, tgt_in, src_lengths, key=key)

    def attention(self, src, src_lengths, tgt_in):
        """(logits, {"encoder": [L, B, N, S, S], "self": [L, B, N, T, T], "cross": [L, B, N, T, S]})."""
        return self.net(src, tgt_in, src_lengths, return_attention=True)

    def generate(self, src: jax.Array, src_lengths: jax.Array, max_len: int, beam_size: int = 1) -> jax.Array:
        """Decoded target ids int32[B, max_len] (BOS dropped; pad after EOS): greedy, or the best beam."""
        out = self.net.generate(src, src_lengths, max_new_tokens=max_len, bos_id=self.bos_id,
                                eos_id=self.eos_id, pad_id=self.pad_id, beam_size=beam_size, alpha=self.alpha)
        if beam_size > 1:
            sequences, _ = out  # [B, W, 1 + max_len], best beam first
            return sequences[:, 0, 1:]
        return out[:, 1:]


def g2p_transformer(cfg, src_vocab, tgt_vocab, rngs: nnx.Rngs) -> G2PTransformer:
    """src_vocab / tgt_vocab: vocabulary sizes or tokenize.CharVocab objects (whose special ids are used)."""
    ids = {}
    for name in ("pad_id", "bos_id", "eos_id"):
        value = getattr(tgt_vocab, name, None)
        if value is not None:
            ids[name] = int(value)
    return G2PTransformer(cfg, _vocab_size(src_vocab), _vocab_size(tgt_vocab), rngs=rngs, **ids)


def vit(cfg, num_classes: int, image_shape: tuple[int, int, int], rngs: nnx.Rngs) -> transformer.ViT:
    """ViT for images of image_shape (H, W, C), patch size cfg.patch_size."""
    H, W, C = image_shape
    return transformer.ViT(
        num_classes, (H, W), int(cfg.d_model), int(cfg.num_heads), int(cfg.num_layers), int(cfg.mlp_dim),
        patch_size=int(cfg.patch_size), channels=C, positions=_get(cfg, "positions", "learned"),
        pooling=_get(cfg, "pool", "cls"), dropout_rate=float(_get(cfg, "dropout", 0.0)),
        attention_dropout_rate=float(_get(cfg, "attention_dropout", 0.0)),
        remat=bool(_get(cfg, "remat", False)), rngs=rngs)
