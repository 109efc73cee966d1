"""Vision Transformer (Dosovitskiy et al., 2021): images [B, height, width, C] -> logits [B, classes].

Glossary: P patches per image, (ph, pw) the patch size, (gh, gw) the patch grid, C image channels.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax.dropout import dropout, split_keys
from seqjax.models._transformer import ARGUMENT_DOCS, block_config
from seqjax.nn.blocks import Stack
from seqjax.nn.embedding import PositionEmbedding
from seqjax.nn.linear import Dense
from seqjax.nn.params import ClassToken

POOLINGS = ("cls", "mean")


def _pair(x) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else tuple(x)


def patchify(images: jax.Array, patch_size: int | tuple[int, int]) -> jax.Array:
    """images [B, height, width, C] -> patches [B, P, ph * pw * C], P = gh * gw, row-major patch order."""
    ph, pw = _pair(patch_size)
    if images.ndim != 4:
        raise ValueError(f"images: expected [B, height, width, channels], got {tuple(images.shape)}")
    B, H, W, C = images.shape
    if H % ph or W % pw:
        raise ValueError(f"images: height x width = {H} x {W} must be divisible by the patch size "
                         f"{ph} x {pw}")
    x = images.reshape(B, H // ph, ph, W // pw, pw, C)  # [B, gh, ph, gw, pw, C]
    x = x.transpose(0, 1, 3, 2, 4, 5)  # [B, gh, gw, ph, pw, C]
    return x.reshape(B, (H // ph) * (W // pw), ph * pw * C)


def unpatchify(patches: jax.Array, patch_size: int | tuple[int, int], height: int, width: int) -> jax.Array:
    """Inverse of `patchify`: patches [B, P, ph * pw * C] -> images [B, height, width, C]."""
    ph, pw = _pair(patch_size)
    if height % ph or width % pw:
        raise ValueError(f"height x width = {height} x {width} must be divisible by the patch size "
                         f"{ph} x {pw}")
    B, P, F = patches.shape
    gh, gw = height // ph, width // pw
    if P != gh * gw or F % (ph * pw):
        raise ValueError(f"patches: expected [B, {gh * gw}, ph * pw * C] for {height} x {width} images, "
                         f"got {tuple(patches.shape)}")
    C = F // (ph * pw)
    x = patches.reshape(B, gh, gw, ph, pw, C).transpose(0, 1, 3, 2, 4, 5)  # [B, gh, ph, gw, pw, C]
    return x.reshape(B, height, width, C)


class ViT(nnx.Module):
    """Patches of `patch_size` are linearly embedded, a class token is prepended, positions are added (a
    learned [1 + P, D] table, or fixed 2-D sin-cos with a zero vector for the class token: positions
    "learned" | "sincos2d"), and the class token's final state is classified (pooling="cls") or the patch
    states are averaged (pooling="mean").

    Data arguments: num_classes, image_size (height, width), channels. Config keys: the keyword arguments
    (dropout and kernel keys as for `seqjax.models.gpt.GPT`).
    """

    ARGUMENT_DOCS = ARGUMENT_DOCS  # the common keys' meanings (models/_transformer.py)

    def __init__(self, num_classes: int, image_size: int | tuple[int, int], channels: int, *,
                 patch_size: int = 16, d_model: int = 192, num_heads: int = 3, num_layers: int = 12,
                 mlp_dim: int = 768, positions: str = "learned", pooling: str = "cls",
                 embed_dropout: float = 0.0, residual_dropout: float = 0.0, attention_dropout: float = 0.0,
                 pre_ln: bool = True, activation: str = "gelu", layer_norm_epsilon: float = 1e-6,
                 remat: bool = False, attention_implementation: str = "auto", rngs: nnx.Rngs):
        """The config keys (arguments without a default come from the data).

        Args:
            patch_size: the side of the square patches (or a (height, width) pair); the image size must be a
                multiple.
            positions: "learned" (a [1 + P, D] table) or "sincos2d" (fixed 2-D sin-cos, zero for the class
                token).
            pooling: "cls" (the class token's final state) or "mean" (the mean of the patch states).
        """
        self.image_size, self.patch_size = _pair(image_size), _pair(patch_size)
        (H, W), (ph, pw) = self.image_size, self.patch_size
        if H % ph or W % pw:
            raise ValueError(f"image_size: {H} x {W} must be divisible by the patch size {ph} x {pw}")
        if positions not in ("learned", "sincos2d"):
            raise ValueError(f"positions: expected 'learned' or 'sincos2d', got {positions!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
        cfg = block_config(d_model=d_model, num_heads=num_heads, mlp_dim=mlp_dim, num_kv_heads=None,
                           residual_dropout=residual_dropout, attention_dropout=attention_dropout,
                           pre_ln=pre_ln, positions=positions, activation=activation,
                           layer_norm_epsilon=layer_norm_epsilon,
                           attention_implementation=attention_implementation)
        self.grid = (H // ph, W // pw)
        self.channels, self.pooling, self.embed_dropout = channels, pooling, embed_dropout
        self.patch_embed = Dense(ph * pw * channels, d_model, axes=("patch", "embed"), rngs=rngs)
        self.cls = ClassToken(jnp.zeros((d_model,)), ("embed",))
        num_patches = self.grid[0] * self.grid[1]
        self.pos = PositionEmbedding(positions, 1 + num_patches, d_model,
                                     grid=self.grid if positions == "sincos2d" else None, rngs=rngs)
        self.stack = Stack(cfg, num_layers, causal=False, cross_attention=False, remat=remat, rngs=rngs)
        self.head = Dense(d_model, num_classes, axes=("embed", "classes"), rngs=rngs)

    def __call__(self, images: jax.Array, *, key: jax.Array | None = None, return_attention: bool = False):
        """Returns logits [B, classes], or (logits, weights [L, B, N, 1 + P, 1 + P]) with return_attention."""
        if images.ndim != 4 or images.shape[1:] != (*self.image_size, self.channels):
            raise ValueError(f"images: expected [B, {self.image_size[0]}, {self.image_size[1]}, "
                             f"{self.channels}], got {tuple(images.shape)}")
        x = self.patch_embed(patchify(images, self.patch_size))  # [B, P, D]
        B, _, D = x.shape
        cls = jnp.broadcast_to(self.cls[...][None, None, :], (B, 1, D)).astype(x.dtype)
        x = self.pos(jnp.concatenate([cls, x], axis=1))  # [B, 1 + P, D]
        k_emb, k_stack = split_keys(key, 2)
        out = self.stack(dropout(x, self.embed_dropout, k_emb), key=k_stack,
                         return_attention=return_attention)
        h = out.x
        pooled = h[:, 0] if self.pooling == "cls" else jnp.mean(h[:, 1:], axis=1)
        logits = self.head(pooled)
        return (logits, out.weights["self"]) if return_attention else logits
