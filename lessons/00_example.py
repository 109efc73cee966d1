# %% [markdown]
# # Example lesson (placeholder)
#
# A placeholder in jupytext "percent" format that exercises the docs build: text cells, code cells that
# print numbers, and a matplotlib figure. The real lessons replace it.

# %%
import jax.numpy as jnp

from seqjax import masks

valid = jnp.arange(5)[None, :] < jnp.array([[5], [3]])  # bool[B, T]
print(valid.astype(int))

# %% [markdown]
# A figure: the causal mask of 6 steps.

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(3, 3))
ax.imshow(jnp.tril(jnp.ones((6, 6))), cmap="Greys")
ax.set_title("causal mask")
fig.savefig("causal_mask.png", dpi=80)
print("saved causal_mask.png;", int(masks.padding_mask(valid).sum()), "valid query-key pairs")
