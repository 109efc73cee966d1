"""seqjax.precision: 16-bit compute policies track f32 on a smoke experiment; fp16's loss scale skips a step
whose gradients overflow and halves, and doubles after its interval of good steps."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers_train import toy_config

from seqjax import optim, precision, train
from seqjax.models.gpt import GPT
from seqjax.task import build_task

STEPS = 6


@functools.cache  # one run per policy for the whole module (each compiles a train step)
def _toy_run(policy_name: str, steps: int = STEPS + 2, poison_step: int | None = STEPS):
    """Losses, final state and [(state before, state after, metrics)] of `steps` train steps of the toy smoke
    experiment under a policy; the batch of step `poison_step` gets an inf in its inputs (so its gradients
    are not finite). The tracking test reads the steps before it."""
    config = toy_config()
    task = build_task(config)
    policy = precision.policy(policy_name)
    tx, schedule = optim.make_optimizer(config.optim, config.train.steps)
    tx = precision.with_loss_scale(tx, policy)
    graphdef, state = train.init_state(config, task, tx)
    step = jax.jit(train.make_train_step(task, graphdef, tx, schedule, policy=policy))
    data = task.data()["train"]
    losses, history = [], []
    for i in range(steps):
        batch = {k: jnp.asarray(v[8 * i:8 * i + 8]) for k, v in data.items()}
        if i == poison_step:
            batch["x"] = batch["x"].at[0, 0, 0].set(jnp.inf)
        before = state
        state, metrics = step(state, batch, jax.random.PRNGKey(0))
        losses.append(float(metrics["loss"]))
        history.append((before, state, metrics))
    return np.array(losses), state, history


def test_bf16_and_fp16_policies_track_the_f32_run_with_f32_params_and_optimiser_state():
    """Tolerance: every step's loss within 3e-2 relative of the f32 run's (measured: <= 1e-2)."""
    f32 = _toy_run("f32")[0][:STEPS]
    for name in ("bf16", "fp16"):
        losses, _, history = _toy_run(name)
        np.testing.assert_allclose(losses[:STEPS], f32, rtol=3e-2)
        assert not np.allclose(losses[:STEPS], f32, rtol=1e-7)  # really computed in 16 bits
        state = history[STEPS - 1][1]
        for leaf in jax.tree.leaves((state.params, state.opt_state)):
            assert leaf.dtype in (jnp.float32, jnp.int32), (name, leaf.dtype)


def test_transformer_policy_keeps_layer_norm_and_loss_in_f32_and_tracks_f32():
    """A tiny GPT: the cast leaves LayerNorm's Norm params f32 and the Kernels 16-bit; the loss is within 1e-3
    relative of f32 and the gradient (all leaves, relative L2 norm of the difference) within 8e-2 under bf16
    (measured 4.2e-2: 8 significant bits) and 2e-2 under fp16 (measured 5.3e-3: 11 bits)."""
    model = GPT(11, d_model=16, num_heads=2, num_layers=1, mlp_dim=32, max_len=8, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 8), 0, 11)

    def loss(params, policy):
        logits = nnx.merge(graphdef, policy.cast_params(params))(tokens[:, :-1])
        assert logits.dtype == (policy.compute_dtype or jnp.float32)
        labels = tokens[:, 1:]
        return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()

    def norm(tree):
        return float(jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree))))

    def value_and_grad(policy):
        return jax.jit(jax.value_and_grad(functools.partial(loss, policy=policy)))(params)

    l32, g32 = value_and_grad(precision.F32)
    for name, tolerance in (("bf16", 8e-2), ("fp16", 2e-2)):
        policy = precision.policy(name)
        kinds = {type(v).__name__: v[...].dtype for v in jax.tree.leaves(
            policy.cast_params(params), is_leaf=lambda x: isinstance(x, nnx.Variable))}
        assert kinds["Norm"] == jnp.float32 and kinds["Kernel"] == policy.compute_dtype
        l16, g16 = value_and_grad(policy)
        assert abs(float(l16) - float(l32)) < 1e-3 * abs(float(l32))
        assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(g16))
        err = norm(jax.tree.map(jnp.subtract, g16, g32)) / norm(g32)
        assert 1e-5 < err < tolerance, (name, err)


def test_fp16_overflow_skips_the_update_and_halves_the_scale():
    _, _, history = _toy_run("fp16")
    (_, first, m0), (before, after, m1), (_, _, m2) = history[STEPS - 1:]
    assert float(m0["skipped"]) == 0.0 and float(m1["skipped"]) == 1.0 and float(m2["skipped"]) == 0.0
    assert float(before.opt_state.scale) == precision.INITIAL_SCALE
    assert float(after.opt_state.scale) == precision.INITIAL_SCALE / 2
    assert int(after.opt_state.good_steps) == 0 and int(before.opt_state.good_steps) == STEPS
    for a, b in zip(jax.tree.leaves((after.params, after.opt_state.inner)),
                    jax.tree.leaves((before.params, before.opt_state.inner)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # skipped: nothing moved
    assert int(after.step) == int(before.step) + 1
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(first.params),
                                                        jax.tree.leaves(history[STEPS - 1][0].params),
                                                        strict=True))  # the step before did move


def test_loss_scale_grows_after_its_interval_and_never_drops_below_one():
    tx = precision.with_loss_scale(optax.sgd(0.1), precision.policy("fp16"), initial_scale=2.0,
                                   growth_interval=2)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    good, bad = {"w": jnp.ones(3)}, {"w": jnp.array([1.0, jnp.nan, 1.0])}
    scales = []
    for grads in (good, good, good, bad, bad, bad):
        updates, state = tx.update(grads, state, params)
        scales.append(float(state.scale))
    assert scales == [2.0, 4.0, 4.0, 2.0, 1.0, 1.0]
    np.testing.assert_array_equal(np.asarray(updates["w"]), 0.0)
    sgd = optax.sgd(0.1)
    assert precision.with_loss_scale(sgd, precision.policy("bf16")) is sgd  # no scaling but fp16's
    with pytest.raises(ValueError, match="train.precision: expected one of"):
        precision.policy("fp8")
