"""Logical axes on every parameter, the mesh and rule strings of the config, the shardings they give, a run
that resumes on another mesh, and (in a subprocess with 8 simulated devices) tests/test_mesh8.py."""
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx
from helpers_train import ROOT, final_params, launch_env, toy_config
from jax.sharding import PartitionSpec as P

from seqjax import models, sharding, train
from seqjax.nn.params import LOGICAL_AXES, Kernel, ParamTree, axes_of

RULES = "embed:fsdp,vocab:tensor,heads:tensor,kv_heads:tensor,mlp:tensor"

# Every registered model, with small data arguments and the options that add parameters.
MODEL_CASES = [
    ("gpt", {"vocab_size": 11}, {"tie_embeddings": False, "num_layers": 1}),
    ("encoder", {"vocab_size": 11}, {"num_layers": 1}),
    ("transformer_classifier", {"vocab_size": 11, "num_classes": 3}, {"pooling": "cls", "num_layers": 1}),
    ("encoder_decoder", {"src_vocab_size": 9, "tgt_vocab_size": 7, "pad_id": 0, "bos_id": 1, "eos_id": 2},
     {"tie_embeddings": False, "num_encoder_layers": 1, "num_decoder_layers": 1}),
    ("vit", {"num_classes": 3, "image_size": 8, "channels": 1}, {"patch_size": 4, "num_layers": 1}),
    ("forecaster", {"num_inputs": 3, "num_outputs": 2, "horizon": 2}, {}),
    ("rnn_classifier", {"vocab_size": 11, "num_classes": 2, "unk_id": 1}, {"bidirectional": True}),
    ("rnn_seq2seq", {"src_vocab_size": 9, "tgt_vocab_size": 7, "pad_id": 0, "bos_id": 1, "eos_id": 2},
     {"attention": "bahdanau", "cell": "lstm"}),
    ("pattern_models", {"seq_len": 4, "vocab_size": 6, "pad_id": 0, "bos_id": 1, "eos_id": 2}, {}),
]


