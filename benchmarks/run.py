"""Run seqjax's benchmarks against their peers and write benchmarks/results/latest.json.

    python benchmarks/run.py [NAME ...] [--rounds R] [--quick] [--list] [--no-gemm]

A benchmark family is a module benchmarks/bench_<family>.py defining `BENCHMARKS: dict[str, dict]`:

    BENCHMARKS = {
        "lstm_train": {
            "config": {"B": 32, "T": 128, ...},        # shown in the table, passed to every setup
            "quick_config": {"T": 32},                # optional overrides under --quick
            "kind": "time",                           # "time" (default) | "memory" | "compile"
            "flops": 1.2e9,                           # FLOPs of one call, or None
            "impls": {"seqjax": "bench_recurrent:setup_seqjax_lstm", "torch": "peers.torch_rnn:setup_lstm"},
            "subject": "seqjax",                      # the implementation being judged
            "peers": ["torch"],                       # compared with the subject, one table row each
        },
    }

`setup(config) -> callable` builds everything (parameters, data, compiled step, warm-up) and returns a
no-argument callable that runs ONE step and blocks until it is done. For kind "memory" the callable returns
peak bytes, for kind "compile" seconds of compile time. `flops` may also be a function of the config (used
with --quick). A bench module must not import jax or torch at top level (the runner imports every module to
read BENCHMARKS; the workers import only their own implementation's module).

Method: each implementation runs in its own persistent worker process (benchmarks/worker.py). After setup,
rounds are interleaved: in round r every worker in turn times its step a few times (enough for ~0.25 s), and
a round's figure is the median of those calls; the reported time is the median over rounds. The load average
is recorded before and after each benchmark. The f32 GEMM peak (benchmark "gemm_f32", JAX and torch) is
measured in the same run, so each benchmark's GFLOP/s can be shown as a fraction of what a plain matmul gets.

Settings: every benchmark runs once per (allocator, threads) setting, both sides always on the same one, so
nothing wins by configuration alone. `--malloc system,auto` (the default) runs every worker first on the
system malloc (SEQJAX_MALLOC=system), then on what seqjax.allocator picks (glibc huge pages where supported);
`--threads all,1` (the default) runs with every core, then pinned to CPU 0 (the workers' affinity, like
`taskset -c 0`) with one intra-op thread (OMP_NUM_THREADS=MKL_NUM_THREADS=1, XLA without Eigen threads). Each
worker reports the allocator in effect; a benchmark whose implementations disagree is an error. The last table
shows the subject/peer ratio of each setting side by side.
"""
from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
for _path in (REPO_ROOT, BENCH_DIR):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from common import median, merge  # noqa: E402

RESULTS = os.path.join(BENCH_DIR, "results", "latest.json")
GEMM = "gemm_f32"
KINDS = {"time": "ms", "memory": "MiB", "compile": "s"}
ROUND_SECONDS = 0.25  # time each worker spends per round, so fast steps get several calls
MAX_REPS = 20
SETUP_TIMEOUT = 900.0
RUN_TIMEOUT = 900.0


# ------------------------------------------------------------------------------------------- discovery

def discover(verbose: bool = True) -> dict[str, dict]:
    """Every benchmark of every benchmarks/bench_*.py, by name. A module that fails to import is skipped."""
    benchmarks: dict[str, dict] = {}
    for path in sorted(glob.glob(os.path.join(BENCH_DIR, "bench_*.py"))):
        module_name = os.path.splitext(os.path.basename(path))[0]
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # another family being broken must not stop the rest
            if verbose:
                print(f"warning: skipping {module_name}: {type(error).__name__}: {error}", file=sys.stderr)
            continue
        for framework in ("jax", "torch"):
            if framework in sys.modules:
                raise RuntimeError(f"{module_name} imports {framework} at top level; import it inside the "
                                   "setup functions so each worker loads only its own framework")
        for name, spec in getattr(module, "BENCHMARKS", {}).items():
            if name in benchmarks:
                raise ValueError(f"benchmark {name!r} defined in both {benchmarks[name]['module']} and "
                                 f"{module_name}")
            benchmarks[name] = validate(name, {**spec, "module": module_name})
    return benchmarks


