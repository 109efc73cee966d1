"""What a run leaves besides checkpoints: JSON-lines metrics, TensorBoard events, curve PNGs, JSON files.

`flax.metrics.tensorboard` needs TensorFlow, which is not installed, so events are written with TensorBoard's
own TF-free `tensorboard.summary.Writer`. Only process 0 writes (`enabled=False` elsewhere).

The metrics follow the checkpoint: a resumed run first cuts metrics.jsonl back to the restored step
(`truncate_after`), so each step's rows are there once. TensorBoard events files are append-only records and
are not rewritten: each run writes a new file (its name holds the time and PID), and the steps after the
restored checkpoint stay in the older file too. Where two files hold a step, the newer file's value is the one
that counts; metrics.jsonl holds only it.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Iterator

import numpy as np


def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.generic, np.ndarray)) or hasattr(x, "__array__"):
        x = np.asarray(x)
        return x.item() if x.ndim == 0 else x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(jsonable(obj), f, indent=2, sort_keys=True)
    os.replace(tmp, path)  # atomic: a killed run never leaves half a file


def read_jsonl(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_after(path: str, step: int) -> None:
    """Remove the rows of a metrics.jsonl with a step after `step`, and a half-written last row of a killed
    run; atomically."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [line for line in f if line.strip()]

    def keep(line):
        try:
            return json.loads(line).get("step", 0) <= step
        except ValueError:
            return False

    kept = [line for line in lines if keep(line)]
    if len(kept) == len(lines):
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(line if line.endswith("\n") else line + "\n" for line in kept)
    os.replace(tmp, path)


class MetricWriter:
    """`write(step, {name: scalar}, prefix)` appends to workdir/metrics.jsonl and to TensorBoard events."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            try:
                from tensorboard.summary import Writer
                self._tb = Writer(os.path.join(workdir, "tensorboard"))
            except ImportError:  # tensorboard is optional at run time
                self._tb = None

    def write(self, step: int, scalars: dict, prefix: str = "train") -> None:
        if not self.enabled:
            return
        scalars = {f"{prefix}/{k}": float(v) for k, v in scalars.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(jsonable({"step": int(step), **scalars})) + "\n")
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step=int(step))

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def plot_curves(metrics_path: str, out_dir: str) -> list[str]:
    """One PNG per metric name (train and val on the same axes), from a metrics.jsonl file."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = defaultdict(lambda: defaultdict(list))  # metric -> prefix -> [(step, value)]
    for row in read_jsonl(metrics_path):
        for key, value in row.items():
            if key == "step" or "/" not in key or not isinstance(value, (int, float)):
                continue
            prefix, name = key.split("/", 1)
            series[name][prefix].append((row["step"], value))
    written = []
    for name, by_prefix in sorted(series.items()):
        if name in ("steps_per_s", "lr"):
            continue
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for prefix, points in sorted(by_prefix.items()):
            steps, values = zip(*sorted(points), strict=True)
            ax.plot(steps, values, label=prefix, marker="." if len(steps) < 30 else None)
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        if name == "loss" and all(v > 0 for pts in by_prefix.values() for _, v in pts):
            ax.set_yscale("log")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(out_dir, f"curve_{name.replace('/', '_')}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


class Pace:
    """Steps per second over each logging window (evaluations and saves left out), and the ETA.

    The first window of a run includes compiling the train step, so the ETA is "?" until the second.
    """

    def __init__(self, step: int, last_step: int):
        self.last_step = last_step
        self.step, self.time, self.windows = step, time.time(), 0

    def lap(self, step: int) -> tuple[float, str]:
        """(steps/s since the previous lap, ETA of the last step) at `step`."""
        now = time.time()
        rate = (step - self.step) / max(now - self.time, 1e-9)
        eta = format_eta((self.last_step - step) / rate) if self.windows else "?"
        self.step, self.time, self.windows = step, now, self.windows + 1
        return rate, eta

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        start = time.time()
        yield
        self.time += time.time() - start


def format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
