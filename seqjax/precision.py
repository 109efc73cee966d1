"""Mixed precision as a policy (`train.precision`): what is stored in f32, what is computed in 16 bits, and
fp16's dynamic loss scaling.

| policy | params, optimiser state | matmuls, attention products | LayerNorm, softmax, loss | loss scaling |
|---|---|---|---|---|
| "f32"  | f32 | f32 | f32 | none |
| "bf16" | f32 | bf16, f32 accumulation | f32 | none (bf16 has f32's exponent range) |
| "fp16" | f32 | fp16, f32 accumulation | f32 | dynamic, below |

How each part holds: the train step casts the parameters to the compute dtype for the forward/backward pass
(`cast_params`), except the `Norm` role (LayerNorm scale and offset), and the batch's floating-point arrays
(`cast_batch`), so the model computes in 16 bits from its first layer; gradients reach the f32 parameters
through the cast. `nn.LayerNorm` normalises in f32 and returns its input's dtype; attention's softmax and its
products' accumulation are f32 on every seqjax path (`kernels.attention`, `kernels.blockwise`); the losses of
`seqjax.losses` upcast to f32.

fp16 (for GPUs without fast bf16, such as V100s) has a 5-bit exponent: gradients below 6e-8 flush to zero. The
loss is multiplied by a scale S before differentiation and the gradients divided by S after
(`unscale`); `with_loss_scale(tx)` wraps the optimiser so that its state carries S: after GROWTH_INTERVAL
consecutive steps with finite gradients S doubles; a step whose gradients hold an inf or NaN is SKIPPED
(parameters and optimiser state unchanged, the step counter still advances) and S halves (never below 1).
The scale lives in the optimiser state, so it is checkpointed and a resumed run continues with it.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

POLICIES = ("f32", "bf16", "fp16")
INITIAL_SCALE = 2.0 ** 15  # PyTorch's GradScaler starts at 2**16; one halving costs one skipped step
GROWTH_INTERVAL = 2000  # good steps before the scale doubles (GradScaler's default)
MIN_SCALE = 1.0


class Policy(NamedTuple):
    """name in POLICIES; compute_dtype None (f32) or the 16-bit dtype; loss_scaling: fp16's dynamic scale."""
    name: str
    compute_dtype: Any
    loss_scaling: bool

    def cast_params(self, params: Any) -> Any:
        """The floating-point parameters in the compute dtype, except `Norm` ones (LayerNorm stays f32)."""
        if self.compute_dtype is None:
            return params
        from flax import nnx

        from seqjax.nn.params import Norm

        def cast(variable):
            if isinstance(variable, Norm):
                return variable
            return jax.tree.map(self._cast, variable)

        return jax.tree.map(cast, params, is_leaf=lambda x: isinstance(x, nnx.Variable))

    def cast_batch(self, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """The batch's floating-point arrays (inputs, and regression targets: the losses upcast them again) in
        the compute dtype; integer tokens, labels, lengths and masks as they are."""
        return batch if self.compute_dtype is None else jax.tree.map(self._cast, batch)

    def _cast(self, x):
        return x.astype(self.compute_dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x


def policy(name: str) -> Policy:
    """The Policy called `name` (the value of train.precision)."""
    if name not in POLICIES:
        raise ValueError(f"train.precision: expected one of {', '.join(map(repr, POLICIES))}, got {name!r}")
    dtype = {"f32": None, "bf16": jnp.bfloat16, "fp16": jnp.float16}[name]
    return Policy(name, dtype, name == "fp16")


F32 = policy("f32")


# ----------------------------------------------------------------------------------- dynamic loss scaling


class LossScaleState(NamedTuple):
    scale: jax.Array  # f32 [], the factor the loss is multiplied by
    good_steps: jax.Array  # int32 [], consecutive steps with finite gradients since the last change
    inner: optax.OptState  # the wrapped optimiser's state


def with_loss_scale(tx: optax.GradientTransformation, policy_: Policy,
                    initial_scale: float = INITIAL_SCALE,
                    growth_interval: int = GROWTH_INTERVAL) -> optax.GradientTransformation:
    """`tx` as it is without loss scaling; with it, `tx` behind the dynamic loss scale (see the module doc).

    The wrapped update takes UNSCALED gradients (`unscale` first) and replaces
        if all_finite(grads): updates, inner = tx.update(grads, inner, params); good += 1
                              if good == growth_interval: scale *= 2; good = 0
        else:                 updates = 0; inner unchanged; scale = max(scale / 2, 1); good = 0
    """
    if not policy_.loss_scaling:
        return tx

    def init(params):
        return LossScaleState(jnp.asarray(initial_scale, jnp.float32), jnp.zeros((), jnp.int32),
                              tx.init(params))

    def update(grads, state, params=None):
        finite = all_finite(grads)
        safe = jax.tree.map(lambda g: jnp.where(finite, g, jnp.zeros_like(g)), grads)  # no NaN in the moments
        updates, inner = tx.update(safe, state.inner, params)
        updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), updates)
        inner = jax.tree.map(lambda new, old: jnp.where(finite, new, old), inner, state.inner)
        good = jnp.where(finite, state.good_steps + 1, 0)
        grow = good >= growth_interval
        scale = jnp.where(finite, jnp.where(grow, state.scale * 2.0, state.scale),
                          jnp.maximum(state.scale * 0.5, MIN_SCALE))
        return updates, LossScaleState(scale, jnp.where(grow, 0, good).astype(jnp.int32), inner)

    return optax.GradientTransformation(init, update)


def all_finite(tree: Any) -> jax.Array:
    """bool []: no inf or NaN in any leaf."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def loss_scale(opt_state: Any) -> jax.Array:
    """The current scale (f32 []) of an optimiser state made by `with_loss_scale`; 1 without loss scaling."""
    return opt_state.scale if isinstance(opt_state, LossScaleState) else jnp.ones((), jnp.float32)


def unscale(grads: Any, scale: jax.Array) -> Any:
    """Gradients of (loss * scale) -> gradients of loss, in f32."""
    return jax.tree.map(lambda g: g.astype(jnp.float32) / scale, grads)


def step_metrics(opt_state: Any, grads: Any) -> dict[str, jax.Array]:
    """The loss-scale metrics of a step ({} without loss scaling): the scale used and whether it skipped."""
    if not isinstance(opt_state, LossScaleState):
        return {}
    return {"loss_scale": opt_state.scale, "skipped": 1.0 - all_finite(grads).astype(jnp.float32)}
