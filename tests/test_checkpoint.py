"""Checkpoints that lose nothing: kill -9 and resume bitwise, SIGTERM/SIGINT, corrupt fallback, init_from."""
import json
import os
import shutil
import signal
import subprocess
import time

import jax
import numpy as np
import pytest
from helpers_train import (
    ROOT,
    TOY,
    assert_params_equal,
    final_params,
    launch_cmd,
    launch_env,
    overrides,
    run_launch,
    toy_config,
)

from seqjax import checkpoint, optim, train
from seqjax.task import build_task

CONFIG = {"train.steps": 8, "train.checkpoint_every": 4, "model.output_dropout": 0.2}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """8 uninterrupted steps (dropout on, so the RNG path matters), checkpoints at 4 and 8."""
    workdir = str(tmp_path_factory.mktemp("straight"))
    train.train_and_evaluate(toy_config(**CONFIG), workdir)
    return workdir


def step_dirs(workdir):
    """Steps of the checkpoints fully on disk: orbax writes `<step>.orbax-checkpoint-tmp-*` and renames it to
    `<step>` as the last act of a save."""
    directory = os.path.join(workdir, "checkpoints")
    return sorted(int(d) for d in os.listdir(directory) if d.isdigit()) if os.path.isdir(directory) else []


# Long enough after the first checkpoint (step 4) that the kill lands mid-run: 9 more saves follow it (about
# 2 s on a CPU, against a 10 ms poll).
KILLED = {**CONFIG, "train.steps": 40, "train.log_every": 20, "train.plots": False}


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    straight = str(tmp_path / "straight")
    train.train_and_evaluate(toy_config(**KILLED), straight)

    workdir = str(tmp_path / "killed")
    args = [f"--config={TOY}:smoke", f"--workdir={workdir}", *overrides(KILLED)]
    with open(tmp_path / "killed.log", "w") as out:
        proc = subprocess.Popen(launch_cmd(*args), cwd=ROOT, env=launch_env(), stdout=out,
                                stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while proc.poll() is None and not [s for s in step_dirs(workdir) if s >= 4]:
            assert time.time() < deadline, "no checkpoint of step >= 4 appeared"
            time.sleep(0.01)
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-2000:]
    killed_at = step_dirs(workdir)[-1]
    assert 4 <= killed_at < 40 and not os.path.exists(os.path.join(workdir, "summary.json"))

    resumed = run_launch(*args)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from checkpoint step {killed_at}" in resumed.stdout
    assert json.load(open(os.path.join(workdir, "summary.json")))["steps"] == 40
    assert step_dirs(workdir)[-1] == 40
    assert_params_equal(final_params(workdir), final_params(straight), exact=True)
    # The optimiser state too: the whole saved TrainState matches.
    a, b = checkpoint.load_raw(workdir), checkpoint.load_raw(straight)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_and_exits_cleanly(tmp_path, sig):
    workdir = str(tmp_path)
    proc = subprocess.Popen(launch_cmd(f"--config={TOY}:smoke", f"--workdir={workdir}",
                                       "--config.train.steps=1000000", "--config.train.checkpoint_every=0",
                                       "--config.train.log_every=1", "--config.train.plots=False"),
                            cwd=ROOT, env=launch_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    metrics = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + 90
    while not (os.path.exists(metrics) and os.path.getsize(metrics) > 0) and proc.poll() is None:
        assert time.time() < deadline, "training did not start"
        time.sleep(0.2)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out[-2000:]
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    assert summary["status"] == "interrupted" and 0 < summary["steps"] < 1000000
    assert step_dirs(workdir) == [summary["steps"]]
    assert f"received {signal.Signals(sig).name}" in out


def corrupt(step_dir):
    for dirpath, _, files in os.walk(step_dir):
        for f in files:
            with open(os.path.join(dirpath, f), "wb") as fh:
                fh.write(b"\x00garbage\xff" * 3)


def test_corrupt_latest_falls_back_to_previous_and_recovers(straight, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    shutil.copytree(straight, workdir)
    corrupt(os.path.join(workdir, "checkpoints", "8"))
    summary = train.train_and_evaluate(toy_config(**CONFIG), workdir)
    out = capsys.readouterr().out
    assert "checkpoint step 8" in out and "falling back" in out and "resumed from checkpoint step 4" in out
    assert os.path.isdir(os.path.join(workdir, "corrupt_checkpoints", "8"))
    assert summary["steps"] == 8
    assert_params_equal(final_params(workdir), final_params(straight), exact=True)


def test_all_checkpoints_corrupt_is_an_error_not_a_fresh_start(straight, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(straight, workdir)
    for s in (4, 8):
        corrupt(os.path.join(workdir, "checkpoints", str(s)))
    with pytest.raises(checkpoint.CheckpointError, match="refusing to restart from scratch"):
        train.train_and_evaluate(toy_config(**CONFIG), workdir)


def test_init_from_loads_params_and_rejects_another_model(straight):
    config = toy_config(**CONFIG)
    task = build_task(config)
    tx, _ = optim.make_optimizer(config.optim, 8)
    _, state = train.init_state(toy_config(**{**CONFIG, "seed": 123}), task, tx)
    loaded = checkpoint.load_params(straight, state.params)
    want = final_params(straight)
    got = {k: np.asarray(v) for k, v in checkpoint.flat_by_path(loaded).items()}
    assert_params_equal(got, want)

    other = toy_config(**{**CONFIG, "model.hidden_size": 8})
    _, other_state = train.init_state(other, build_task(other), tx)
    with pytest.raises(ValueError, match="checkpoint from another model"):
        checkpoint.load_params(straight, other_state.params)
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint found"):
        checkpoint.load_params(os.path.join(straight, "nope"), state.params)


def test_init_from_in_a_run(straight, tmp_path):
    config = toy_config(**{**CONFIG, "train.steps": 1, "optim.lr": 0.0, "optim.warmup_steps": 0})
    config.train.init_from = straight
    train.train_and_evaluate(config, str(tmp_path))
    assert_params_equal(final_params(str(tmp_path)), final_params(straight), exact=False, atol=1e-7)


def test_a_workdir_from_before_model_names_is_refused_untouched(tmp_path):
    """Checkpoints of the old parameter layout are declared incompatible, with a clear error, and left as
    they are (no checkpoint moved, no config rewritten)."""
    from seqjax.checkpoint import WorkdirError
    from seqjax.train import train_and_evaluate

    workdir = tmp_path / "old"
    (workdir / "checkpoints" / "4").mkdir(parents=True)
    (workdir / "config.json").write_text('{"task": "experiments.toy_smoke", "model": {"hidden": 16}}')
    before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    with pytest.raises(WorkdirError, match="has no model_name"):
        train_and_evaluate(toy_config(), str(workdir))
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == before
    assert "hidden" in (workdir / "config.json").read_text()