@pytest.mark.parametrize("name, data, options", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_every_parameter_of_every_model_names_its_axes(name, data, options):
    cls = models.get(name)
    model = nnx.eval_shape(lambda: cls(**data, **options, rngs=nnx.Rngs(0)))
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    assert flat
    for path, v in flat:
        axes = axes_of(v)
        assert axes is not None and len(axes) == len(v.shape), (path, axes, v.shape)
        assert all(a in LOGICAL_AXES for a in axes), (path, axes)
        if "blocks" in path:
            assert axes[0] == "layers", path  # a LayerStack prepends its axis


def test_roles_and_param_trees_refuse_missing_or_unknown_axes():
    with pytest.raises(ValueError, match=r"Kernel axes: \('embed',\) name 1 axes, the value has shape"):
        Kernel(np.zeros((2, 3)), ("embed",))
    with pytest.raises(ValueError, match="unknown logical axis names \\['width'\\]"):
        Kernel(np.zeros((2, 3)), ("embed", "width"))

    from typing import NamedTuple

    class Plain(NamedTuple):
        w: np.ndarray

    with pytest.raises(ValueError, match="Plain.AXES: no logical axis names for field 'w'"):
        ParamTree(Plain(np.zeros((2, 2))))


def test_mesh_strings():
    assert sharding.parse_mesh("data:-1", 4) == {"data": 4, "fsdp": 1, "tensor": 1}
    assert sharding.parse_mesh("data:2, fsdp:-1,tensor:2", 8) == {"data": 2, "fsdp": 2, "tensor": 2}
    bad = {"data": "expected comma-separated 'axis:size'", "model:4": "unknown mesh axis 'model'",
           "data:2,data:2": "named twice", "data:two": "must be an integer", "data:0": "must be >= 1 or -1",
           "data:-1,fsdp:-1": "only one axis may be -1", "tensor:3,data:-1": "does not divide the 4 devices",
           "data:2,fsdp:4": "the axes multiply to 8 devices, there are 4"}
    for text, message in bad.items():
        with pytest.raises(ValueError, match=message):
            sharding.parse_mesh(text, 4)
    mesh = sharding.make_mesh("fsdp:2,tensor:2")
    assert mesh.axis_names == sharding.MESH_AXES and dict(mesh.shape) == {"data": 1, "fsdp": 2, "tensor": 2}
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_rule_strings_and_the_specs_they_give():
    assert sharding.parse_rules("") == {}
    assert sharding.parse_rules("embed:fsdp, vocab:fsdp+tensor") == {"embed": ("fsdp",),
                                                                     "vocab": ("fsdp", "tensor")}
    for text, message in {"embed": "expected comma-separated 'logical:mesh_axis'",
                          "width:fsdp": "unknown logical axis 'width'", "embed:model": "unknown mesh axes",
                          "embed:fsdp,embed:data": "two rules"}.items():
        with pytest.raises(ValueError, match=message):
            sharding.parse_rules(text)
    mesh = sharding.make_mesh("fsdp:2,tensor:2")
    rules = sharding.parse_rules(RULES + ",kv:fsdp")
    unsharded = []
    spec = lambda axes, shape: sharding._spec(axes, shape, rules, mesh, unsharded, "w")  # noqa: E731
    # A mesh axis splits one axis of a parameter: kv finds fsdp taken.
    assert spec(("layers", "embed", "heads", "kv"), (2, 8, 4, 6)) == P(None, "fsdp", "tensor")
    assert spec(("heads", "kv", "embed"), (4, 6, 8)) == P("tensor", "fsdp")
    assert unsharded == ["w axis 3 (kv, 6) over fsdp", "w axis 2 (embed, 8) over fsdp"]
    unsharded.clear()
    assert spec(("vocab", "embed"), (65, 8)) == P(None, "fsdp")  # 65 rows do not split in 2
    assert unsharded == ["w axis 0 (vocab, 65) over tensor"]
    assert spec(("length", "embed"), (8, 8)) == P(None, "fsdp")
    # A data-only mesh replicates every parameter, whatever the rules.
    assert sharding._spec(("embed", "mlp"), (8, 8), rules, sharding.make_mesh("data:-1")) == P()
    assert sharding.batch_sharding(mesh).spec == P("fsdp")
    assert sharding.batch_sharding(sharding.make_mesh("data:2,fsdp:2")).spec == P(("data", "fsdp"))


def test_config_keys_reach_the_runner_and_preflight():
    from seqjax import parallel, preflight

    config = toy_config(**{"train.mesh": "data:2,tensor:2", "train.batch_size": 5})
    with pytest.raises(preflight.RunError, match=r"5 is not divisible by the batch.s shards \(2"):
        preflight._check_devices(config)
    config.train.mesh = "data:3"
    with pytest.raises(preflight.RunError, match="the axes multiply to 3 devices, there are 4"):
        preflight._check_devices(config)
    config.train.mesh, config.train.sharding_rules = "data:-1", "embed:gpu"
    with pytest.raises(preflight.RunError, match="unknown mesh axes \\['gpu'\\]"):
        preflight._check_devices(config)
    with pytest.raises(ValueError, match="train.parallel='pmap' replicates the state"):
        parallel.batch_ways("pmap", "fsdp:4")
    with pytest.raises(ValueError, match="the axes multiply to 4 devices, there are 1"):
        parallel.batch_ways("none", "fsdp:4")


def test_a_run_on_one_mesh_resumes_on_another(tmp_path):
    """A toy run saved under fsdp:2,tensor:2 (its parameters split over both axes) resumes under data:-1 and
    under fsdp:4, and finishes as the uninterrupted run does."""
    overrides = {"train.steps": 4, "train.checkpoint_every": 2, "train.mesh": "fsdp:2,tensor:2",
                 "train.sharding_rules": "embed:fsdp,classes:tensor", "model.output_dropout": 0.2}
    config = toy_config(**overrides)
    workdir = str(tmp_path)
    train.train_and_evaluate(config, workdir)
    want = final_params(workdir)
    for mesh in ("data:-1", "fsdp:4"):
        shutil.rmtree(os.path.join(workdir, "checkpoints", "4"))  # as if stopped after step 2
        config.train.mesh = mesh
        assert train.train_and_evaluate(config, workdir)["steps"] == 4
        got = final_params(workdir)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=f"{mesh} {k}")


def test_eight_device_meshes_in_a_subprocess():
    """tests/test_mesh8.py under 8 simulated devices. XLA's CPU backend optimisations are off there: the
    file compiles about 20 small programs, and this halves their compile time; every mesh and the one-device
    reference compile with the same flags."""
    env = launch_env(devices=8)
    env.update(SEQJAX_TEST_CPU_DEVICES="8",
               XLA_FLAGS="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          os.path.join(ROOT, "tests", "test_mesh8.py")], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert "9 passed" in out.stdout and "skipped" not in out.stdout, out.stdout[-3000:]

