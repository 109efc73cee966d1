"""Named presets of the transformer models, for library users and the benchmarks.

    gpt = variants.build("gpt-char", rngs=nnx.Rngs(0))           # GPT(vocab_size=65, d_model=128, ...)
    vit = variants.build("vit-mnist", rngs=nnx.Rngs(0), residual_dropout=0.1)

A preset is a model name (seqjax.models.MODELS) and the arguments it fixes, data arguments included; keyword
overrides replace them. Experiments do not use presets: their config files declare every key.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from flax import nnx

from seqjax import models


class Variant(NamedTuple):
    model_name: str
    arguments: dict[str, Any]


VARIANTS: dict[str, Variant] = {
    # character-level GPT for Shakespeare (V = 65 characters): the model of the GPT benchmark
    "gpt-char": Variant("gpt", dict(vocab_size=65, d_model=128, num_heads=4, num_layers=4, mlp_dim=512,
                                    max_len=128)),
    "gpt-mini": Variant("gpt", dict(vocab_size=8192, d_model=256, num_heads=8, num_layers=6, mlp_dim=1024,
                                    max_len=256, num_kv_heads=2, positions="rope")),
    "bert-tiny": Variant("transformer_classifier", dict(num_classes=2, vocab_size=30522, d_model=128,
                                                        num_heads=2, num_layers=2, mlp_dim=512, max_len=512)),
    "encoder-small": Variant("encoder", dict(vocab_size=8192, d_model=256, num_heads=4, num_layers=4,
                                             mlp_dim=1024, max_len=256)),
    "seq2seq-small": Variant("encoder_decoder", dict(src_vocab_size=8000, tgt_vocab_size=8000, pad_id=0,
                                                     bos_id=1, eos_id=2, d_model=256, num_heads=4,
                                                     num_encoder_layers=3, num_decoder_layers=3, mlp_dim=1024,
                                                     max_src_len=128, max_tgt_len=128)),
    "vit-tiny": Variant("vit", dict(num_classes=1000, image_size=224, channels=3, patch_size=16, d_model=192,
                                    num_heads=3, num_layers=12, mlp_dim=768)),
    "vit-cifar": Variant("vit", dict(num_classes=10, image_size=32, channels=3, patch_size=4, d_model=192,
                                     num_heads=3, num_layers=6, mlp_dim=768, positions="sincos2d")),
    "vit-mnist": Variant("vit", dict(num_classes=10, image_size=28, channels=1, patch_size=7, d_model=64,
                                     num_heads=4, num_layers=4, mlp_dim=128)),
}


def build(name: str, *, rngs: nnx.Rngs, **overrides) -> nnx.Module:
    """Instantiate a named preset; keyword overrides replace its arguments (e.g. residual_dropout=0.1)."""
    if name not in VARIANTS:
        raise ValueError(f"name: unknown variant {name!r}; known: {sorted(VARIANTS)}")
    variant = VARIANTS[name]
    return models.get(variant.model_name)(**{**variant.arguments, **overrides}, rngs=rngs)
