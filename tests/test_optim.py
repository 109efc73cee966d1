"""Optimisers, schedules, the weight-decay mask and casting, each against a hand-written NumPy reference."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from seqjax import configs, optim


def optim_cfg(**kw) -> ml_collections.ConfigDict:
    o = configs.base().optim
    for k, v in kw.items():
        o[k] = v
    return o


def np_params(rng):
    return {"dense": {"kernel": rng.normal(size=(2, 3)).astype(np.float32),
                      "bias": rng.normal(size=(3,)).astype(np.float32)},
            "norm": {"scale": rng.normal(size=(3,)).astype(np.float32)}}


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
    params = jax.tree.map(jnp.asarray, p0)
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, params)
        params = jax.tree.map(jnp.add, params, updates)

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
    params = jax.tree.map(jnp.asarray, p0)
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, params)
        params = jax.tree.map(jnp.add, params, updates)

    decay = {"dense": {"kernel": 1.0, "bias": 0.0}, "norm": {"scale": 0.0}}
    for a in p0:
        for b in p0[a]:
            p, trace = p0[a][b].copy(), np.zeros_like(p0[a][b])
            for step, g in enumerate(grads):
                trace = (g[a][b] + wd * decay[a][b] * p) + mu * trace
                p = p - lr * min(1.0, step / warmup) * trace
            np.testing.assert_allclose(np.asarray(params[a][b]), p, rtol=1e-5, atol=1e-6, err_msg=f"{a}.{b}")


def test_adam_ignores_weight_decay():
    rng = np.random.default_rng(2)
    p0 = jax.tree.map(jnp.asarray, np_params(rng))
    g = jax.tree.map(lambda x: jnp.ones_like(x), p0)
    outs = []
    for wd in (0.0, 0.5):
        tx, _ = optim.make_optimizer(optim_cfg(name="adam", weight_decay=wd, schedule="constant"), 10)
        outs.append(tx.update(g, tx.init(p0), p0)[0])
    for x, y in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1]), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_decay_mask_by_rank_and_name():
    tree = {"embed": {"embedding": np.zeros((5, 4))}, "ln_f": {"weight2d": np.zeros((4, 4))},
            "attn": {"kernel": np.zeros((4, 2, 2)), "bias": np.zeros((2, 2))},
            "block": {"scale": np.zeros((4, 4)), "vector": np.zeros((4,))}}
    assert optim.decay_mask(tree) == {"embed": {"embedding": True}, "ln_f": {"weight2d": False},
                                      "attn": {"kernel": True, "bias": False},
                                      "block": {"scale": False, "vector": False}}


def test_decay_mask_on_nnx_params():
    class M(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(3, 4, rngs=rngs)
            self.norm = nnx.LayerNorm(4, rngs=rngs)

    _, params, _ = nnx.split(M(nnx.Rngs(0)), nnx.Param, ...)
    flat = {jax.tree_util.keystr(p): v for p, v in
            jax.tree_util.tree_flatten_with_path(optim.decay_mask(params))[0]}
    by_name = {k.split("]")[0] + "]" + k.split("]")[1] + "]": v for k, v in flat.items()}
    assert by_name == {"['dense']['kernel']": True, "['dense']['bias']": False,
                       "['norm']['scale']": False, "['norm']['bias']": False}


def test_cast_floating_keeps_integers():
    tree = {"w": jnp.ones((2,), jnp.float32), "count": jnp.zeros((), jnp.int32)}
    out = optim.cast_floating(tree, jnp.bfloat16)
    assert out["w"].dtype == jnp.bfloat16 and out["count"].dtype == jnp.int32
