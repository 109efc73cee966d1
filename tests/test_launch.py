"""launch.py as a user runs it: a run, --list, sweeps, one-line errors with their exit statuses (checked
before the workdir is touched), and signals in every phase of a run."""
import csv
import errno
import json
import os
import re
import signal
import subprocess
import time

import pytest
from helpers_train import ROOT, TOY, launch_cmd, launch_env, run_launch, toy_config

from experiments.toy_smoke import ToyTask
from seqjax import preflight

WEATHER = os.path.join(ROOT, "experiments", "weather.py")


# Tasks the launched runs name as "test_launch:Class" (tests/ is on their PYTHONPATH): the toy task with one
# failure or delay built in. Same constructor as ToyTask, so the toy config's data section fits.


class MissingPackageTask(ToyTask):
    """Its data loader needs a package of the [data] extra that is not installed."""

    def data(self):
        raise ModuleNotFoundError("No module named 'vega_datasets'", name="vega_datasets")


class FullDiskTask(ToyTask):
    """Once built, every checkpoint save fails as on a full disk (what orbax raises through is not ours to
    simulate, so the save itself raises the OSError)."""

    def data(self):
        from seqjax import checkpoint

        def save(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device", "checkpoints")

        checkpoint.Checkpoints.save = save
        return super().data()


class SlowEvaluateTask(ToyTask):
    """evaluate() marks that it started (the file evaluating in the workdir), then takes a minute."""

    def evaluate(self, model, splits, workdir):
        open(os.path.join(workdir, "evaluating"), "w").close()
        time.sleep(60)
        return super().evaluate(model, splits, workdir)


class SlowSaveTask(ToyTask):
    """The run's last save marks that it started (the file saving in the workdir), then takes 3 s."""

    def data(self):
        from seqjax import checkpoint

        original = checkpoint.Checkpoints.save

        def save(self, step, state, meta, wait=False):
            if wait:  # the final save
                open(os.path.join(self.workdir, "saving"), "w").close()
                time.sleep(3)
            return original(self, step, state, meta, wait)

        checkpoint.Checkpoints.save = save
        return super().data()

class SlowDataTask(ToyTask):
    """The first data() call marks that it started (the file SEQJAX_TEST_MARKER names), then takes 3 s: a run
    in its setup phase (a signal handler returning does not cut a sleep short)."""

    def data(self):
        marker = os.environ.get("SEQJAX_TEST_MARKER")
        if marker and not os.path.exists(marker):
            open(marker, "w").close()
            time.sleep(3)
        return super().data()


FAST = ["--config.train.steps=2", "--config.train.log_every=1", "--config.train.checkpoint_every=0",
        "--config.train.plots=False"]


def test_list_prints_each_experiment_with_its_first_docstring_line_and_variants():
    out = run_launch("--list")
    assert out.returncode == 0, out.stderr
    # One unindented line per experiment, then one indented line per variant.
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip() and line[0] != " "}
    names = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "experiments"))
                   if f.endswith(".py") and not f.startswith("_"))
    assert sorted(lines) == names
    assert "Toy regression smoke test of the training engine" in lines["toy_smoke"]
    after = sorted(lines)[sorted(lines).index("toy_smoke") + 1]  # the next experiment's line ends the block
    text = out.stdout.split("toy_smoke ", 1)[1].split(f"\n{after} ", 1)[0].splitlines()
    assert [line.split()[0] for line in text[1:]] == [":full", ":smoke"]
    assert text[2].endswith("8 steps, an evaluation and a checkpoint every 4")


