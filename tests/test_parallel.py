"""1 device vs 4 simulated CPU devices, jit over a mesh and pmap: the same params after a few steps."""
import os
import shutil

import jax
import numpy as np
import pytest
from helpers_train import assert_params_equal, final_params, toy_config
from jax.sharding import PartitionSpec as P

from seqjax import optim, parallel, train
from seqjax.data.iterators import ArrayIterator
from seqjax.task import build_task


def run_steps(mode: str, config, steps: int = 4, devices=None):
    task = build_task(config)
    tx, schedule = optim.make_optimizer(config.optim, config.train.steps)
    graphdef, state = train.init_state(config, task, tx)
    axis = parallel.DATA_AXIS if mode == "pmap" else None
    train_fn = train.make_train_step(task, graphdef, tx, schedule, accum_steps=config.optim.accum_steps,
                                     axis_name=axis)
    eval_fn = train.make_eval_step(task, graphdef, axis_name=axis)
    runner = parallel.make_runner(mode, train_fn, eval_fn, devices)
    state = runner.place_state(state)
    it = ArrayIterator(task.data()["train"], config.train.batch_size, seed=config.seed)
    losses = []
    for _ in range(steps):
        batch = runner.place_batch(next(it))
        state, metrics = runner.train_step(state, batch, jax.random.PRNGKey(config.seed))
        losses.append(float(runner.one_copy(metrics)["loss"]))
    val = train.evaluate_split(runner, state, task.data()["val"], 8)
    params = jax.device_get(runner.one_copy(state).params)
    return runner, params, losses, val


def assert_trees_close(a, b, atol=1e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=atol)


def test_four_devices_are_simulated():
    assert jax.device_count() == 4


def test_mesh_and_pmap_match_one_device():
    config = toy_config()
    one, ref, ref_losses, ref_val = run_steps("none", config)
    assert one.num_devices == 1  # "none" is the mesh over one device
    for mode in ("mesh", "pmap"):
        runner, params, losses, val = run_steps(mode, config)
        assert runner.num_devices == 4
        assert_trees_close(params, ref)
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
        assert val == pytest.approx(ref_val, rel=1e-5)


def test_mesh_matches_one_device_with_dropout_and_accumulation():
    # Under the mesh the dropout key covers the global batch, so even dropout masks agree with one device.
    config = toy_config(**{"model.output_dropout": 0.3, "optim.accum_steps": 2})
    _, ref, _, _ = run_steps("none", config)
    _, params, _, _ = run_steps("mesh", config)
    assert_trees_close(params, ref)


def test_mesh_state_is_replicated_and_batch_sharded():
    config = toy_config()
    runner, _, _, _ = run_steps("mesh", config, steps=1)
    batch = runner.place_batch({"x": np.zeros((8, 4, 3), np.float32)})
    assert batch["x"].sharding.spec == P(parallel.DATA_AXIS)
    shards = batch["x"].addressable_shards
    assert len(shards) == 4 and shards[0].data.shape == (2, 4, 3)
    with pytest.raises(ValueError, match="train.batch_size: 6 is not divisible by the batch.s shards"):
        parallel.check_batch_divides(6, 4)


def test_pmap_run_end_to_end_matches_mesh_run_and_resumes_exactly(tmp_path):
    config = toy_config(**{"train.steps": 4, "train.checkpoint_every": 2})
    config.train.parallel = "pmap"
    pmap_dir = str(tmp_path / "pmap")
    train.train_and_evaluate(config, pmap_dir)
    want = final_params(pmap_dir)
    # A checkpoint restores to one device; the pmap state must still reach every device.
    shutil.rmtree(os.path.join(pmap_dir, "checkpoints", "4"))
    assert train.train_and_evaluate(config, pmap_dir)["steps"] == 4
    assert_params_equal(final_params(pmap_dir), want, exact=True)
    config.train.parallel = "mesh"
    train.train_and_evaluate(config, str(tmp_path / "mesh"))
    a, b = final_params(pmap_dir), final_params(str(tmp_path / "mesh"))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("saved, resumed", [("mesh", "none"), ("pmap", "mesh")])
def test_a_checkpoint_resumes_on_another_device_count(tmp_path, saved, resumed):
    """A checkpoint holds one host copy of the state, so 4 devices (mesh or pmap) may hand over to 1 or to
    another layout (train.parallel may change on resume) and finish as the uninterrupted run does."""
    config = toy_config(**{"train.steps": 4, "train.checkpoint_every": 2, "train.parallel": saved})
    workdir = str(tmp_path)
    train.train_and_evaluate(config, workdir)
    want = final_params(workdir)
    shutil.rmtree(os.path.join(workdir, "checkpoints", "4"))  # as if stopped after step 2
    config.train.parallel = resumed
    assert train.train_and_evaluate(config, workdir)["steps"] == 4
    got = final_params(workdir)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
