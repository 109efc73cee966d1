"""Checkpoints that lose nothing: kill -9 and resume bitwise, SIGTERM/SIGINT, corrupt fallback, init_from;
workdirs that keep one run: config changes refused, checksums, the lock, metrics following the checkpoint."""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
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

from seqjax import checkpoint, metrics_io, optim, train
from seqjax import workdir as workdir_lib
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
    assert "checkpoint step 8" in out and "unreadable" in out and "resumed from checkpoint step 4" in out
    assert os.path.isdir(os.path.join(workdir, "corrupt_checkpoints", "8"))
    assert summary["steps"] == 8
    assert_params_equal(final_params(workdir), final_params(straight), exact=True)


def test_all_checkpoints_corrupt_is_an_error_not_a_fresh_start(straight, tmp_path):
    """Nothing is moved when no checkpoint loads, so the next command refuses again instead of starting from
    step 0 in an emptied checkpoints/."""
    workdir = str(tmp_path / "run")
    shutil.copytree(straight, workdir)
    for s in (4, 8):
        corrupt(os.path.join(workdir, "checkpoints", str(s)))
    for _ in range(2):
        with pytest.raises(checkpoint.CheckpointError, match="no readable checkpoint in .*nothing was moved"):
            train.train_and_evaluate(toy_config(**CONFIG), workdir)
        assert step_dirs(workdir) == [4, 8]
        assert not os.path.exists(os.path.join(workdir, "corrupt_checkpoints"))


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
    from seqjax.train import train_and_evaluate
    from seqjax.workdir import WorkdirError

    workdir = tmp_path / "old"
    (workdir / "checkpoints" / "4").mkdir(parents=True)
    (workdir / "config.json").write_text('{"task": "experiments.toy_smoke", "model": {"hidden": 16}}')
    before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    with pytest.raises(WorkdirError, match="has no model_name"):
        train_and_evaluate(toy_config(), str(workdir))
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == before
    assert "hidden" in (workdir / "config.json").read_text()


# ------------------------------------------------------------------------------------ one run per workdir


