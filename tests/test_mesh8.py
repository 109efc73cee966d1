"""Sharded training on 8 simulated CPU devices: the GPT and the encoder-decoder train alike (with dropout) on
one device and on data, fsdp and tensor meshes; fsdp:8 holds 1/8 of every sharded parameter and Adam moment
per device; eval, generate and beam search run on a sharded model; checkpoints reshard between meshes.

Needs 8 devices: tests/test_sharding.py runs this file in a subprocess with SEQJAX_TEST_CPU_DEVICES=8 (the
4-device session skips it).
"""
import functools

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from helpers_train import ROOT  # noqa: F401 - puts the repository root (experiments/) on the path

from seqjax import checkpoint as ckpt_lib
from seqjax import optim, parallel, sharding, train
from seqjax.data.iterators import ArrayIterator
from seqjax.nn.params import axes_of
from seqjax.task import build_task

pytestmark = pytest.mark.skipif(jax.device_count() != 8, reason="needs 8 devices (tests/test_sharding.py)")

MESHES = ("data:8", "fsdp:8", "data:4,tensor:2", "data:2,fsdp:2,tensor:2")
STEPS = 5


@functools.cache
def setup(name: str):
    """(config, task) of a tiny GPT or encoder-decoder experiment with every dropout on."""
    if name == "gpt":
        from experiments import char_gpt as experiment
    else:
        from experiments import g2p_transformer as experiment
    config = experiment.get_config("smoke")
    config.model.embed_dropout = config.model.residual_dropout = config.model.attention_dropout = 0.1
    config.train.batch_size = 8
    return config, build_task(config)


@functools.cache
def steps_of(name: str):
    """(graphdef, make, abstract state, train_fn, eval_fn): one set of functions for every mesh, so jax traces
    each once."""
    config, task = setup(name)
    tx, schedule = optim.make_optimizer(config.optim, config.train.steps)
    graphdef, make = train.state_initializer(config, task, tx)
    return (graphdef, make, jax.eval_shape(make), train.make_train_step(task, graphdef, tx, schedule),
            train.make_eval_step(task, graphdef))


@functools.cache
def run(name: str, mesh: str | None, steps: int = STEPS):
    """(runner, state, losses, graphdef) after `steps` steps on `mesh` (None: one device); each run once."""
    config, task = setup(name)
    graphdef, make, abstract, train_fn, eval_fn = steps_of(name)
    runner = parallel.make_runner("none" if mesh is None else "mesh", train_fn, eval_fn,
                                  mesh=mesh or "data:-1", rules=config.train.sharding_rules,
                                  abstract_state=abstract)
    state = runner.create_state(make)
    it = ArrayIterator(task.data()["train"], config.train.batch_size, seed=config.seed)
    losses = []
    for _ in range(steps):
        state, metrics = runner.train_step(state, runner.place_batch(next(it)), jax.random.PRNGKey(0))
        losses.append(float(metrics["loss"]))
    return runner, state, losses, graphdef


def reference(name: str):
    return run(name, None)


def assert_trees_close(a, b, what: str):
    """Every leaf but the attention key biases bk, whose gradient is zero up to rounding (softmax over keys
    ignores the q . bk it adds to every score of a query): Adam scales that rounding noise, which differs
    with the order of the sums, to full-size steps."""
    flat_b = jax.tree.leaves(b)
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], flat_b, strict=True):
        name = jax.tree_util.keystr(path)
        if "['bk']" not in name:
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=2e-6,
                                       err_msg=f"{what} {name}")


@pytest.mark.parametrize("name", ["gpt", "encoder_decoder"])
def test_every_mesh_trains_as_one_device(name):
    _, ref_state, ref_losses, _ = reference(name)
    for mesh in MESHES:
        runner, state, losses, _ = run(name, mesh)
        np.testing.assert_allclose(losses, ref_losses, rtol=2e-5, err_msg=mesh)
        assert_trees_close(state.params, ref_state.params, mesh)
        assert_trees_close(state.opt_state, ref_state.opt_state, mesh)
        shardings = jax.tree.leaves(runner.state_sharding)
        specs = {s.spec for s in shardings}
        if mesh == "data:8":  # a data-only mesh replicates the whole state
            assert specs == {jax.sharding.PartitionSpec()}
        else:
            assert len(specs) > 1, mesh
        for leaf, want in zip(jax.tree.leaves(state), shardings, strict=True):  # kept as created
            assert leaf.sharding.is_equivalent_to(want, leaf.ndim), mesh


def _sharded_fsdp_leaves(tree):
    """(path, array) of each variable in `tree` whose logical axes include "embed" (fsdp's by the rules)."""
    out = []
    is_variable = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    for path, v in jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_variable)[0]:
        if isinstance(v, nnx.Variable) and "embed" in (axes_of(v) or ()):
            out.append((jax.tree_util.keystr(path), v.get_value()))
    return out