def validate(name: str, spec: dict) -> dict:
    where = f"benchmark {name!r} ({spec['module']})"
    for key in ("config", "impls"):
        if key not in spec:
            raise ValueError(f"{where}: missing key {key!r}")
    spec.setdefault("kind", "time")
    spec.setdefault("flops", None)
    spec.setdefault("subject", "seqjax")
    spec.setdefault("peers", [impl for impl in spec["impls"] if impl != spec["subject"]])
    if spec["kind"] not in KINDS:
        raise ValueError(f"{where}: kind must be one of {sorted(KINDS)}, got {spec['kind']!r}")
    for impl in [spec["subject"], *spec["peers"]]:
        if impl not in spec["impls"]:
            raise ValueError(f"{where}: {impl!r} is not in impls {sorted(spec['impls'])}")
    return spec


# ---------------------------------------------------------------------------------------------- workers

class WorkerProcess:
    """A persistent benchmarks/worker.py process running one implementation."""

    def __init__(self, label: str, env: dict | None = None, cpus: set[int] | None = None):
        self.label = label
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(BENCH_DIR, "worker.py")], cwd=REPO_ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
            preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus))

    def request(self, timeout: float, **message) -> dict:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            why = "it exited" if ready else f"no reply in {timeout:.0f} s"
            raise RuntimeError(f"{self.label}: worker failed ({why})\n{self.log_tail()}")
        reply = json.loads(line)
        if not reply.pop("ok"):
            raise RuntimeError(f"{self.label}: {reply['error']}\n{self.log_tail(10)}")
        return reply

    def log_tail(self, lines: int = 30) -> str:
        self.log.seek(0)
        return "".join(self.log.readlines()[-lines:])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "exit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.log.close()


MALLOCS = ("system", "auto", "hugetlb", "tcmalloc")  # seqjax.allocator's choices
PINNED_CPU = 0


