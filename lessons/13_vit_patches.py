# %% [markdown]
# # 13 Vision Transformer: images as sequences of patches
#
# A transformer reads sequences, so the Vision Transformer cuts an image into a grid of patches and
# flattens each patch into one token: a 28 x 28 image in 7 x 7 patches is a 4 x 4 grid, P = 16 tokens of
# 7 * 7 * 1 = 49 pixels each. A linear layer then embeds each token into D, and the rest is an encoder.

# %%
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax.models.vit import ViT, patchify, unpatchify

# A synthetic 28 x 28 grey image [B, height, width, C]: a bright diagonal stroke on a gradient.
rows, cols = np.mgrid[0:28, 0:28]
image = (cols / 27.0 * 0.3 + (np.abs(rows - cols) < 3) * 0.7).astype(np.float32)
images = jnp.asarray(image)[None, :, :, None]  # [1, 28, 28, 1]
print("images [B, height, width, C] =", images.shape)

patches = patchify(images, 7)  # [B, P, ph * pw * C]
print("patches [B, P, ph * pw * C] =", patches.shape, " grid (gh, gw) = (4, 4)")
mean_grid = np.asarray(patches[0].mean(axis=-1)).reshape(4, 4)  # each patch's mean brightness
print("patch grid (mean brightness per patch, row-major order):")
print(np.round(mean_grid, 2))

# %% [markdown]
# `unpatchify` puts the patches back: the round trip is exact (a reshape and a transpose, no arithmetic).

# %%
back = unpatchify(patches, 7, 28, 28)
print("round trip exact:", bool(jnp.array_equal(back, images)))

# %% [markdown]
# A tiny ViT: the P = 16 patch tokens plus a class token, an encoder, and a classifier on the class token.

# %%
vit = ViT(10, 28, 1, patch_size=7, d_model=8, num_heads=2, num_layers=2, mlp_dim=32, rngs=nnx.Rngs(0))
logits = vit(images)
print("ViT logits [B, classes] =", logits.shape)
print("class probabilities (untrained) sum to", round(float(jax.nn.softmax(logits).sum()), 4))