@pytest.mark.parametrize("name", ["gpt", "encoder_decoder"])
def test_fsdp8_holds_an_eighth_of_every_sharded_parameter_and_adam_moment(name):
    _, state, _, _ = run(name, "fsdp:8")
    is_adam = lambda x: isinstance(x, optax.ScaleByAdamState)  # noqa: E731
    adam, = [s for s in jax.tree.leaves(state.opt_state, is_leaf=is_adam) if is_adam(s)]
    groups = {"params": state.params, "mu": adam.mu, "nu": adam.nu}
    for group, tree in groups.items():
        leaves = _sharded_fsdp_leaves(tree)
        assert leaves, group
        for path, a in leaves:
            shards = a.addressable_shards
            assert len(shards) == 8, path
            assert all(s.data.size * 8 == a.size for s in shards), (group, path, a.sharding.spec)
    per_device = sharding.bytes_per_device(state)
    total = sum(leaf.nbytes for leaf in jax.tree.leaves(state))
    assert max(per_device.values()) < total / 4  # most of the state is split 8 ways


def test_eval_generate_and_beam_search_run_on_a_sharded_model():
    mesh = "data:2,fsdp:2,tensor:2"
    for name in ("gpt", "encoder_decoder"):
        config, task = setup(name)
        ref_runner, ref_state, _, graphdef = reference(name)
        runner, state, _, _ = run(name, mesh)
        val = train.evaluate_split(runner, state, task.data()["val"], 8, 2)
        assert val == pytest.approx(train.evaluate_split(ref_runner, ref_state, task.data()["val"], 8, 2),
                                    rel=2e-5)
        sharded = nnx.merge(graphdef, state.params, state.rest)
        one = nnx.merge(graphdef, ref_state.params, ref_state.rest)
        assert any(len(p.sharding.device_set) == 8 and not p.sharding.is_fully_replicated
                   for p in jax.tree.leaves(nnx.state(sharded, nnx.Param)))
        if name == "gpt":
            prompt = np.asarray(task.data()["val"]["tokens"][:2, :4])
            np.testing.assert_array_equal(sharded.generate(prompt, 4), one.generate(prompt, 4))
        else:
            split = task.data()["val"]
            src, lengths = np.asarray(split["src"][:2]), np.asarray(split["src_lengths"][:2])
            seqs, scores = sharded.generate(src, lengths, max_new_tokens=4, beam_size=2)
            want_seqs, want_scores = one.generate(src, lengths, max_new_tokens=4, beam_size=2)
            np.testing.assert_array_equal(seqs, want_seqs)
            np.testing.assert_allclose(scores, want_scores, rtol=1e-5)


def _state_on(mesh: str, devices, host_state, abstract_state, rules: str):
    device_mesh = sharding.make_mesh(mesh, devices)
    return parallel.place(host_state, sharding.state_shardings(abstract_state, device_mesh,
                                                                sharding.parse_rules(rules)))


@pytest.mark.parametrize("saved, restored", [
    (("fsdp:4", slice(0, 4)), ("data:2", slice(4, 6))),
    (("data:2", slice(4, 6)), ("fsdp:4", slice(0, 4))),
    (("data:8", slice(0, 8)), ("data:1", slice(3, 4))),
    (("data:1", slice(3, 4)), ("data:8", slice(0, 8))),
])
def test_a_checkpoint_restores_onto_another_mesh_bitwise(tmp_path, saved, restored):
    config, _ = setup("gpt")
    abstract = steps_of("gpt")[2]
    _, ref_state, _, _ = reference("gpt")  # trained: Adam moments are not zeros
    host = jax.device_get(ref_state)
    rules = config.train.sharding_rules
    devices = jax.devices()
    source = _state_on(saved[0], devices[saved[1]], host, abstract, rules)
    target = _state_on(restored[0], devices[restored[1]], host, abstract, rules)
    checkpoints = ckpt_lib.Checkpoints(str(tmp_path), async_save=False)
    checkpoints.save(3, source, {"iterator": {}}, wait=True)
    step, state, _ = checkpoints.restore_latest(ckpt_lib.abstract_tree(target))
    checkpoints.close()
    assert step == 3
    for got, want, placed in zip(jax.tree.leaves(state), jax.tree.leaves(host), jax.tree.leaves(target),
                                 strict=True):
        assert got.sharding == placed.sharding  # onto the target mesh's shardings
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    sharded_side = source if "fsdp" in saved[0] else state if "fsdp" in restored[0] else None
    if sharded_side is not None:
        assert any(not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(sharded_side))
