"""Run an experiment, list experiments, or run a sweep.

    python launch.py --config=experiments/<name>.py[:variant] --workdir=DIR [--config.optim.lr=3e-4 ...]
    python launch.py --list                                  # experiments and their variants
    python launch.py --config=experiments/<name>.py[:variant] [--config.a.b=...] --show_config
    python launch.py --config=... --workdir=DIR --sweep='optim.lr=1e-3,3e-3;model.hidden=8,16'
    (add --sweep_launch to print one command per grid point instead of running them, --sweep_collect to
    write the results table from the points' workdirs)
    python launch.py --config=... --workdir=DIR --slurm [--slurm_nodes=2 --slurm_gpus_per_node=4 ...]
    (submit to SLURM: a run as one job, a sweep as one job array; --slurm_dry_run prints the batch script)

--show_config prints the resolved config (the variant and every --config.* override applied), each field
with its meaning, and exits; it needs no workdir and loads no data.
A completed run ends with its task's headline figures (units, which way is better, baselines) and
`done: completed at step N (wall Xs)`; workdir/summary.json holds every metric ("final") and the headline.
A sweep writes results.csv (every metric of every point) and results.md (the swept keys, steps, status and
the headline metrics).

A workdir holds one run: resuming it with another config is refused unless --allow_config_change=KEY[,KEY]
names the keys that differ (see seqjax/checkpoint.py).
The run starts with glibc's huge-page malloc (or tcmalloc) where the machine supports it: launch.py
re-executes itself once with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 before JAX loads, and the run log's first
line says which malloc it has (`malloc: ...`); --malloc=system or SEQJAX_MALLOC=system keeps the default
(seqjax/allocator.py says why: page faults were most of the CPU gap to PyTorch).
Multi-host: add --coordinator_address=HOST:PORT --num_processes=N --process_id=I on every process, or
--coordinator_address=auto where JAX reads them from the cluster (under SLURM's srun, Open MPI, a TPU pod
slice). On SLURM, --slurm writes and submits the batch script (seqjax/slurm.py): every task runs under srun
with --coordinator_address=auto, SIGUSR1 before the time limit saves and requeues the job, and the
requeued job resumes exactly.

Every config value is checked, the task and model built once, before the workdir is touched
(seqjax/preflight.py). Errors print one line on stderr. Exit statuses:
    0  completed, or interrupted by SIGTERM/SIGINT with its state saved (summary.json: "interrupted")
    1  training failed: a non-finite loss (the message names the last good checkpoint)
    2  usage: unknown experiment, config key or flag, a value of the wrong type or out of range
    3  environment: a data package or data file missing, a workdir that is a file or not writable, an
       unreadable checkpoint (train.init_from, or every checkpoint of the workdir); --slurm without sbatch,
       or sbatch refusing the job
    4  disk full: no space left on the workdir's disk
    75 interrupted by SIGUSR1 with its state saved: the time-limit warning of a SLURM job, whose batch
       script requeues the job on this status
    134 (SIGABRT; -6 to subprocess) multi-process: a peer process was lost; jax ends the processes left
       with "Terminating process because the JAX distributed service detected fatal errors" within
       parallel.HEARTBEAT_TIMEOUT_S (seqjax/parallel.py)
A signal stops a sweep after the point it interrupts.
"""
from __future__ import annotations

import ast
import os
import shlex
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from seqjax import (
    allocator,  # standard library only: it runs before JAX is imported
    slurm,
    sweep,
)
from seqjax.cli import UsageError

ROOT = os.path.dirname(os.path.abspath(__file__))
EXPERIMENTS = os.path.join(ROOT, "experiments")

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "experiments/<name>.py[:variant]", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, plots and summary.json.")
flags.DEFINE_bool("list", False, "List the experiments with their one-line descriptions and variants, "
                  "and exit.")
flags.DEFINE_bool("show_config", False, "Print the resolved config of --config (with its --config.* "
                  "overrides), each field with its meaning, and exit.")
flags.DEFINE_string("sweep", "", "Grid 'a.b=v1,v2;c.d=w1,w2'; one run per point under --workdir.")
flags.DEFINE_bool("sweep_launch", False, "With --sweep: print one command per point instead of running them.")
flags.DEFINE_bool("sweep_collect", False, "With --sweep: write results.csv/results.md from the points' "
                  "summary.json files under --workdir (however they ran) and exit.")