def snapshot(workdir):
    """{relative path: sha256} of every file under `workdir`."""
    out = {}
    for dirpath, _, files in os.walk(workdir):
        for f in files:
            path = os.path.join(dirpath, f)
            out[os.path.relpath(path, workdir)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


def test_resuming_with_another_config_is_refused_before_anything_changes(straight, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(straight, workdir)
    before = snapshot(workdir)
    other_run = {"data.n_train": 32, "data.n_val": 8, "data.noise": 0.5, "data.seed": 1, "data.T": 3,
                 "model.hidden_size": 8}
    for changes, shown in [({"model.hidden_size": 8}, "model.hidden_size 16 -> 8"),
                           ({"optim.lr": 0.5}, "optim.lr 0.01 -> 0.5"),  # keeps every shape
                           (other_run, r"data.T 4 -> 3, .*\(and 1 more\)")]:
        with pytest.raises(workdir_lib.WorkdirError,
                           match=f"another config: {shown}.*--allow_config_change="):
            train.train_and_evaluate(toy_config(**{**CONFIG, **changes}), workdir)
        assert snapshot(workdir) == before  # the lock taken for the check is gone again too

    # Allowed by name, a change of shapes still cannot restore: refused as another state, never as corrupt.
    with pytest.raises(workdir_lib.WorkdirError, match="checkpoint step 8 .* holds another state .*nothing "
                                                      "was moved"):
        train.train_and_evaluate(toy_config(**{**CONFIG, "model.hidden_size": 8}), workdir,
                                 allow_changes=("model.hidden_size",))
    assert step_dirs(workdir) == [4, 8] and not os.path.exists(os.path.join(workdir, "corrupt_checkpoints"))
    assert json.load(open(os.path.join(workdir, "config.json")))["model"]["hidden_size"] == 16
    assert not os.path.exists(os.path.join(workdir, ".lock"))


def test_launch_refuses_a_config_change_in_one_line_naming_the_keys_not_allowed(straight, tmp_path):
    workdir = str(tmp_path / "run")
    shutil.copytree(straight, workdir)
    before = snapshot(workdir)
    out = run_launch(f"--config={TOY}:smoke", f"--workdir={workdir}", "--config.model.output_dropout=0.2",
                     "--config.model.hidden_size=8", "--config.optim.lr=0.003",
                     "--allow_config_change=optim.lr")
    assert out.returncode == 2, out.stderr[-2000:]
    err = [line for line in out.stderr.splitlines() if line.startswith("launch.py: error:")]
    assert len(err) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "model.hidden_size 16 -> 8" in err[0] and "--allow_config_change=model.hidden_size" in err[0]
    assert "optim.lr" not in err[0]  # allowed by the flag
    assert snapshot(workdir) == before


def test_the_checkpoint_named_after_a_nan_resumes_at_a_lower_lr(tmp_path):
    """SGD at lr 3 diverges over a few steps. The loss of step s comes from the parameters after step s - 1,
    so the error must name an older checkpoint: that one resumes and trains once lr is lower."""
    workdir = str(tmp_path / "run")
    diverging = {"optim": optim.optimizer_fields("sgd"), "optim.momentum": 0.0, "optim.lr": 3.0,
                 "optim.clip_norm": 0.0, "optim.schedule": "constant", "train.steps": 12,
                 "train.log_every": 1, "train.checkpoint_every": 2}
    with pytest.raises(train.NonFiniteLossError) as e:
        train.train_and_evaluate(toy_config(**diverging), workdir)
    msg = str(e.value)
    bad = int(re.search(r"non-finite loss at step (\d+)", msg).group(1))
    good = int(re.search(r"last good checkpoint is (\d+)", msg).group(1))
    assert good < bad - 1 and good in step_dirs(workdir), msg
    for path in re.search(r"move away (.*)\)", msg).group(1).split():  # as the message tells a person to
        shutil.move(path, str(tmp_path / os.path.basename(path)))
    assert step_dirs(workdir)[-1] == good
    assert all(np.isfinite(v).all() for v in final_params(workdir).values())

    gentle = {**diverging, "optim.lr": 1e-3}
    with pytest.raises(workdir_lib.WorkdirError, match="optim.lr 3.0 -> 0.001"):
        train.train_and_evaluate(toy_config(**gentle), workdir)
    summary = train.train_and_evaluate(toy_config(**gentle), workdir, allow_changes=("optim.lr",))
    assert summary["steps"] == 12
    rows = [r for r in metrics_io.read_jsonl(os.path.join(workdir, "metrics.jsonl")) if "train/loss" in r]
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert all(np.isfinite(r["train/loss"]) for r in rows if r["step"] > good)
    assert json.load(open(os.path.join(workdir, "config.json")))["optim"]["lr"] == 1e-3
    assert json.load(open(os.path.join(workdir, f"config.{good}.json")))["optim"]["lr"] == 3.0


def restore_latest(workdir):
    config = toy_config(**CONFIG)
    tx, _ = optim.make_optimizer(config.optim, config.train.steps)
    _, state = train.init_state(config, build_task(config), tx)
    checkpoints = checkpoint.Checkpoints(workdir)
    try:
        return checkpoints.restore_latest(checkpoint.abstract_tree(state))
    finally:
        checkpoints.close()


def test_arrays_that_fail_their_checksums_are_corrupt(straight, tmp_path, capsys):
    # Step 4's state under step 8's name (as a botched copy or backup restore leaves it) is well-formed: only
    # the checksums tell it from the state that was saved.
    swapped = str(tmp_path / "swapped")
    shutil.copytree(straight, swapped)
    state_dir = os.path.join(swapped, "checkpoints", "8", "state")
    shutil.rmtree(state_dir)
    shutil.copytree(os.path.join(swapped, "checkpoints", "4", "state"), state_dir)
    step, state, _ = restore_latest(swapped)
    assert step == 4 and int(state.step) == 4
    assert "checkpoint step 8" in capsys.readouterr().out
    assert step_dirs(swapped) == [4] and os.path.isdir(os.path.join(swapped, "corrupt_checkpoints", "8"))

    # 64 bytes overwritten inside the largest data file of step 8's state (state/d/: the files of the merged
    # OCDBT store that a restore reads; ocdbt.process_*/ hold the per-process copies they were merged from).
    flipped = str(tmp_path / "flipped")
    shutil.copytree(straight, flipped)
    data_dir = os.path.join(flipped, "checkpoints", "8", "state", "d")
    path = max((os.path.join(data_dir, f) for f in os.listdir(data_dir)), key=os.path.getsize)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        chunk = f.read(64)
        f.seek(-len(chunk), os.SEEK_CUR)
        f.write(bytes(b ^ 0x5A for b in chunk))
    assert restore_latest(flipped)[0] == 4


def test_a_second_run_in_a_locked_workdir_is_refused(tmp_path):
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))  # this test holds it
    out = run_launch(f"--config={TOY}:smoke", f"--workdir={tmp_path}", "--config.train.steps=2")
    assert out.returncode == 2, out.stderr[-2000:]
    err = [line for line in out.stderr.splitlines() if line.startswith("launch.py: error:")]
    assert len(err) == 1 and f"PID {os.getpid()} on {socket.gethostname()}" in err[0], out.stderr
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert sorted(os.listdir(tmp_path)) == [".lock"]


def test_a_stale_lock_is_taken_over_and_every_exit_releases_the_lock(tmp_path, capsys):
    lock = tmp_path / ".lock"
    lock.write_text(json.dumps({"host": "another-host", "pid": os.getpid()}))
    with pytest.raises(workdir_lib.WorkdirError, match=f"in use by PID {os.getpid()} on another-host"):
        train.train_and_evaluate(toy_config(), str(tmp_path))  # another host's PID cannot be checked
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": gone.pid}))
    assert train.train_and_evaluate(toy_config(**{"train.steps": 2}), str(tmp_path))["steps"] == 2
    assert "taking over the stale lock" in capsys.readouterr().out and not lock.exists()
    with pytest.raises(workdir_lib.WorkdirError, match="another config"):
        train.train_and_evaluate(toy_config(**{"train.steps": 2, "seed": 1}), str(tmp_path))
    assert not lock.exists()


def test_metrics_follow_the_restored_checkpoint(tmp_path):
    workdir = str(tmp_path)
    first = {"train.steps": 6, "train.log_every": 1, "train.checkpoint_every": 4}
    train.train_and_evaluate(toy_config(**first), workdir)
    # As a kill after step 6's metrics, before its checkpoint, leaves it (with half a row being written).
    shutil.rmtree(os.path.join(workdir, "checkpoints", "6"))
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write('{"step": 6, "train/lo')
    train.train_and_evaluate(toy_config(**{**first, "train.steps": 8}), workdir)
    rows = metrics_io.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    assert [r["step"] for r in rows if "train/loss" in r] == list(range(1, 9))
    assert [r["step"] for r in rows if "val/loss" in r] == [8]
    assert len(os.listdir(os.path.join(workdir, "tensorboard"))) == 2  # one events file per run
