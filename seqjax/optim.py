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
import ml_collections
import optax

# Every optimiser's config keys: the shared ones, then its own (and no others: a key the optimiser would not
# read is an error, see check_fields).
SHARED_FIELDS = {"name": "adamw", "lr": 1e-3, "schedule": "cosine", "warmup_steps": 0, "end_lr_factor": 0.0,
                 "clip_norm": 1.0, "accum_steps": 1}
OPTIMIZER_FIELDS = {
    "adamw": {"b1": 0.9, "b2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    "adam": {"b1": 0.9, "b2": 0.999, "eps": 1e-8},
    "sgd": {"momentum": 0.9, "nesterov": False, "weight_decay": 0.0},
}

# What each key means (launch.py --show_config prints it beside the value).
FIELD_DOCS = {
    "name": "the optimiser: 'adamw' (decoupled weight decay), 'adam' or 'sgd' (L2 weight decay added to the "
            "gradient before momentum)",
    "lr": "peak learning rate (reached after warmup_steps)",
    "schedule": "decay after warmup: 'cosine' or 'linear' to lr * end_lr_factor at train.steps, or "
                "'constant'",
    "warmup_steps": "linear warmup from 0 to lr over this many steps",
    "end_lr_factor": "the learning rate at train.steps, as a fraction of lr (cosine and linear schedules)",
    "clip_norm": "clip gradients to this global norm before the optimiser (0 = no clipping)",
    "accum_steps": "micro-batches per step: each global batch is split in this many, their gradients "
                   "averaged before one update",
    "b1": "Adam's first-moment decay", "b2": "Adam's second-moment decay",
    "eps": "Adam's epsilon added to the root second moment",
    "weight_decay": "weight decay of the seqjax.nn.Kernel parameters (0 = none)",
    "momentum": "SGD momentum (0 = none)", "nesterov": "SGD with Nesterov momentum",
}


def optimizer_fields(name: str) -> ml_collections.ConfigDict:
    """The config section of optimiser `name` with its defaults (every key it reads, no other)."""
    if name not in OPTIMIZER_FIELDS:
        raise ValueError(f"optim.name: expected one of {sorted(OPTIMIZER_FIELDS)}, got {name!r}")
    return ml_collections.ConfigDict({**SHARED_FIELDS, "name": name, **OPTIMIZER_FIELDS[name]})


def check_fields(optim) -> None:
    """optim's keys must be exactly those of its optimiser: the shared ones plus its own."""
    if optim.name not in OPTIMIZER_FIELDS:
        raise ValueError(f"optim.name: expected one of {sorted(OPTIMIZER_FIELDS)}, got {optim.name!r}")
    expected = set(SHARED_FIELDS) | set(OPTIMIZER_FIELDS[optim.name])
    keys = set(optim.keys())
    if keys != expected:
        extra, missing = sorted(keys - expected), sorted(expected - keys)
        raise ValueError(f"optim: {optim.name!r} reads {sorted(OPTIMIZER_FIELDS[optim.name])} besides the "
                         f"shared keys" + (f"; it does not read {extra}" if extra else "")
                         + (f"; missing {missing}" if missing else "")
                         + " (start the config from configs.base(..., optimizer=NAME))")


def decay_mask(params: Any) -> Any:
    """True for the parameters weight decay applies to: those declared `seqjax.nn.Kernel` (dense, attention,
    recurrent and embedding kernels). Biases, norm scales and offsets, position tables and class tokens are
    never decayed. A parameter without a declared role (a plain `nnx.Param`) is an error, not a guess."""
    from flax import nnx

    from seqjax.nn.params import DECAYED_ROLES, UNDECAYED_ROLES

    def decide(path, variable):
        if isinstance(variable, DECAYED_ROLES):
            return True
        if isinstance(variable, UNDECAYED_ROLES):
            return False
        name = "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
        raise ValueError(f"weight decay: parameter {name!r} is a {type(variable).__name__} with no declared "
                         "role; create it as seqjax.nn.Kernel (decayed) or Bias / Norm / Position / "
                         "ClassToken")

    return jax.tree_util.tree_map_with_path(decide, params, is_leaf=lambda x: isinstance(x, nnx.Variable))


def make_schedule(optim, total_steps: int) -> optax.Schedule:
    """Linear warmup from 0 to `optim.lr` over `warmup_steps`, then cosine/linear decay to `lr*end_lr_factor`
    at `total_steps` (or constant)."""
    lr, warmup = float(optim.lr), int(optim.warmup_steps)
    end = lr * float(optim.end_lr_factor)
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
    for "adamw" it is decoupled (Loshchilov & Hutter); "adam" has no weight decay (no such key).
    """
    check_fields(optim)
    schedule = make_schedule(optim, total_steps)
    if optim.name == "adamw":
        core = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps,
                           weight_decay=float(optim.weight_decay),
                           mask=decay_mask if optim.weight_decay else None)
    elif optim.name == "adam":
        core = optax.adam(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps)
    elif optim.name == "sgd":
        momentum = float(optim.momentum) or None
        core = optax.sgd(schedule, momentum=momentum, nesterov=bool(optim.nesterov))
        if optim.weight_decay:
            core = optax.chain(optax.add_decayed_weights(float(optim.weight_decay), mask=decay_mask), core)
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