def worker_env(malloc: str, threads: str) -> dict:
    """The environment of every worker of one setting: the allocator (`malloc`, one of MALLOCS) and, for
    threads "1", one intra-op thread in torch (OpenMP/MKL) and in XLA. An allocator set in the runner's own
    environment is removed first, so both sides start from the same place."""
    drop = ("GLIBC_TUNABLES", "LD_PRELOAD", "SEQJAX_MALLOC_DONE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    for var in ("GLIBC_TUNABLES", "LD_PRELOAD"):  # keep unrelated settings, drop only the allocator's
        kept = [p for p in os.environ.get(var, "").replace(" ", ":").split(":")
                if p and "malloc.hugetlb" not in p and "tcmalloc" not in p]
        if kept:
            env[var] = (":" if var == "GLIBC_TUNABLES" else " ").join(kept)
    env["SEQJAX_MALLOC"] = malloc
    if threads == "1":
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    return env


def measure(name: str, spec: dict, config: dict, rounds: int, metric: str = "wall",
            env: dict | None = None, cpus: set[int] | None = None) -> dict:
    """Set up every implementation in its own worker (environment `env`, CPU affinity `cpus`), then time them
    in interleaved rounds."""
    kind = spec["kind"]
    order = [spec["subject"], *spec["peers"]]
    order += [impl for impl in spec["impls"] if impl not in order]
    workers, info, errors = {}, {}, {}
    try:
        for impl in order:  # one setup at a time: compilation must not compete with anything
            worker = WorkerProcess(f"{name}/{impl}", env, cpus)
            try:
                info[impl] = worker.request(SETUP_TIMEOUT, cmd="setup", target=spec["impls"][impl],
                                            config=config, kind=kind)
                workers[impl] = worker
            except RuntimeError as error:
                errors[impl] = str(error)
                print(f"  {impl}: setup failed\n{error}", file=sys.stderr)
                worker.close()
        if kind == "time":
            reps = {impl: max(1, min(MAX_REPS, round(ROUND_SECONDS / max(info[impl]["first_s"], 1e-6))))
                    for impl in workers}
        else:
            reps = dict.fromkeys(workers, 1)
            if kind == "memory":
                rounds = 1  # deterministic (compiled memory analysis), one reading is enough
        per_round = {impl: [] for impl in workers}
        for _ in range(rounds):
            for impl, worker in list(workers.items()):
                time.sleep(0.05)  # let the previous worker's spinning threads go idle
                try:
                    reply = worker.request(RUN_TIMEOUT, cmd="run", n=reps[impl])
                    values = reply["cpu"] if metric == "cpu" and kind == "time" else reply["values"]
                except RuntimeError as error:
                    errors[impl] = str(error)
                    print(f"  {impl}: run failed\n{error}", file=sys.stderr)
                    worker.close()
                    del workers[impl]
                    continue
                per_round[impl].append(median(values))
    finally:
        for worker in workers.values():
            worker.close()
    mallocs = {impl: info[impl]["threads"]["malloc"] for impl in per_round}
    if len(set(mallocs.values())) > 1:  # never compare two allocators
        errors["malloc"] = f"the implementations ran on different allocators: {mallocs}"
        print(f"  {errors['malloc']}", file=sys.stderr)
    results = {}
    for impl, values in per_round.items():
        if not values:
            continue
        results[impl] = {"value": median(values), "rounds": values, "reps": reps[impl],
                         "frameworks": info[impl]["frameworks"], "threads": info[impl]["threads"],
                         "setup_s": info[impl]["setup_s"]}
    return {"results": results, "errors": errors}


# ---------------------------------------------------------------------------------------------- reporting

def display(kind: str, value: float | None) -> float | None:
    """A raw measurement in the unit the table shows: ms for time, MiB for memory, s for compile."""
    if value is None:
        return None
    return {"time": value * 1e3, "memory": value / 2**20, "compile": value}[kind]


def framework_of(result: dict) -> str | None:
    return result["frameworks"][0] if result["frameworks"] else None


def rows_for(name: str, spec: dict, config: dict, measured: dict, gemm_peaks: dict, load: dict) -> list[dict]:
    """The latest.json entries of one benchmark: one per peer (or one with peer None if it has no peers)."""
    kind, results = spec["kind"], measured["results"]
    flops = spec["flops"](config) if callable(spec["flops"]) else spec["flops"]
    subject = results.get(spec["subject"])

    def rate(result):
        if result is None or flops is None or kind != "time":
            return None, None
        gflops = flops / result["value"] / 1e9
        peak = gemm_peaks.get(framework_of(result))
        return gflops, (gflops / peak if peak else None)

    gflops, fraction = rate(subject)
    base = {"name": name, "config": config, "kind": kind, "unit": KINDS[kind], "subject": spec["subject"],
            "seqjax_ms": None, "flops": flops, "gflops": gflops, "gemm_fraction": fraction, "load": load,
            "impls": {impl: {**r, "value": display(kind, r["value"]),
                             "rounds": [display(kind, v) for v in r["rounds"]]}
                      for impl, r in results.items()},
            "errors": measured["errors"], "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    subject_value = display(kind, subject["value"]) if subject else None
    base["seqjax_ms" if kind == "time" else "seqjax_value"] = subject_value
    rows = []
    for peer in spec["peers"] or [None]:
        peer_result = results.get(peer) if peer else None
        peer_value = display(kind, peer_result["value"]) if peer_result else None
        peer_gflops, peer_fraction = rate(peer_result)
        row = {**base, "peer": peer, "peer_ms": None,
               "ratio": subject_value / peer_value if subject_value and peer_value else None,
               "peer_gflops": peer_gflops, "peer_gemm_fraction": peer_fraction}
        row["peer_ms" if kind == "time" else "peer_value"] = peer_value
        rows.append(row)
    return rows


def short_config(config: dict, width: int = 34) -> str:
    text = " ".join(f"{k}={v}" for k, v in config.items())
    return text if len(text) <= width else text[: width - 1] + "~"


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict]) -> None:
    name_width = max([len(row["name"]) for row in rows] + [4])
    peer_width = max([len(str(row["peer"])) for row in rows] + [4])
    subject_width = max([len(row["subject"]) for row in rows] + [7])
    columns = [("name", f"<{name_width}"), ("config", "<34"), ("subject", f">{subject_width}"),
               ("value", ">11"), ("peer", f"<{peer_width}"), ("value", ">11"), ("ratio", ">6"),
               ("GFLOP/s", ">8"), ("%gemm", ">6")]
    header = " ".join(format(title, spec) for title, spec in columns)
    print(header)
    print("-" * len(header))
    previous = None
    for row in rows:
        unit = row["unit"]
        subject_value = row["seqjax_ms"] if unit == "ms" else row.get("seqjax_value")
        peer_value = row["peer_ms"] if unit == "ms" else row.get("peer_value")
        fraction = 100 * row["gemm_fraction"] if row["gemm_fraction"] else None
        subject_cells = [row["name"], short_config(row["config"]), row["subject"],
                         f"{fmt(subject_value, '.2f')} {unit}"]
        rate_cells = [fmt(row["gflops"], ".1f"), fmt(fraction, ".0f")]
        if row["name"] == previous:  # further peers of the same benchmark: blank the subject's cells
            subject_cells, rate_cells = [""] * 4, ["", ""]
        previous = row["name"]
        cells = subject_cells + [str(row["peer"]), f"{fmt(peer_value, '.2f')} {unit}",
                                 fmt(row["ratio"], ".2f"), *rate_cells]
        print(" ".join(format(cell, spec) for cell, (_, spec) in zip(cells, columns, strict=True)))


