"""launch.py as a user runs it: a run, --list, sweeps, and one-line usage errors with exit status 2."""
import csv
import json
import os

import pytest
from helpers_train import ROOT, TOY, run_launch

FAST = ["--config.train.steps=2", "--config.train.log_every=1", "--config.train.checkpoint_every=0",
        "--config.train.plots=False"]


def test_list_prints_each_experiment_with_its_first_docstring_line():
    out = run_launch("--list")
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    names = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "experiments"))
                   if f.endswith(".py") and not f.startswith("_"))
    assert sorted(lines) == names
    assert "Toy regression smoke test of the training engine" in lines["toy_smoke"]


@pytest.mark.parametrize("args, message", [
    (["--config=experiments/no_such.py", "--workdir=/tmp/x"], "unknown experiment 'experiments/no_such.py'"),
    ([f"--config={TOY}:smoke", "--workdir=/tmp/x", "--config.optim.nope=1"],
     "unknown config key 'optim.nope'"),
    ([f"--config={TOY}:smoke", "--workdir=/tmp/x", "--config.optim.lr=fast"], "--config.optim.lr=fast"),
    ([f"--config={TOY}:smoke"], "--workdir is required"),
    ([f"--config={TOY}:smoke", "--workdir=/tmp/x", "--sweep=optim.lr=1e-3,x"], "'x' for optim.lr"),
    ([f"--config={TOY}:smoke", "--workdir=/tmp/x", "--sweep=optim.bogus=1,2"],
     "unknown config key 'optim.bogus'"),
])
def test_usage_errors_are_one_line_and_exit_2(args, message):
    out = run_launch(*args, timeout=60)
    assert out.returncode == 2, (out.stdout, out.stderr)
    err = [line for line in out.stderr.splitlines() if line.strip() and not line.startswith(("W", "I"))]
    assert len(err) == 1 and message in err[0], out.stderr
    assert "Traceback" not in out.stderr


def test_run_writes_summary_and_overrides_apply(tmp_path):
    out = run_launch(f"--config={TOY}:smoke", f"--workdir={tmp_path}", *FAST, "--config.optim.lr=0.003")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step      2/2 | loss" in out.stdout and "steps/s" in out.stdout and "ETA" in out.stdout
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["experiment"] == "toy_smoke" and summary["steps"] == 2
    assert summary["config"]["optim"]["lr"] == 0.003
    assert json.load(open(tmp_path / "config.json"))["optim"]["lr"] == 0.003


def test_sweep_launch_prints_one_command_per_point(tmp_path):
    out = run_launch(f"--config={TOY}:smoke", f"--workdir={tmp_path}", "--config.train.steps=3",
                     "--sweep=optim.lr=1e-3,3e-3;model.hidden_size=8,16", "--sweep_launch", timeout=60)
    assert out.returncode == 0, out.stderr
    cmds = out.stdout.strip().splitlines()
    assert len(cmds) == 4
    assert "--config.optim.lr=3e-3" in cmds[2] and "--config.model.hidden_size=8" in cmds[2]
    assert all("--config.train.steps=3" in c and f"--workdir={tmp_path}/" in c for c in cmds)


def test_sweep_runs_grid_and_writes_tables(tmp_path):
    out = run_launch(f"--config={TOY}:smoke", f"--workdir={tmp_path}", *FAST, "--sweep=model.hidden_size=4,8",
                     timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [r["model.hidden_size"] for r in rows] == ["4", "8"]
    assert all(r["status"] == "completed" and float(r["test_mse"]) > 0 for r in rows)
    for r in rows:
        summary = json.load(open(tmp_path / f"model.hidden_size={r['model.hidden_size']}" / "summary.json"))
        assert summary["config"]["model"]["hidden_size"] == int(r["model.hidden_size"])
        assert float(r["val_loss"]) == pytest.approx(summary["final"]["val_loss"])
    md = open(tmp_path / "results.md").read().splitlines()
    assert md[0].startswith("| model.hidden_size |") and len(md) == 4