def test_help_exits_0_with_usage():
    out = run_launch("--help", timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python launch.py [flags]")
    for text in ("--show_config", "Exit statuses", "--workdir: Directory for checkpoints", "--list"):
        assert text in out.stdout
    assert "--log_dir" not in out.stdout  # launch.py's own flags, not absl's logging flags


def test_show_config_prints_every_field_with_its_meaning_and_no_workdir(tmp_path):
    out = run_launch(f"--config={TOY}:smoke", "--config.optim.lr=0.25", "--show_config", timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    fields = {line.split(" = ")[0]: lines[i + 1].strip() for i, line in enumerate(lines) if " = " in line
              and not line.startswith(("#", " "))}
    from experiments.toy_smoke import get_config

    def keys(node, prefix=""):
        return [k for key in node.keys() for k in (keys(node[key], f"{prefix}{key}.")
                                                    if hasattr(node[key], "keys") else [prefix + key])]

    assert sorted(fields) == sorted(keys(get_config("smoke")))
    assert "optim.lr = 0.25" in lines and fields["optim.lr"].startswith("peak learning rate")
    assert fields["train.steps"] == "optimiser updates"
    # The trainer's and optimiser's fields are documented; the constructors' show what they document.
    assert not [k for k, v in fields.items() if "(no description)" in v and k.split(".")[0] in
                ("train", "optim", "distributed", "seed", "task", "model_name")]
    assert fields["model.hidden_size"] == "width of the hidden layer. [ToyModel argument: int, default 16]"
    assert fields["data.noise"] == ("noise standard deviation added to the targets. [ToyTask argument: "
                                    "float, default 0.1]")


def test_argument_docs_read_args_sections_only():
    from seqjax.configs import argument_docs

    class Documented:
        """A thing.

        Args:
            width: how wide,
                in cells.
            depth (int): how deep.

        Returns nothing.
        """

        def __init__(self, width=1, depth=2, other=3):
            """Build it.

            Arguments:
                other: the rest.
            """

    class Undocumented:
        """Arguments (config.data): width of the thing; prose is not an Args section."""

    assert argument_docs(Documented) == {"width": "how wide, in cells.", "depth": "how deep.",
                                         "other": "the rest."}
    assert argument_docs(Undocumented) == {}


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


def test_auto_coordinator_outside_a_cluster_is_a_usage_error(tmp_path):
    # No SLURM job step, Open MPI or TPU pod in the environment (the tests may run inside a SLURM job).
    env = {k: v for k, v in launch_env().items() if not k.startswith(("SLURM_", "OMPI_"))}
    out = subprocess.run(launch_cmd(f"--config={TOY}:smoke", f"--workdir={tmp_path / 'run'}",
                                    "--coordinator_address=auto"), cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2, out.stderr[-3000:]
    assert len(error_lines(out)) == 1 and "JAX found no cluster to read the coordinator" in out.stderr
    assert not (tmp_path / "run").exists()


def error_lines(out) -> list[str]:
    return [line for line in out.stderr.splitlines() if line.strip() and not line.startswith(("W", "I"))]


@pytest.mark.parametrize("args, status, message", [
    ([f"--config={WEATHER}:smoke", "--config.model.cell=lstmm"], 2, "cell kind: expected one of"),
    ([f"--config={TOY}:smoke", "--config.train.steps=-5"], 2,
     "train.steps: expected an integer >= 1, got -5"),
    ([f"--config={TOY}:smoke", "--config.task=test_launch:MissingPackageTask"], 3,
     "the Python package 'vega_datasets' is not installed (pip install 'seqjax[data]')"),
])
def test_bad_values_and_missing_packages_are_one_line_before_the_workdir(tmp_path, args, status, message):
    workdir = tmp_path / "run"
    out = run_launch(*args, f"--workdir={workdir}", timeout=120)
    assert out.returncode == status, out.stderr[-3000:]
    assert len(error_lines(out)) == 1 and message in error_lines(out)[0], out.stderr
    assert "Traceback" not in out.stderr and not workdir.exists()


def test_unusable_workdir_is_an_environment_error(tmp_path):
    # Tests run as root here, for whom no directory is read-only (os.access and writes succeed through
    # chmod), so the unwritable workdir is one under a file: it can be neither created nor written.
    afile = tmp_path / "afile"
    afile.write_text("")
    out = run_launch(f"--config={TOY}:smoke", f"--workdir={afile / 'run'}", timeout=120)
    assert out.returncode == preflight.ENVIRONMENT == 3, out.stderr[-3000:]
    assert len(error_lines(out)) == 1 and "is a file" in error_lines(out)[0], out.stderr
    with pytest.raises(preflight.RunError, match="is a file, not a directory") as e:
        preflight.check_workdir(str(afile))
    assert e.value.status == 3


def test_unwritable_workdir_is_refused(tmp_path, monkeypatch):
    # What a non-root user meets in a read-only directory, as os.access reports it.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(preflight.RunError, match="is not writable by this user") as e:
        preflight.check_workdir(str(tmp_path / "run"))
    assert e.value.status == 3


@pytest.mark.parametrize("overrides, message", [
    ({"train.parallel": "foo"}, "train.parallel: expected one of 'mesh', 'pmap', 'none', got 'foo'"),
    ({"train.batch_size": 0}, "train.batch_size: expected an integer >= 1, got 0"),
    ({"train.batch_size": 6}, "not divisible by the batch's shards (4"),
    ({"train.batch_size": 128}, "exceeds the 64 rows of split"),
    ({"train.steps": 20, "optim.warmup_steps": 50}, "optim.warmup_steps: expected 0 <= warmup_steps <= "
                                                     "train.steps=20, got 50"),
    ({"train.length_buckets": 2}, "declares no padded_lengths"),
    ({"train.keep_checkpoints": 0}, "train.keep_checkpoints: expected an integer >= 1, got 0"),
    ({"train.init_from": "/nonexistent/run"}, "no checkpoint found at '/nonexistent/run'"),
    ({"train.init_from_params": "encoder"}, "train.init_from_params='encoder' needs train.init_from"),
    ({"model.hidden_size": -3}, "config.model_name='experiments.toy_smoke:ToyModel'"),
])
def test_config_checks_name_the_key_before_the_workdir(tmp_path, overrides, message):
    # The checks launch.py makes (seqjax.preflight.check_run), in-process: one line each, nothing written.
    with pytest.raises(preflight.RunError) as e:
        preflight.check_run(toy_config(**overrides), str(tmp_path / "run"))
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


def test_disk_full_is_one_line_with_its_own_status(tmp_path):
    out = run_launch(f"--config={TOY}:smoke", f"--workdir={tmp_path}",
                     "--config.task=test_launch:FullDiskTask", "--config.train.checkpoint_every=2")
    assert out.returncode == preflight.DISK_FULL == 4, out.stderr[-3000:]
    assert len(error_lines(out)) == 1, out.stderr
    assert "disk full: no space left on the disk of" in error_lines(out)[0] and str(tmp_path) in out.stderr
    assert "Traceback" not in out.stderr and "Event loop is closed" not in out.stderr


def start_run(workdir, *args) -> subprocess.Popen:
    return subprocess.Popen(launch_cmd(f"--config={TOY}:smoke", f"--workdir={workdir}", *args), cwd=ROOT,
                            env=launch_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def signal_when(proc, path, sig):
    deadline = time.time() + 120
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.05)
    proc.send_signal(sig)
    return proc.communicate(timeout=120)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_final_evaluation_stops_it_with_a_summary(tmp_path, sig):
    proc = start_run(tmp_path, "--config.task=test_launch:SlowEvaluateTask")
    out, err = signal_when(proc, tmp_path / "evaluating", sig)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["status"] == "interrupted" and summary["steps"] == 8
    assert summary["interruption"] == {"signal": sig.name, "phase": "final evaluation"}
    assert "val_loss" in summary["final"] and "test_mse" not in summary["final"]  # val done, report cut
    assert os.listdir(tmp_path / "checkpoints").count("8") == 1


def test_signal_during_setup_stops_before_the_first_step_with_a_summary(tmp_path, monkeypatch):
    marker = tmp_path / "loading"
    monkeypatch.setenv("SEQJAX_TEST_MARKER", str(marker))
    proc = start_run(tmp_path / "run", "--config.task=test_launch:SlowDataTask")
    out, err = signal_when(proc, marker, signal.SIGTERM)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    summary = json.load(open(tmp_path / "run" / "summary.json"))
    assert summary["status"] == "interrupted" and summary["steps"] == 0 and summary["final"] == {}
    assert summary["interruption"] == {"signal": "SIGTERM", "phase": "setup"}
    assert [d for d in os.listdir(tmp_path / "run" / "checkpoints") if d.isdigit()] == ["0"]


def test_signal_during_the_last_save_is_answered_after_it(tmp_path):
    proc = start_run(tmp_path, "--config.task=test_launch:SlowSaveTask", "--config.train.checkpoint_every=0")
    out, err = signal_when(proc, tmp_path / "saving", signal.SIGTERM)
    assert proc.returncode == 0, err[-3000:]
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["status"] == "interrupted" and summary["steps"] == 8 and summary["final"] == {}
    assert summary["interruption"] == {"signal": "SIGTERM", "phase": "final save"}
    assert "received SIGTERM during the final save" in out
    assert [d for d in os.listdir(tmp_path / "checkpoints") if d.isdigit()] == ["8"]


def test_run_writes_summary_and_overrides_apply(tmp_path):
    out = run_launch(f"--config={TOY}:smoke", f"--workdir={tmp_path}", *FAST, "--config.optim.lr=0.003")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step      2/2 | loss" in out.stdout and "steps/s" in out.stdout and "ETA" in out.stdout
    summary = json.load(open(tmp_path / "summary.json"))
    assert summary["experiment"] == "toy_smoke" and summary["steps"] == 2
    assert summary["config"]["optim"]["lr"] == 0.003
    # The run ends with a short result block (the task's headline) and one short done line; summary.json
    # keeps every metric in "final" and the headline beside it.
    tail = out.stdout.strip().splitlines()[-3:]
    assert tail[0].startswith("result of toy_smoke at step 2 (") and tail[1].startswith("  test MSE ")
    assert tail[2].startswith("done: completed at step 2 (wall ") and len(tail[2]) < 60
    head = summary["headline"]
    assert head["lines"] == [tail[1].strip()] and [m["name"] for m in head["metrics"]] == ["test_mse"]
    assert head["metrics"][0]["better"] == "lower"
    assert head["metrics"][0]["value"] == summary["final"]["test_mse"]
    assert {"val_loss", "test_mse", "test_mse_mean_baseline"} <= set(summary["final"])
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
    # results.md: the swept keys, steps, status and the headline metrics; results.csv keeps every column.
    assert md[0] == "| model.hidden_size | steps | status | test_mse (lower is better) |" and len(md) == 4
    assert md[2].startswith("| 4 | 2 | completed | ") and "val_loss" in rows[0]


def test_several_processes_refuse_parallel_none(tmp_path, monkeypatch):
    import jax

    monkeypatch.setattr(jax, "process_count", lambda: 2)  # as in a 2-process run (see test_multiprocess.py)
    with pytest.raises(preflight.RunError, match="'none' runs on one device, but this run has"):
        preflight.check_run(toy_config(**{"train.parallel": "none"}), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_slurm_dry_run_prints_the_batch_scripts_and_submits_nothing(tmp_path):
    workdir = tmp_path / "sweep"
    out = run_launch(f"--config={TOY}:smoke", f"--workdir={workdir}", "--config.train.steps=3",
                     "--sweep=model.hidden_size=4,8", "--slurm_nodes=2", "--slurm_gpus_per_node=4",
                     "--slurm_time=1:00:00", "--slurm_partition=gpu", "--slurm_sbatch=--qos=high",
                     "--slurm_setup=module load cuda", "--slurm_dry_run", timeout=60)
    assert out.returncode == 0, out.stderr
    assert not workdir.exists()
    array, collect = out.stdout.split(f"# {workdir}/slurm-collect.sh")
    lines = array.splitlines()
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --time=1:00:00", "#SBATCH --partition=gpu", "#SBATCH --array=0-1",
                 "#SBATCH --signal=USR1@120", "#SBATCH --requeue", "#SBATCH --qos=high", "module load cuda",
                 'srun --cpus-per-task=1 "${run[@]}"', '  scontrol requeue "$SLURM_JOB_ID"'):
        assert line in lines, line
    points = [line for line in lines if line.startswith(("  0)", "  1)"))]
    assert len(points) == 2 and all("--coordinator_address=auto" in p for p in points)
    for part in (f"--workdir={workdir}/model.hidden_size=8 ", "--config.model.hidden_size=8 ",
                 "--config.train.steps=3 "):
        assert part in points[1], part
    assert "--dependency=afterany:" in collect.splitlines()[0]
    assert "#SBATCH --ntasks-per-node=1" in collect and "--sweep_collect" in collect
    assert "--gpus-per-node" not in collect and "--coordinator_address" not in collect
    for script in (array, collect):  # each is a valid bash script
        text = script[script.index("#!/bin/bash"):]
        assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0, text


def test_slurm_without_sbatch_is_an_environment_error(tmp_path):
    env = {**launch_env(), "PATH": str(tmp_path)}  # no sbatch on the PATH (python is named by its full path)
    out = subprocess.run(launch_cmd(f"--config={TOY}:smoke", f"--workdir={tmp_path / 'run'}", "--slurm"),
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out.stderr[-3000:]
    assert len(error_lines(out)) == 1 and "sbatch not found: submit from a SLURM login node" in out.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--slurm_nodes=2", "--slurm_gpus_per_node=4", "--slurm_tasks_per_node=1"], "needs one task per GPU"),
    (["--slurm_time=soon"], "--slurm_time: 'soon' is no SLURM time"),
    (["--slurm_nodes=0"], "--slurm_nodes: expected >= 1, got 0"),
    (["--slurm_sbatch=qos=high"], "--slurm_sbatch: expected an sbatch option"),
])
def test_slurm_flags_refuse_what_slurm_or_jax_cannot_use(args, message):
    from absl import flags

    from seqjax import cli, slurm

    values = flags.FlagValues()
    slurm.define_flags(values)
    values(["launch.py", *args])
    with pytest.raises(cli.UsageError, match=re.escape(message)):
        slurm.resources(values, "toy_smoke")