def setting_key(row: dict) -> tuple:
    return row.get("name"), row.get("malloc_setting"), row.get("threads_setting")


def write_results(rows: list[dict], path: str) -> None:
    """Merge into `path`: entries of the (benchmark, allocator, threads) settings run now replace older ones;
    others are kept."""
    keys = {setting_key(row) for row in rows}
    kept = []
    if os.path.exists(path):
        try:
            with open(path) as f:
                kept = [row for row in json.load(f) if setting_key(row) not in keys]
        except (json.JSONDecodeError, TypeError, AttributeError):
            kept = []
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(kept + rows, f, indent=1)
        f.write("\n")


def setting_label(malloc: str, threads: str) -> str:
    return f"{malloc}, {'1 thread pinned' if threads == '1' else 'all threads'}"


def print_settings_table(rows: list[dict], settings: list[tuple[str, str]]) -> None:
    """One line per (benchmark, peer): subject vs peer (ratio) under each setting, both sides alike."""
    labels = [setting_label(*setting) for setting in settings]
    print("| benchmark | peer | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    seen = []
    for row in rows:
        if (row["name"], row["peer"]) not in seen:
            seen.append((row["name"], row["peer"]))
    for name, peer in seen:
        cells = []
        for setting in settings:
            match = [r for r in rows if (r["name"], r["peer"], r["malloc_setting"], r["threads_setting"])
                     == (name, peer, *setting)]
            r = match[0] if match else None
            if r is None or r["unit"] != "ms":
                value = None if r is None else r.get("seqjax_value")
                cells.append("-" if value is None else f"{value:.1f} {r['unit']}")
                continue
            malloc = ",".join(sorted(set(r["malloc"].values()))) or "?"
            cells.append(f"{fmt(r['seqjax_ms'], '.1f')} vs {fmt(r['peer_ms'], '.1f')}: "
                         f"{fmt(r['ratio'], '.2f')} ({malloc})")
        print(f"| {name} | {peer} | " + " | ".join(cells) + " |")


# ------------------------------------------------------------------------------------------------- main

def parse_list(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in allowed]
    if not values or bad:
        raise SystemExit(f"run.py: error: {flag}: expected a comma-separated list of {allowed}, got {text!r}")
    return values


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7, --quick 3)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and each benchmark's quick_config")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--no-gemm", action="store_true", help="skip the f32 GEMM peak measurement")
    parser.add_argument("--out", default=RESULTS, help="JSON results file (merged by benchmark and setting)")
    parser.add_argument("--metric", choices=("wall", "cpu"), default="wall",
                        help="time per step: wall clock (default) or the worker's CPU time, which a loaded "
                             "machine inflates much less (best with --threads 1, where no thread spins)")
    parser.add_argument("--malloc", default="system,auto",
                        help=f"allocators to run every benchmark on, both sides alike, from {MALLOCS} "
                             "(seqjax.allocator; auto = huge pages where supported); default system,auto")
    parser.add_argument("--threads", default="all,1",
                        help="'all' (every core, the frameworks' default threads) and/or '1' (pinned to CPU "
                             f"{PINNED_CPU}, one intra-op thread per framework); default all,1")
    parser.add_argument("--single-thread", action="store_true", help="same as --threads 1")
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 7)
    if rounds < 1:
        parser.error(f"--rounds must be >= 1, got {rounds}")
    mallocs = parse_list(args.malloc, MALLOCS, "--malloc")
    threads = ["1"] if args.single_thread else parse_list(args.threads, ("all", "1"), "--threads")
    settings = [(m, t) for t in threads for m in mallocs]

    benchmarks = discover()
    if args.list:
        width = max(map(len, benchmarks), default=4)
        for name, spec in benchmarks.items():
            print(f"{name:<{width}} {spec['module']:<18} {spec['kind']:<8} {', '.join(spec['impls'])}")
        return 0
    unknown = [name for name in args.names if name not in benchmarks]
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; available: {sorted(benchmarks)}")
    names = args.names or list(benchmarks)
    if not args.no_gemm and GEMM in benchmarks:
        names = [GEMM] + [name for name in names if name != GEMM]

    load_start = os.getloadavg()
    print(f"load average {load_start}, {os.cpu_count()} CPUs, {rounds} rounds, {args.metric} time, settings "
          f"{[setting_label(*st) for st in settings]}", file=sys.stderr)
    rows = []
    for malloc, thread_setting in settings:
        env = worker_env(malloc, thread_setting)
        cpus = {PINNED_CPU} if thread_setting == "1" else None
        setting_rows, gemm_peaks = [], {}
        for name in names:
            spec = benchmarks[name]
            config = merge(spec["config"], spec.get("quick_config"), args.quick)
            print(f"[{setting_label(malloc, thread_setting)}] {name} {short_config(config, 200)}",
                  file=sys.stderr, flush=True)
            load_before = os.getloadavg()
            measured = measure(name, spec, config, rounds, args.metric, env, cpus)
            load = {"before": load_before, "after": os.getloadavg()}
            if name == GEMM:
                flops = spec["flops"](config) if callable(spec["flops"]) else spec["flops"]
                for result in measured["results"].values():
                    gemm_peaks[framework_of(result)] = flops / result["value"] / 1e9
            malloc_in_effect = {impl: r["threads"]["malloc"] for impl, r in measured["results"].items()}
            for row in rows_for(name, spec, config, measured, gemm_peaks, load):
                setting_rows.append({**row, "metric": args.metric, "malloc_setting": malloc,
                                     "threads_setting": thread_setting, "malloc": malloc_in_effect,
                                     "single_thread": thread_setting == "1"})
        print(f"\n{setting_label(malloc, thread_setting)} (both sides):")
        print_table(setting_rows)
        rows += setting_rows
    print()
    print_settings_table(rows, settings)
    print(f"\n{args.metric} time, subject vs peer in ms: ratio (allocator in effect on both sides); "
          f"load average (1, 5, 15 min): start {load_start}, end {os.getloadavg()}")
    write_results(rows, args.out)
    print(f"wrote {os.path.relpath(args.out)}")
    return 1 if any(row["errors"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
