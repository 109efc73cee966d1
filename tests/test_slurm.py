"""launch.py --slurm against a real SLURM (Debian's slurm-wlm: slurmctld + slurmd + munged on this host, from
.ci/slurm): a 2-task job equals the 1-process run, a 3-point sweep is one job array with one collected table,
and SIGUSR1 (the time-limit warning) saves, requeues and resumes to the uninterrupted run's final state.

The cluster: the one .ci/run starts, or one this module starts itself (and the last test process using it
stops it). The tests skip only where SLURM is not installed (`apt-get install -y slurm-wlm munge`).
"""
import csv
import fcntl
import json
import os
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
from helpers_train import ROOT, TOY, final_params, launch_cmd, launch_env, overrides, toy_config

from seqjax import slurm, sweep, train

if not all(shutil.which(tool) for tool in ("sbatch", "slurmctld", "slurmd", "munged")):
    pytest.skip("SLURM is not installed (Debian: apt-get install -y slurm-wlm munge; .ci/run installs it)",
                allow_module_level=True)

CTL = os.path.join(ROOT, ".ci", "slurm")
SLURM_DIR = os.environ.get("SEQJAX_SLURM_DIR", f"/tmp/seqjax-slurm-{os.getuid()}")
SLURM_CONF = os.path.join(SLURM_DIR, "slurm.conf")
STARTED_HERE = os.path.join(SLURM_DIR, "started-by-tests")


