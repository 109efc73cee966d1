"""Optimisers from the config: AdamW / Adam / SGD, warmup + decay schedules, clipping, a weight-decay mask.

Gradient accumulation is not an optax wrapper here: `train.py` splits each global batch into
`optim.accum_steps` micro-batches and sums their gradients with a `lax.scan` inside one jitted step. We chose
that over `optax.MultiSteps` because one train step then stays one optimiser update (schedules, logging,
checkpoints and the dropout key all count the same steps) and no half-accumulated gradient lives in the
optimiser state.

Mixed precision: parameters and optimiser state stay float32; the loss casts a bf16 copy of the floating
parameters (`cast_floating`) for the forward/backward pass, and gradients reach the f32 params via the cast.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

# A parameter whose path has a component containing one of these is never decayed, whatever its rank;
# "ln" only as a whole component or prefix ("ln", "ln_f"), as nanoGPT names its LayerNorms.
NO_DECAY_NAMES = ("bias", "scale", "norm")


def _path_names(path) -> list[str]:
    names = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                names.append(str(getattr(k, attr)).lower())
                break
    return names


def decay_mask(params: Any) -> Any:
    """True where weight decay applies: arrays of rank >= 2 whose path names no bias or norm scale.

    Embeddings (rank 2) are decayed, as in nanoGPT; biases and LayerNorm/RMSNorm scales (rank 1, or a path
    component containing "bias", "scale" or "norm") are not.
    """

    def decide(path, x):
        names = _path_names(path)
        named_off = any(any(n in name for n in NO_DECAY_NAMES) or name == "ln" or name.startswith("ln_")
                        for name in names)
        return bool(jnp.ndim(x) >= 2 and not named_off)

    return jax.tree_util.tree_map_with_path(decide, params)


def make_schedule(optim, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to `optim.lr` over `warmup_steps`, then cosine/linear decay to `lr*end_lr_factor`
    at `total_steps` (or constant)."""
    lr, warmup = float(optim.lr), int(optim.warmup_steps)
    end = lr * float(optim.get("end_lr_factor", 0.0))
    if warmup < 0 or warmup > total_steps:
        raise ValueError(f"optim.warmup_steps: expected 0 <= warmup_steps <= train.steps={total_steps}, "
                         f"got {warmup}")
    decay_steps = max(total_steps - warmup, 1)
    if optim.schedule == "cosine":
        decay = optax.cosine_decay_schedule(lr, decay_steps, alpha=end / lr if lr else 0.0)
    elif optim.schedule == "linear":
        decay = optax.linear_schedule(lr, end, decay_steps)
    elif optim.schedule == "constant":
        decay = optax.constant_schedule(lr)
    else:
        raise ValueError(f"optim.schedule: expected 'cosine', 'linear' or 'constant', got {optim.schedule!r}")
    if warmup == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def make_optimizer(optim, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(transformation, schedule): clip by global norm, then the named optimiser with the decay mask.

    For "sgd", weight decay is L2 added to the gradient before momentum (optax.add_decayed_weights);
    for "adamw" it is decoupled (Loshchilov & Hutter); "adam" ignores weight_decay.
    """
    schedule = make_schedule(optim, total_steps)
    wd = float(optim.weight_decay)
    if optim.name == "adamw":
        core = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=wd,
                           mask=decay_mask)
    elif optim.name == "adam":
        core = optax.adam(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps)
    elif optim.name == "sgd":
        momentum = float(optim.momentum) or None
        core = optax.sgd(schedule, momentum=momentum, nesterov=bool(optim.get("nesterov", False)))
        if wd:
            core = optax.chain(optax.add_decayed_weights(wd, mask=decay_mask), core)
    else:
        raise ValueError(f"optim.name: expected 'adamw', 'adam' or 'sgd', got {optim.name!r}")
    parts = []
    if optim.clip_norm:
        parts.append(optax.clip_by_global_norm(float(optim.clip_norm)))
    parts.append(core)
    return optax.chain(*parts), schedule


def cast_floating(tree: Any, dtype) -> Any:
    """Cast the floating-point leaves of `tree` to `dtype`; integer leaves (e.g. counters) are kept."""
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)
