"""Masked-LM pretraining and its transfer: experiments/mlm_pretrain.py:smoke end to end, then
sentiment_transformer.py:smoke,pretrained loading exactly the encoder (by name, reported), and the task's
loss on the targets' rows against the full [B, T, V] logits."""
import importlib.util
import json
import pathlib

import helpers_train  # noqa: F401  (repository root on sys.path, persistent compilation cache)
import jax
import numpy as np
import pytest
from flax import nnx

from seqjax import checkpoint, losses, train
from seqjax.task import build_model, build_task
from seqjax.tasks import mlm

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str, variant: str):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


@pytest.fixture(scope="module")
def mlm_task():
    config = load_config("mlm_pretrain", "smoke")
    return config, build_task(config)


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory, mlm_task):
    workdir = tmp_path_factory.mktemp("mlm")
    config, task = mlm_task
    summary = train.train_and_evaluate(config, str(workdir), experiment="mlm_pretrain", task=task)
    assert summary["status"] == "completed"
    final = summary["final"]
    assert 0.0 <= final["val_masked_accuracy"] <= 1.0 and final["val_targets"] > 0
    assert np.isfinite(final["val_masked_nats"]) and final["val_unigram_nats"] < np.log(final["vocab_size"])
    assert final["train_sequences_mr"] == 256 and final["train_sequences_shakespeare"] == 64
    return str(workdir)


def test_pretrained_encoder_initialises_the_classifier_by_name(mlm_run, tmp_path):
    config = load_config("sentiment_transformer", "smoke,pretrained")
    assert config.train.init_from_params == "encoder"
    config.train.init_from = mlm_run
    config.train.steps, config.optim.lr = 1, 0.0  # lr 0: the params stay what init_from made them
    train.train_and_evaluate(config, str(tmp_path), experiment="sentiment_transformer")
    mlm = checkpoint.flat_by_path(checkpoint.load_raw(mlm_run)["params"])
    clf = checkpoint.flat_by_path(checkpoint.load_raw(str(tmp_path))["params"])
    report = json.loads((tmp_path / "init_from.json").read_text())
    assert report["loaded"] == sorted(k for k in clf if k.startswith("encoder/"))
    assert report["kept"] == ["head/bias/value", "head/kernel/value"]
    assert report["ignored"] == sorted(k for k in mlm if not k.startswith("encoder/"))
    assert "mask_token/value" in report["ignored"]
    for k in report["loaded"]:
        np.testing.assert_allclose(np.asarray(clf[k]), np.asarray(mlm[k]), atol=1e-7, err_msg=k)
    # A name the model lacks, or the whole model from another model's checkpoint, is refused by name.
    params = nnx.state(build_model(config, build_task(config), nnx.Rngs(0)), nnx.Param)
    with pytest.raises(ValueError, match=r"\['decoder'\] name no parameter of this model"):
        checkpoint.init_params(mlm_run, params, "encoder,decoder")
    with pytest.raises(ValueError, match="checkpoint from another model: missing \\['head/bias"):
        checkpoint.init_params(mlm_run, params, "")


def test_loss_on_the_targets_rows_equals_the_full_logits(mlm_task):
    config, task = mlm_task
    model = build_model(config, task, nnx.Rngs(0))
    batch = {k: v[:4] for k, v in task.data()["val"].items()}
    loss, metrics = nnx.jit(lambda m, b: task.loss(m, b, None))(model, batch)  # fixed masks, no dropout
    corrupted, targets = task.corrupt(jax.random.key(mlm.EVAL_KEY_SEED), batch["tokens"], batch["lengths"],
                                      model.mask_id)
    assert int(targets.sum()) == int(metrics["targets"]) > 0 and float(metrics["targets_cut"]) == 0.0
    assert int((np.asarray(corrupted) == model.mask_id).sum()) > 0
    full = nnx.jit(lambda m, t, n: m(t, n))(model, corrupted, batch["lengths"])  # [B, T, V]
    want = losses.softmax_cross_entropy(full, batch["tokens"], where=targets)
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-5)
