"""launch.py on a SLURM cluster: a run as one batch job of N nodes x T tasks, a sweep as one job array, and
requeue on the time-limit warning. `launch.py ... --slurm` writes the batch script into the workdir and
submits it with `sbatch`; `--slurm_dry_run` prints it and submits nothing.

- Multi-process: every task runs launch.py under `srun` with `--coordinator_address=auto`, so each calls
  `jax.distributed.initialize()` with no address: JAX reads the process count (SLURM_NTASKS), this
  process's id (SLURM_PROCID) and the coordinator (the step's first node, a port derived from the job id)
  from SLURM's environment. JAX also restricts each task to the GPU numbered SLURM_LOCALID, hence one task
  per GPU (`--slurm_tasks_per_node` defaults to `--slurm_gpus_per_node`).
- Time limit: `--signal=USR1@S` asks SLURM for SIGUSR1 S seconds before the limit. launch.py stops on it as
  on SIGTERM (every process after the same step, with a checkpoint; seqjax/stopping.py) and exits with
  REQUEUE_STATUS; the script then runs `scontrol requeue`, and the job starts again with the same command,
  which resumes the workdir's checkpoint exactly. A job that SLURM preempts or requeues itself receives
  SIGTERM: it saves likewise, and SLURM restarts it. A requeued job waits the lifetime of SLURM's job
  credentials plus 1 s before it can start again (slurm.conf's AuthInfo cred_expire, 120 s by default).
- Sweep: array task i runs grid point i in its own workdir under --workdir; a second job waits for the whole
  array (`--dependency=afterany`) and collects every point's summary.json into results.csv/results.md
  (`launch.py --sweep_collect`, which also runs by hand at any time).

Plain sbatch scripts, not submitit: the script is the artifact a user reads, edits and resubmits, and the
dry run prints exactly what runs; submitit pickles a Python callable into its own script, and its
checkpoint-and-requeue machinery would duplicate what stopping.py and the checkpoints already do.
Standard library only: submitting imports neither JAX nor the experiment's data.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess

from absl import flags

from seqjax.cli import UsageError

REQUEUE_STATUS = 75  # launch.py's exit status after SIGUSR1 with the state saved (sysexits' EX_TEMPFAIL)
WARNING_SIGNAL = "USR1"
# SLURM's time formats: minutes, minutes:seconds, hours:minutes:seconds, days-hours[:minutes[:seconds]].
_TIME = re.compile(r"\d+(:\d+){0,2}|\d+-\d+(:\d+){0,2}")


def define_flags(values: flags.FlagValues) -> None:
    """launch.py's --slurm* flags (submission settings, not config: they may change on any resubmission)."""
    flags.DEFINE_bool("slurm", False, "Submit the run (or the sweep, as one job array) to SLURM with sbatch "
                      "instead of running it here.", flag_values=values)
    flags.DEFINE_bool("slurm_dry_run", False, "Print the batch script(s) --slurm would submit; submit "
                      "nothing.", flag_values=values)
    flags.DEFINE_integer("slurm_nodes", 1, "Nodes per run.", flag_values=values)
    flags.DEFINE_integer("slurm_tasks_per_node", None, "Processes per node (default: one per GPU, else 1).",
                         flag_values=values)
    flags.DEFINE_integer("slurm_gpus_per_node", 0, "GPUs per node.", flag_values=values)
    flags.DEFINE_integer("slurm_cpus_per_task", 1, "CPUs per process.", flag_values=values)
    flags.DEFINE_string("slurm_time", "", "Time limit per job, e.g. 04:00:00 or 1-12 ('' = the partition's).",
                        flag_values=values)
    flags.DEFINE_string("slurm_partition", "", "Partition ('' = the cluster's default).", flag_values=values)
    flags.DEFINE_string("slurm_account", "", "Account to charge ('' = your default).", flag_values=values)
    flags.DEFINE_integer("slurm_warning_s", 120, "SIGUSR1 this many seconds before the time limit: save, "
                         "stop and requeue.", flag_values=values)
    flags.DEFINE_string("slurm_job_name", "", "Job name ('' = the experiment's name).", flag_values=values)
    flags.DEFINE_multi_string("slurm_sbatch", [], "An extra sbatch option, one per flag: "
                              "--slurm_sbatch=--qos=high.", flag_values=values)
    flags.DEFINE_multi_string("slurm_setup", [], "A shell line run before the job's command, one per flag: "
                              "--slurm_setup='module load cuda'.", flag_values=values)


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one job asks SLURM for (the --slurm_* flags)."""
    job_name: str
    nodes: int
    tasks_per_node: int
    gpus_per_node: int
    cpus_per_task: int
    time: str
    partition: str
    account: str
    warning_s: int
    sbatch: tuple[str, ...]
    setup: tuple[str, ...]

    @property
    def tasks(self) -> int:
        return self.nodes * self.tasks_per_node


def resources(values: flags.FlagValues, job_name: str) -> Resources:
    """The flags' Resources, checked: UsageError naming the flag for a value SLURM would refuse or JAX could
    not use."""
    v = values
    tasks_per_node = v.slurm_tasks_per_node if v.slurm_tasks_per_node is not None else max(
        v.slurm_gpus_per_node, 1)
    checks = (("nodes", v.slurm_nodes, 1), ("tasks_per_node", tasks_per_node, 1),
              ("gpus_per_node", v.slurm_gpus_per_node, 0), ("cpus_per_task", v.slurm_cpus_per_task, 1),
              ("warning_s", v.slurm_warning_s, 0))
    for name, value, low in checks:
        if value < low:
            raise UsageError(f"--slurm_{name}: expected >= {low}, got {value}")
    if v.slurm_time and not _TIME.fullmatch(v.slurm_time):
        raise UsageError(f"--slurm_time: {v.slurm_time!r} is no SLURM time (minutes, hours:minutes:seconds, "
                         "days-hours[:minutes[:seconds]])")
    bad = [line for line in v.slurm_sbatch if not line.startswith("-")]
    if bad:
        raise UsageError(f"--slurm_sbatch: expected an sbatch option such as --qos=high, got {bad[0]!r}")
    if v.slurm_gpus_per_node > 1 and v.slurm_nodes * tasks_per_node > 1 and \
            tasks_per_node != v.slurm_gpus_per_node:
        raise UsageError(f"--slurm_tasks_per_node: {tasks_per_node} tasks for {v.slurm_gpus_per_node} GPUs "
                         "per node; a multi-process run needs one task per GPU (under SLURM, "
                         "jax.distributed.initialize() gives each task the GPU numbered SLURM_LOCALID only)")
    return Resources(v.slurm_job_name or job_name, v.slurm_nodes, tasks_per_node, v.slurm_gpus_per_node,
                     v.slurm_cpus_per_task, v.slurm_time, v.slurm_partition, v.slurm_account,
                     v.slurm_warning_s, tuple(v.slurm_sbatch), tuple(v.slurm_setup))


def _header(r: Resources, job_name: str, chdir: str, output: str, nodes: int, tasks_per_node: int,
            gpus_per_node: int) -> list[str]:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={job_name}", f"#SBATCH --nodes={nodes}",
             f"#SBATCH --ntasks-per-node={tasks_per_node}", f"#SBATCH --cpus-per-task={r.cpus_per_task}"]
    if gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={gpus_per_node}")
    for option, value in (("time", r.time), ("partition", r.partition), ("account", r.account)):
        if value:
            lines.append(f"#SBATCH --{option}={value}")
    lines += [f"#SBATCH --chdir={chdir}", f"#SBATCH --output={output}"]
    return lines


def _join(command: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in command)


def batch_script(r: Resources, commands: list[list[str]], chdir: str, output: str, array: bool) -> str:
    """The job's script: `commands` holds the run's command, or with `array` one per array task (a sweep's
    points).

    Every task of the job runs the command under srun; an exit status of REQUEUE_STATUS (stopped on the
    time-limit warning, state saved) requeues the job.
    """
    lines = _header(r, r.job_name, chdir, output, r.nodes, r.tasks_per_node, r.gpus_per_node)
    if array:
        lines.append(f"#SBATCH --array=0-{len(commands) - 1}")
    lines += [
        "#SBATCH --open-mode=append",
        f"#SBATCH --signal={WARNING_SIGNAL}@{r.warning_s}",
        "#SBATCH --requeue",
        *(f"#SBATCH {line}" for line in r.sbatch),
        f"# SIG{WARNING_SIGNAL} {r.warning_s} s before the time limit: launch.py saves, stops and exits "
        f"{REQUEUE_STATUS};",
        "# this script then requeues the job, which resumes from that checkpoint (one log, appended).",
        *r.setup]
    if not array:
        lines.append(f"run=({_join(commands[0])})")
    else:
        lines.append('case "$SLURM_ARRAY_TASK_ID" in  # one grid point per array task')
        lines += [f"  {i}) run=({_join(c)}) ;;" for i, c in enumerate(commands)]
        lines.append("esac")
    lines += [
        'echo "seqjax: job $SLURM_JOB_ID on $SLURM_JOB_NODELIST, restart ${SLURM_RESTART_COUNT:-0}"',
        f'srun --cpus-per-task={r.cpus_per_task} "${{run[@]}}"',
        "status=$?",
        f'if [ "$status" -eq {REQUEUE_STATUS} ]; then',
        '  echo "seqjax: stopped before the time limit with its state saved; requeueing job $SLURM_JOB_ID"',
        '  scontrol requeue "$SLURM_JOB_ID"',
        "fi",
        'exit "$status"']
    return "\n".join(lines) + "\n"


def collect_script(r: Resources, command: list[str], chdir: str, output: str) -> str:
    """The job that collects a sweep's table once its array has ended: one process, no GPU."""
    lines = _header(r, f"{r.job_name}-collect", chdir, output, 1, 1, 0)
    lines += [*(f"#SBATCH {line}" for line in r.sbatch), *r.setup, _join(command)]
    return "\n".join(lines) + "\n"


