"""One benchmark implementation in its own process, driven by benchmarks/run.py over a JSON-lines pipe.

Why a process per implementation: JAX and torch each start thread pools and allocators that disturb the other,
and a torch peer must never be timed with JAX loaded (or vice versa). The worker imports only the module named
in its target ("module:function"); that module decides which framework gets imported.

Protocol (one JSON object per line; requests on stdin, replies on the original stdout, which is kept for the
protocol only; everything the implementation prints goes to stderr):
    {"cmd": "setup", "target": "bench_recurrent:setup_lstm", "config": {...}}
        -> {"ok": true, "setup_s": float, "first_s": float, "frameworks": [...], "threads": {...}}
    {"cmd": "run", "n": int}
        -> {"ok": true, "values": [float] * n,   (seconds per call for kind "time"; the callable's own return
            "cpu": [float] * n}                    value for kinds "memory" and "compile"; cpu: process CPU
                                                   seconds per call, kind "time" only)
    {"cmd": "exit"}
A failure replies {"ok": false, "error": "<traceback>"} and the worker keeps serving (the runner decides).

Allocator: like launch.py, the worker starts on the malloc `seqjax.allocator` picks (re-executing itself
once, before any framework loads), as the runner's SEQJAX_MALLOC says; `threads["malloc"]` reports the one in
effect, whichever framework the worker runs, so the runner can check that both sides had the same.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from seqjax import allocator  # noqa: E402  (standard library only)

if __name__ == "__main__":  # before a framework loads: glibc reads its malloc tunables at start
    allocator.tune_process()

FRAMEWORKS = ("jax", "torch")


def resolve(target: str):
    """'module:function' -> the function. Modules resolve from benchmarks/ first, then the repository root."""
    module_name, sep, function_name = target.partition(":")
    if not sep or not module_name or not function_name:
        raise ValueError(f"target: expected 'module:function', got {target!r}")
    module = importlib.import_module(module_name)
    return getattr(module, function_name)


def thread_settings() -> dict:
    settings = {"cpu_count": os.cpu_count(), "cpus_allowed": sorted(os.sched_getaffinity(0)),
                "malloc": allocator.in_effect(dict(os.environ))}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        settings["torch_threads"] = torch.get_num_threads()
        settings["torch_interop_threads"] = torch.get_num_interop_threads()
    if "jax" in sys.modules:
        jax = sys.modules["jax"]
        settings["jax_devices"] = [str(d) for d in jax.devices()]
    for var in ("XLA_FLAGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var):
            settings[var] = os.environ[var]
    return settings


class Worker:
    def __init__(self):
        self.step = None
        self.kind = "time"

    def setup(self, request: dict) -> dict:
        self.kind = request.get("kind", "time")
        setup_fn = resolve(request["target"])
        start = time.perf_counter()
        self.step = setup_fn(dict(request["config"]))
        setup_s = time.perf_counter() - start
        if not callable(self.step):
            raise TypeError(f"{request['target']} returned {type(self.step).__name__}, expected a callable")
        loaded = [name for name in FRAMEWORKS if name in sys.modules]
        if len(loaded) > 1:
            raise RuntimeError(f"{request['target']} imported both {loaded}; an implementation must load "
                               "only its own framework (move the other's imports out of module top level)")
        # One extra call after setup's own warm-up: the runner sizes its repetitions from it.
        start = time.perf_counter()
        self.step()
        first_s = time.perf_counter() - start
        return {"setup_s": setup_s, "first_s": first_s, "frameworks": loaded, "threads": thread_settings()}

    def run(self, request: dict) -> dict:
        if self.step is None:
            raise RuntimeError("run before setup")
        values, cpu = [], []
        for _ in range(int(request["n"])):
            if self.kind == "time":
                start, start_cpu = time.perf_counter(), time.process_time()
                self.step()
                values.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
            else:
                values.append(float(self.step()))
        return {"values": values, "cpu": cpu}


def main() -> None:
    for path in (REPO_ROOT, BENCH_DIR):
        if path not in sys.path:
            sys.path.insert(0, path)
    # Keep the real stdout for the protocol; anything the implementation prints lands on stderr instead.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    worker = Worker()
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request["cmd"] == "exit":
            break
        try:
            reply = getattr(worker, request["cmd"])(request)
            reply["ok"] = True
        except Exception:  # the runner reports it and carries on with the other benchmarks
            reply = {"ok": False, "error": traceback.format_exc()}
        protocol.write(json.dumps(reply) + "\n")
        protocol.flush()


if __name__ == "__main__":
    main()