flags.DEFINE_list("allow_config_change", [], "Resume a workdir although these config keys (a.b, or a "
                  "section) differ from its saved config; the old config is kept as config.<step>.json.")
flags.DEFINE_string("coordinator_address", "", "host:port of process 0, for multi-process runs; 'auto': JAX "
                    "reads it, the process count and id from the cluster (SLURM srun, Open MPI, TPU pod).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-process runs).")
flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")
slurm.define_flags(FLAGS)
flags.DEFINE_enum("malloc", "auto", allocator.CHOICES, "The process's malloc (seqjax/allocator.py): 'auto' "
                  "re-executes launch.py once with glibc's huge pages (or tcmalloc) where supported; "
                  "'system' keeps the default malloc (so does SEQJAX_MALLOC=system).")
MALLOC: allocator.Decision | None = None  # what tune_process decided, logged once at the start of a run


def fail(message: str, status: int = 2):
    print(f"launch.py: error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def experiment_name(config_arg: str) -> str:
    return os.path.splitext(os.path.basename(config_arg.split(":", 1)[0]))[0]


def list_experiments() -> list[tuple[str, str, dict[str, str]]]:
    """(name, first docstring line, VARIANTS {name: description}) for every experiments/*.py, read without
    importing them (importing would import JAX and the models: seconds per file)."""
    rows = []
    for fname in sorted(os.listdir(EXPERIMENTS)):
        if fname.endswith(".py") and not fname.startswith("_"):
            with open(os.path.join(EXPERIMENTS, fname)) as f:
                tree = ast.parse(f.read())
            doc = (ast.get_docstring(tree) or "").strip()
            variants = {}
            for node in tree.body:
                targets = [getattr(t, "id", None) for t in getattr(node, "targets", ())]
                if isinstance(node, ast.Assign) and "VARIANTS" in targets:
                    variants = ast.literal_eval(node.value)
            rows.append((fname[:-3], doc.splitlines()[0] if doc else "(no docstring)", variants))
    return rows


def print_list() -> None:
    for name, doc, variants in list_experiments():
        print(f"{name:24s} {doc}")
        for variant, text in variants.items():
            print(f"    :{variant:<19s} {text}")  # indented: one experiment per unindented line


def usage() -> str:
    """--help: this module's docstring and launch.py's own flags, --slurm* included (not absl's logging
    flags)."""
    flag_help = (FLAGS.module_help(sys.modules[__name__]) or FLAGS.main_module_help()).replace(
        "__main__:", "launch.py:", 1) + "\n" + FLAGS.module_help(slurm.__name__).replace(
        f"{slurm.__name__}:", "launch.py, submitting to SLURM (seqjax/slurm.py):", 1)
    return f"usage: python launch.py [flags]\n\n{__doc__.strip() if __doc__ else ''}\n\nflags:\n{flag_help}"


def _config_arg(argv) -> str | None:
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            return a.split("=", 1)[1]
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _first_unknown_key(config_arg: str, argv) -> str | None:
    """The first --config.<key> override that names no field of the experiment's default config."""
    import importlib.util

    path, _, variant = config_arg.partition(":")
    spec = importlib.util.spec_from_file_location("_launch_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant or None) if variant else module.get_config()
    for a in argv:
        if a.startswith("--config.") or a.startswith("--noconfig."):
            key = a.split("=", 1)[0].split(".", 1)[1]
            try:
                sweep.get_field(config, key)
            except UsageError:
                return key
    return None


def parse_flags(argv):
    if any(a in ("--help", "-h", "--helpshort", "-?") for a in argv[1:]):
        print(usage(), flush=True)  # absl would print every flag of every library and exit 1
        sys.exit(0)
    config_arg = _config_arg(argv)
    if config_arg is not None:
        path = config_arg.split(":", 1)[0]
        if not os.path.isfile(path):
            fail(f"unknown experiment {path!r}: no such file (see --list)")
    try:
        args = FLAGS(argv)
        if config_arg is not None:
            FLAGS.config.keys()  # config_flags defers load errors to first use
        return args
    except Exception as e:  # noqa: BLE001 - every parse failure becomes a one-line usage error
        if config_arg is not None and isinstance(e, (AttributeError, KeyError)):
            try:
                key = _first_unknown_key(config_arg, argv)
            except Exception:  # noqa: BLE001
                key = None
            if key:
                fail(f"unknown config key {key!r} in {config_arg}")
        lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
        fail(lines[-1] if lines else type(e).__name__)


def run_args(workdir: str, *sets: str) -> list[str]:
    """launch.py's arguments for one run in `workdir`: this command's --config, its --config.* overrides and
    --allow_config_change, then `sets`."""
    argv, overrides = sys.argv[1:], []
    for i, a in enumerate(argv):
        if a.startswith(("--config.", "--noconfig.")):
            separate = "=" not in a and i + 1 < len(argv) and not argv[i + 1].startswith("--")
            overrides.append(f"{a}={argv[i + 1]}" if separate and a.startswith("--config.") else a)
    allow = FLAGS.allow_config_change
    allow = [f"--allow_config_change={','.join(allow)}"] if allow else []
    return [f"--config={FLAGS['config'].serialize().split('=', 1)[1]}", f"--workdir={workdir}", *overrides,
            *allow, *sets]


def point_sets(point) -> list[str]:
    return [f"--config.{key}={text}" for key, _, text in point]


def submit_slurm(grid, name: str) -> int:
    """--slurm: the run as one job (every task under srun, jax.distributed from SLURM's environment), or the
    sweep as one job array and a job that collects its table (seqjax/slurm.py)."""
    if FLAGS.coordinator_address or FLAGS.num_processes is not None or FLAGS.process_id is not None:
        fail("--slurm: every task finds its peers through SLURM (--coordinator_address=auto); drop "
             "--coordinator_address, --num_processes and --process_id")
    try:
        resources = slurm.resources(FLAGS, name)
    except UsageError as e:
        fail(str(e))
    workdir = os.path.abspath(FLAGS.workdir)
    run = [sys.executable, os.path.join(ROOT, "launch.py")]
    auto = ["--coordinator_address=auto"] if resources.tasks > 1 else []
    if grid is None:
        commands, collect = [[*run, *run_args(workdir), *auto]], None
    else:
        commands = [[*run, *run_args(os.path.join(workdir, sweep.point_name(p)), *point_sets(p)), *auto]
                    for p in grid]
        collect = [*run, *run_args(workdir), f"--sweep={FLAGS.sweep}", "--sweep_collect"]
    try:
        print("\n".join(slurm.launch(resources, commands, collect, workdir, FLAGS.slurm_dry_run)), flush=True)
    except slurm.SubmitError as e:
        fail(str(e), status=3)
    return 0


def exit_status(summary: dict) -> int:
    """0 completed or stopped by a signal; slurm.REQUEUE_STATUS stopped by SIGUSR1 (the time-limit warning
    the SLURM batch script asks for); 1 otherwise."""
    if summary["status"] == "interrupted":
        signal = (summary["interruption"] or {}).get("signal")
        return slurm.REQUEUE_STATUS if signal == f"SIG{slurm.WARNING_SIGNAL}" else 0
    return 0 if summary["status"] == "completed" else 1


def main(argv):
    logging.set_verbosity(logging.WARNING)  # keep orbax's per-save INFO lines off the console
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}")
    if FLAGS.list:
        print_list()
        return 0
    if FLAGS.config is None:
        fail("--config is required (e.g. --config=experiments/toy_smoke.py:smoke); see --list")
    if FLAGS.show_config:
        from seqjax import configs

        print(f"# {config_flags.get_config_filename(FLAGS['config'])} with its --config.* overrides: "
              "key = value, then its meaning")
        print("\n".join(configs.describe(FLAGS.config)))
        return 0
    if not FLAGS.workdir:
        fail("--workdir is required")
    config = FLAGS.config
    config_arg = config_flags.get_config_filename(FLAGS["config"])
    name = experiment_name(config_arg)
    try:
        grid = sweep.parse_sweep(FLAGS.sweep, config) if FLAGS.sweep else None
    except UsageError as e:
        fail(str(e))
    if FLAGS.sweep_collect or FLAGS.sweep_launch:
        if grid is None:
            fail(f"--{'sweep_collect' if FLAGS.sweep_collect else 'sweep_launch'} needs --sweep")
    if FLAGS.slurm or FLAGS.slurm_dry_run:
        return submit_slurm(grid, name)
    if FLAGS.sweep_collect:
        results = sweep.collect(FLAGS.workdir, grid)
        paths = results.write(FLAGS.workdir)
        missing = sum(row["status"] == sweep.MISSING for row in results.rows)
        print(f"sweep results: {paths[0]}, {paths[1]} ({len(grid)} points, {missing} without summary.json)",
              flush=True)
        return 0
    if FLAGS.sweep_launch:
        for point in grid:
            cmd = ["python", "launch.py", *run_args(os.path.join(FLAGS.workdir, sweep.point_name(point)),
                                                    *point_sets(point))]
            print(" ".join(shlex.quote(c) for c in cmd))
        return 0
    if FLAGS.coordinator_address or FLAGS.num_processes:
        if FLAGS.coordinator_address == "auto" and (FLAGS.num_processes is not None or
                                                    FLAGS.process_id is not None):
            fail("--coordinator_address=auto reads the process count and this process's id from the cluster: "
                 "drop --num_processes and --process_id")
        with config.unlocked():
            config.distributed.coordinator_address = FLAGS.coordinator_address
            config.distributed.num_processes = FLAGS.num_processes or 1
            config.distributed.process_id = FLAGS.process_id or 0

    if MALLOC is not None:
        print(allocator.describe(MALLOC), flush=True)
    # Multi-process setup must precede any other JAX use.
    from seqjax import parallel, preflight, stopping
    d = config.distributed
    try:
        if parallel.initialize_distributed(d.coordinator_address, d.num_processes, d.process_id) and \
                d.coordinator_address == parallel.AUTO:
            import jax
            with config.unlocked():  # the run's saved config records what JAX found
                d.num_processes, d.process_id = jax.process_count(), jax.process_index()
    except ValueError as e:
        fail(str(e))
    from seqjax.checkpoint import CheckpointError
    from seqjax.train import NonFiniteLossError, train_and_evaluate
    from seqjax.workdir import WorkdirError

    allow = tuple(FLAGS.allow_config_change)
    try:
        if grid is None:
            # From here a signal stops the run with a saved state and a summary (in every process at the same
            # step): one received while the config is checked or the data loaded stops it before step 1.
            with stopping.StopSignals("setup") as stop:
                task = preflight.check_run(config, FLAGS.workdir)
                summary = train_and_evaluate(config, FLAGS.workdir, name, allow, task=task, stop=stop)
            return exit_status(summary)
        points = []
        tasks = {}  # one task per distinct data config: building one loads its data
        for point in grid:
            point_config = sweep.point_config(config, point)
            workdir = os.path.join(FLAGS.workdir, sweep.point_name(point))
            data_key = (point_config.task, point_config.data.to_json(sort_keys=True))
            tasks[data_key] = preflight.check_run(point_config, workdir, tasks.get(data_key))
            points.append((point, point_config, workdir, tasks[data_key]))
        results, status = sweep.Results(grid), 0
        for point, point_config, workdir, task in points:
            print(f"== sweep point {sweep.point_name(point)} -> {workdir}", flush=True)
            summary = train_and_evaluate(point_config, workdir, name, allow, task=task)
            results.add(point, summary)
            if summary["status"] == "interrupted":
                status = exit_status(summary)
                break
        import jax
        if jax.process_index() == 0:
            paths = results.write(FLAGS.workdir)
            print(f"sweep results: {paths[0]}, {paths[1]}", flush=True)
        return status
    except preflight.RunError as e:
        fail(str(e), e.status)
    except NonFiniteLossError as e:
        fail(str(e), status=1)
    except WorkdirError as e:
        fail(str(e))
    except CheckpointError as e:
        fail(str(e), status=preflight.ENVIRONMENT)
    except Exception as e:
        if preflight.disk_full(e):
            fail(f"disk full: no space left on the disk of --workdir={FLAGS.workdir!r} "
                 f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); free space and run the same "
                 "command again to resume from the last checkpoint", status=preflight.DISK_FULL)
        raise

if __name__ == "__main__":
    try:  # before JAX is imported: glibc reads its tunables at process start, so this may re-execute
        MALLOC = allocator.tune_process(allocator.from_argv(sys.argv[1:]))
    except ValueError as e:
        fail(str(e))
    app.run(main, flags_parser=parse_flags)
