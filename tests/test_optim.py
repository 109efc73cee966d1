"""Optimisers, schedules, the weight-decay mask and casting, each against a hand-written NumPy reference."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from seqjax import optim
from seqjax.nn import Bias, ClassToken, Kernel, Norm, Position


def optim_cfg(name: str = "adamw", **kw) -> ml_collections.ConfigDict:
    o = optim.optimizer_fields(name)
    for k, v in kw.items():
        o[k] = v
    return o


def np_params(rng):
    return {"dense": {"kernel": rng.normal(size=(2, 3)).astype(np.float32),
                      "bias": rng.normal(size=(3,)).astype(np.float32)},
            "norm": {"scale": rng.normal(size=(3,)).astype(np.float32)}}


ROLES = {"dense": {"kernel": Kernel, "bias": Bias}, "norm": {"scale": Norm}}
AXES = {"dense": {"kernel": ("embed", "mlp"), "bias": ("mlp",)}, "norm": {"scale": ("mlp",)}}


def with_roles(tree) -> nnx.State:
    """The NumPy tree as an NNX state whose leaves carry their roles (what weight decay reads)."""
    return nnx.State({a: {b: ROLES[a][b](jnp.asarray(x), AXES[a][b]) for b, x in d.items()}
                      for a, d in tree.items()})


def values(state) -> dict:
    return {a: {b: np.asarray(v[...]) for b, v in d.items()} for a, d in state.items()}


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
def test_schedule_matches_formula(kind):
    lr, warmup, total, end = 0.1, 3, 13, 0.1
    cfg = optim_cfg(lr=lr, warmup_steps=warmup, schedule=kind, end_lr_factor=end)
    sched = optim.make_schedule(cfg, total)
    for s in range(total + 1):
        if s < warmup:
            want = lr * s / warmup
        else:
            p = (s - warmup) / (total - warmup)
            want = {"cosine": lr * (end + (1 - end) * 0.5 * (1 + np.cos(np.pi * p))),
                    "linear": lr + (lr * end - lr) * p, "constant": lr}[kind]
        np.testing.assert_allclose(float(sched(s)), want, rtol=1e-5, atol=1e-7, err_msg=f"step {s}")


def test_schedule_errors():
    with pytest.raises(ValueError, match="optim.schedule"):
        optim.make_schedule(optim_cfg(schedule="step"), 10)
    with pytest.raises(ValueError, match="optim.warmup_steps"):
        optim.make_schedule(optim_cfg(warmup_steps=20), 10)
    with pytest.raises(ValueError, match="optim.name"):
        optim.make_optimizer(optim_cfg(name="lion"), 10)


def test_adamw_two_steps_with_clipping_and_masked_decay():
    rng = np.random.default_rng(0)
    p0 = np_params(rng)
    grads = [jax.tree.map(lambda x: 3 * rng.normal(size=x.shape).astype(np.float32), p0) for _ in range(2)]
    lr, b1, b2, eps, wd, clip = 0.05, 0.8, 0.9, 1e-6, 0.3, 1.0
    cfg = optim_cfg(name="adamw", lr=lr, b1=b1, b2=b2, eps=eps, weight_decay=wd, clip_norm=clip,
                    schedule="constant")
    tx, _ = optim.make_optimizer(cfg, 10)
    params = with_roles(p0)
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(with_roles(g), state, params)
        params = jax.tree.map(jnp.add, params, updates)
    params = values(params)

    # NumPy reference.
    decay = {"dense": {"kernel": 1.0, "bias": 0.0}, "norm": {"scale": 0.0}}
    p = {k: dict(v) for k, v in p0.items()}
    m = jax.tree.map(np.zeros_like, p0)
    v = jax.tree.map(np.zeros_like, p0)
    for t, g in enumerate(grads, start=1):
        norm = np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree.leaves(g)))
        scale = min(1.0, clip / norm)
        for a in p:
            for b in p[a]:
                gi = g[a][b] * scale
                m[a][b] = b1 * m[a][b] + (1 - b1) * gi
                v[a][b] = b2 * v[a][b] + (1 - b2) * gi * gi
                mhat, vhat = m[a][b] / (1 - b1**t), v[a][b] / (1 - b2**t)
                p[a][b] = p[a][b] - lr * (mhat / (np.sqrt(vhat) + eps) + wd * decay[a][b] * p[a][b])
    for a in p:
        for b in p[a]:
            np.testing.assert_allclose(np.asarray(params[a][b]), p[a][b], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{a}.{b}")


def test_sgd_momentum_with_l2_decay_and_warmup():
    rng = np.random.default_rng(1)
    p0 = np_params(rng)
    grads = [jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), p0) for _ in range(3)]
    lr, mu, wd, warmup = 0.1, 0.9, 0.01, 2
    cfg = optim_cfg(name="sgd", lr=lr, momentum=mu, weight_decay=wd, clip_norm=0.0, schedule="constant",
                    warmup_steps=warmup)
    tx, _ = optim.make_optimizer(cfg, 10)
    params = with_roles(p0)
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(with_roles(g), state, params)
        params = jax.tree.map(jnp.add, params, updates)
    params = values(params)

    decay = {"dense": {"kernel": 1.0, "bias": 0.0}, "norm": {"scale": 0.0}}
    for a in p0:
        for b in p0[a]:
            p, trace = p0[a][b].copy(), np.zeros_like(p0[a][b])
            for step, g in enumerate(grads):
                trace = (g[a][b] + wd * decay[a][b] * p) + mu * trace
                p = p - lr * min(1.0, step / warmup) * trace
            np.testing.assert_allclose(np.asarray(params[a][b]), p, rtol=1e-5, atol=1e-6, err_msg=f"{a}.{b}")


def test_adam_has_no_weight_decay_key():
    """Adam reads no weight_decay: a config that sets one is an error, not a silently ignored key."""
    with pytest.raises(ValueError, match=r"'adam' reads .* it does not read \['weight_decay'\]"):
        optim.make_optimizer(optim_cfg(name="adam", weight_decay=0.5, schedule="constant"), 10)
    assert "weight_decay" not in optim.optimizer_fields("adam")


def test_decay_mask_by_role_not_by_name():
    """Roles decide, whatever the names: a Kernel called "bias" is decayed, a Bias called "kernel" is not."""
    square = ("embed", "embed")
    params = nnx.State({"embed": {"table": Kernel(jnp.zeros((5, 4)), ("vocab", "embed"))},
                        "odd": {"bias": Kernel(jnp.zeros((4, 4)), square),
                                "kernel": Bias(jnp.zeros((4, 4)), square)},
                        "ln_f": {"scale": Norm(jnp.zeros((4,)), ("embed",))},
                        "pos": {"table": Position(jnp.zeros((8, 4)), ("length", "embed"))},
                        "cls": ClassToken(jnp.zeros((4,)), ("embed",))})
    mask = optim.decay_mask(params)
    assert {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(mask)[0]} == {
        "['cls']": False, "['embed']['table']": True, "['ln_f']['scale']": False, "['odd']['bias']": True,
        "['odd']['kernel']": False, "['pos']['table']": False}


def test_a_parameter_without_a_role_is_an_error_under_weight_decay():
    class M(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(3, 4, rngs=rngs)  # flax's own layer: plain nnx.Param, no role

    _, params, _ = nnx.split(M(nnx.Rngs(0)), nnx.Param, ...)
    with pytest.raises(ValueError, match=r"parameter 'dense/(kernel|bias)' is a Param with no declared role"):
        optim.decay_mask(params)
    tx, _ = optim.make_optimizer(optim_cfg(weight_decay=0.0), 10)  # no decay: no role needed
    tx.init(params)


def test_cast_floating_keeps_integers():
    tree = {"w": jnp.ones((2,), jnp.float32), "count": jnp.zeros((), jnp.int32)}
    out = optim.cast_floating(tree, jnp.bfloat16)
    assert out["w"].dtype == jnp.bfloat16 and out["count"].dtype == jnp.int32
