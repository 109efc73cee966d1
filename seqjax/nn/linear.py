"""Dense layers, LayerNorm and the transformer MLP, with their parameters' roles declared (seqjax.nn.params).

`Dense` and `LayerNorm` are Flax's `nnx.Linear` and `nnx.LayerNorm` (same initialisation, same numerics)
whose parameters are re-declared as `Kernel` / `Bias` / `Norm`, so weight decay knows what each one is.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax.nn.params import Bias, Kernel, Norm

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": jax.nn.gelu,  # tanh approximation, as GPT-2 and ViT
    "gelu_exact": lambda x: jax.nn.gelu(x, approximate=False),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "tanh": jax.numpy.tanh,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


class Dense(nnx.Linear):
    """x [..., D] @ kernel [D, O] + bias [O]; LeCun-normal kernel, zero bias (nnx.Linear's defaults).

    axes: the logical names of the kernel's two axes (seqjax.nn.params.LOGICAL_AXES), e.g. ("embed", "mlp");
    the bias takes the second.
    """

    def __init__(self, in_features: int, out_features: int, *, axes: tuple[str, str | None],
                 use_bias: bool = True, rngs: nnx.Rngs):
        super().__init__(in_features, out_features, use_bias=use_bias, rngs=rngs)
        self.kernel = Kernel(self.kernel[...], axes)
        if use_bias:
            self.bias = Bias(self.bias[...], axes[1:])


class LayerNorm(nnx.LayerNorm):
    """(x - mean) / sqrt(var + epsilon) * scale + offset over the last axis of x [..., D]."""

    def __init__(self, num_features: int, *, epsilon: float, rngs: nnx.Rngs):
        super().__init__(num_features, epsilon=epsilon, rngs=rngs)
        self.scale = Norm(self.scale[...], ("embed",))
        self.bias = Norm(self.bias[...], ("embed",))

    def __call__(self, x: jax.Array, *args, **kwargs) -> jax.Array:
        """Normalised in f32 and returned in x's dtype: under a 16-bit compute policy (seqjax/precision.py)
        the statistics and the f32 scale/offset stay exact, and the next layer still gets 16-bit input."""
        y = super().__call__(x.astype(jnp.promote_types(x.dtype, jnp.float32)), *args, **kwargs)
        return y.astype(x.dtype)


class MLP(nnx.Module):
    """Position-wise feed-forward D -> F -> D: fc2(activation(fc1(x))). Sharding "mlp" is Megatron's column
    split of fc1 and row split of fc2."""

    def __init__(self, d_model: int, mlp_dim: int, *, activation_name: str, rngs: nnx.Rngs):
        self.activation = activation(activation_name)
        self.fc1 = Dense(d_model, mlp_dim, axes=("embed", "mlp"), rngs=rngs)
        self.fc2 = Dense(mlp_dim, d_model, axes=("mlp", "embed"), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(self.activation(self.fc1(x)))