@pytest.fixture(scope="module")
def cluster():
    """The cluster's environment for clients (SLURM_CONF). A shared lock on users.lock marks each test process
    using it; on leaving, the process that gets the exclusive lock (no other user) stops a cluster that tests
    started."""
    os.makedirs(SLURM_DIR, exist_ok=True)
    users = open(os.path.join(SLURM_DIR, "users.lock"), "w")
    fcntl.flock(users, fcntl.LOCK_SH)
    env = {**os.environ, "SLURM_CONF": SLURM_CONF}
    if subprocess.run(["bash", CTL, "status"], env=env).returncode != 0:
        out = subprocess.run(["bash", CTL, "start"], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        open(STARTED_HERE, "w").close()
    try:
        yield SLURM_CONF
    finally:
        fcntl.flock(users, fcntl.LOCK_UN)
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # another test process still uses the cluster; it stops it
        else:
            if os.path.exists(STARTED_HERE):
                subprocess.run(["bash", CTL, "stop"], env=env)
                os.remove(STARTED_HERE)
        users.close()


def env_for(conf: str, devices: int) -> dict:
    return {**launch_env(devices), "SLURM_CONF": conf}  # sbatch passes the environment on to the job


def submit(conf: str, devices: int, *args) -> list[str]:
    """launch.py --slurm with `args`: the job ids it reports."""
    out = subprocess.run(launch_cmd(*args, "--slurm"), cwd=ROOT, env=env_for(conf, devices),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return re.findall(r"^submitted job (\d+)", out.stdout, re.M)


def job_info(conf: str, job: str) -> list[dict]:
    """`scontrol show job` as one dict per job (one per array task)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", job], env={**os.environ, "SLURM_CONF": conf},
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [dict(field.split("=", 1) for field in line.split() if "=" in field)
            for line in out.stdout.splitlines() if line.strip()]


def wait_for(conf: str, job: str, done, what: str, timeout: float = 180) -> list[dict]:
    deadline = time.time() + timeout
    while True:
        info = job_info(conf, job)
        if done(info):
            return info
        assert time.time() < deadline, f"job {job}: not {what} after {timeout} s: {info}"
        time.sleep(0.1)


def wait_ended(conf: str, job: str) -> list[dict]:
    ended = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")
    return wait_for(conf, job, lambda info: all(i["JobState"] in ended for i in info), "ended")


def read(path) -> str:
    return open(path).read() if os.path.exists(path) else f"({path} missing)"


TWO_TASKS = {"train.steps": 4, "train.checkpoint_every": 2, "train.plots": False}


def test_two_task_job_matches_one_process(cluster, tmp_path):
    single = str(tmp_path / "single")
    train.train_and_evaluate(toy_config(**TWO_TASKS), single)

    workdir = tmp_path / "job"
    # 2 tasks x 2 CPU devices: the same 4 devices as the single run, in two processes.
    [job] = submit(cluster, 2, f"--config={TOY}:smoke", f"--workdir={workdir}", *overrides(TWO_TASKS),
                   "--slurm_tasks_per_node=2")
    [info] = wait_ended(cluster, job)
    log = read(workdir / f"slurm-{job}.out")
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), log[-3000:]
    assert info["NumTasks"] == "2" and "done: completed at step 4" in log, log[-3000:]
    # jax.distributed found both processes through SLURM (the run's config records what it found).
    assert json.load(open(workdir / "config.json"))["distributed"]["num_processes"] == 2
    a, b = final_params(str(workdir)), final_params(single)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)


FAST = {"train.steps": 2, "train.log_every": 1, "train.checkpoint_every": 0, "train.plots": False}


def test_sweep_is_one_job_array_and_one_collected_table(cluster, tmp_path):
    array, collect = submit(cluster, 1, f"--config={TOY}:smoke", f"--workdir={tmp_path}", *overrides(FAST),
                            "--sweep=model.hidden_size=4,8,12")
    [info] = wait_ended(cluster, collect)  # after the whole array (--dependency=afterany)
    assert info["JobState"] == "COMPLETED", read(tmp_path / f"slurm-{collect}.out")
    tasks = job_info(cluster, array)
    assert sorted(int(t["ArrayTaskId"]) for t in tasks) == [0, 1, 2]
    assert all(t["JobState"] == "COMPLETED" for t in tasks), [t["JobState"] for t in tasks]
    for size in (4, 8, 12):
        summary = json.load(open(tmp_path / f"model.hidden_size={size}" / "summary.json"))
        assert summary["status"] == "completed" and summary["config"]["model"]["hidden_size"] == size
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [(r["model.hidden_size"], r["status"], r["steps"]) for r in rows] == [
        ("4", "completed", "2"), ("8", "completed", "2"), ("12", "completed", "2")]
    md = open(tmp_path / "results.md").read().splitlines()
    assert md[0] == "| model.hidden_size | steps | status | test_mse (lower is better) |" and len(md) == 5
    # Collecting again (as `launch.py --sweep_collect` does) with one point's summary gone: a "missing" row.
    os.remove(tmp_path / "model.hidden_size=8" / "summary.json")
    grid = sweep.parse_sweep("model.hidden_size=4,8,12", toy_config())
    rows = sweep.collect(str(tmp_path), grid).rows
    assert [r["status"] for r in rows] == ["completed", sweep.MISSING, "completed"]


# Long enough to be signalled mid-run (250 to 800 steps/s here); no checkpoint but the one the signal makes.
LONG = {"train.steps": 3000, "train.log_every": 10, "train.eval_every": 0, "train.checkpoint_every": 0,
        "train.plots": False}


def test_time_limit_warning_saves_requeues_and_resumes_exactly(cluster, tmp_path):
    workdir = tmp_path / "job"
    [job] = submit(cluster, 4, f"--config={TOY}:smoke", f"--workdir={workdir}", *overrides(LONG))
    metrics = workdir / "metrics.jsonl"
    wait_for(cluster, job, lambda info: os.path.exists(metrics) and os.path.getsize(metrics) > 0,
             "training", timeout=120)
    # What SLURM sends --slurm_warning_s seconds before the time limit (--signal=USR1@120).
    client = {**os.environ, "SLURM_CONF": cluster}
    subprocess.run(["scancel", f"--signal={slurm.WARNING_SIGNAL}", job], env=client, check=True)
    wait_for(cluster, job, lambda i: int(i[0]["Restarts"]) == 1, "requeued")
    # The requeued job waits cred_expire + 1 s (11 s on the test cluster, .ci/slurm; 121 s by default).
    straight = str(tmp_path / "straight")  # the uninterrupted run, meanwhile
    train.train_and_evaluate(toy_config(**LONG), straight)
    [info] = wait_ended(cluster, job)
    log = read(workdir / f"slurm-{job}.out")
    assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), log[-3000:]
    stopped = re.search(r"received SIGUSR1 at step (\d+): saving", log)
    assert stopped and 0 < int(stopped.group(1)) < LONG["train.steps"], log[-3000:]
    assert f"requeueing job {job}" in log and "restart 1" in log
    assert f"resumed from checkpoint step {stopped.group(1)}" in log, log[-3000:]
    assert f"done: completed at step {LONG['train.steps']}" in log
    a, b = final_params(str(workdir)), final_params(straight)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