class SubmitError(Exception):
    """sbatch is missing or refused the job."""


def submit(script_path: str, *options: str) -> str:
    """`sbatch --parsable [options] script_path` -> the job id."""
    out = subprocess.run(["sbatch", "--parsable", *options, script_path], capture_output=True, text=True)
    if out.returncode != 0:
        raise SubmitError(f"sbatch refused {script_path}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout.strip().split(";")[0]  # "id" or "id;cluster"


def write_script(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return path


def launch(r: Resources, commands: list[list[str]], collect_command: list[str] | None, workdir: str,
           dry_run: bool) -> list[str]:
    """Submit the run (one command) or the sweep (one per point, then `collect_command` after the array);
    with dry_run print the scripts instead. Returns the printed lines (the scripts, or the job ids)."""
    chdir = os.getcwd()
    sweep = collect_command is not None
    log = os.path.join(workdir, "slurm-%A_%a.out" if sweep else "slurm-%j.out")
    script = batch_script(r, commands, chdir, log, array=sweep)
    collect = None
    if collect_command is not None:
        collect = collect_script(r, collect_command, chdir, os.path.join(workdir, "slurm-%j.out"))
    if dry_run:
        out = [f"# {os.path.join(workdir, 'slurm.sh')}", script]
        if collect is not None:
            out += [f"# {os.path.join(workdir, 'slurm-collect.sh')}, submitted with "
                    "--dependency=afterany:<the array's job id>", collect]
        return out
    if shutil.which("sbatch") is None:  # before anything is written
        raise SubmitError("sbatch not found: submit from a SLURM login node (--slurm_dry_run prints the "
                          "script without submitting)")
    os.makedirs(workdir, exist_ok=True)  # the logs' directory must exist when the job starts
    job = submit(write_script(os.path.join(workdir, "slurm.sh"), script))
    out = [f"submitted job {job}: {len(commands) if sweep else r.tasks} "
           f"{'array tasks' if sweep else 'task(s)'}, log {log.replace('%j', job).replace('%A', job)}"]
    if collect is not None:
        collect_job = submit(write_script(os.path.join(workdir, "slurm-collect.sh"), collect),
                             f"--dependency=afterany:{job}")
        out.append(f"submitted job {collect_job}: collects {os.path.join(workdir, 'results.md')} after "
                   f"job {job} ends")
    return out
