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


_NOT_CURVES = ("steps_per_s", "lr")  # pace and schedule, not measures of the model: left out of the plots


def read_series(metrics_path: str) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """{metric: {prefix: (steps, values)}} from metrics.jsonl ("train/loss" -> metric "loss", prefix "train"),
    sorted by step; non-finite values (written as strings) are left out."""
    points = defaultdict(lambda: defaultdict(list))
    for row in read_jsonl(metrics_path):
        for key, value in row.items():
            if key == "step" or "/" not in key or not isinstance(value, (int, float)):
                continue
            prefix, name = key.split("/", 1)
            points[name][prefix].append((row["step"], value))
    out = {}
    for name, by_prefix in points.items():
        out[name] = {}
        for prefix, pts in by_prefix.items():
            steps, values = zip(*sorted(pts), strict=True)
            out[name][prefix] = (np.asarray(steps), np.asarray(values, np.float64))
    return out


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average: s[0] = x[0], s[i] = weight * s[i-1] + (1 - weight) * x[i].

    Starting from x[0] (not 0, as TensorBoard does before debiasing) leaves no bias toward zero to undo.
    """
    from scipy.signal import lfilter  # scipy is a dependency of jax

    if not 0.0 <= weight < 1.0:
        raise ValueError(f"weight: must lie in [0, 1), got {weight}")
    x = np.asarray(values, np.float64)
    if x.size == 0:
        return x
    # lfilter's state zi = weight * x[0] plays the role of s[-1] = x[0] in the recursion above.
    return lfilter([1.0 - weight], [1.0, -weight], x, zi=[weight * x[0]])[0]


def smoothing_weight(n: int) -> float:
    """EMA weight for n logged points: a time constant 1 / (1 - w) of n / 20 points (5% of the run), at most
    20 points (w = 0.95); none up to 20 points, where every point is worth seeing as it is."""
    return float(min(0.95, max(0.0, 1.0 - 20.0 / max(n, 1))))


def duplicate_metrics(series: dict) -> dict[str, list[str]]:
    """{kept metric: [metrics whose series equal it]} over `read_series` output; each metric appears once.

    Two metrics are equal when they have the same prefixes, steps and values (rtol 1e-6): e.g. a forecaster
    trained on MAE logs loss == mae, and two identical panels say nothing new. "loss" is kept first, then the
    names in alphabetical order.
    """
    def same(a, b):
        return a.keys() == b.keys() and all(
            np.array_equal(a[p][0], b[p][0]) and np.allclose(a[p][1], b[p][1], rtol=1e-6, atol=0.0)
            for p in a)

    kept: dict[str, list[str]] = {}
    for name in sorted(series, key=lambda n: (n != "loss", n)):
        twin = next((k for k in kept if same(series[k], series[name])), None)
        if twin is None:
            kept[name] = []
        else:
            kept[twin].append(name)
    return kept


def plot_curves(metrics_path: str, out_dir: str) -> list[str]:
    """One PNG per distinct metric (curve_<name>.png) from a metrics.jsonl file; returns the paths.

    Training points are single batches (each logged step's batch): drawn faint, with their EMA over them
    (`smoothing_weight`); validation is drawn on the same axes. A metric whose series equal another's is not
    drawn again (`duplicate_metrics`; the panel's title names it). The y axis is logarithmic when the values
    are positive and span at least a decade (`_value_axis`), linear otherwise; legends give the last values.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    series = {k: v for k, v in read_series(metrics_path).items() if k not in _NOT_CURVES}
    written = []
    for name, twins in duplicate_metrics(series).items():
        by_prefix = series[name]
        fig, ax = plt.subplots(figsize=(6, 4))
        for i, prefix in enumerate(sorted(by_prefix, key=lambda p: (p != "train", p))):  # train first
            steps, values = by_prefix[prefix]
            color = f"C{i}"
            weight = smoothing_weight(len(values)) if prefix == "train" else 0.0
            if weight > 0:
                ax.plot(steps, values, color=color, lw=0.6, alpha=0.3, marker=".", ms=2,
                        label=f"{prefix}, per batch")
                smooth = ema(values, weight)
                ax.plot(steps, smooth, color=color, lw=1.8,
                        label=f"{prefix}, EMA (weight {weight:.2f}); last {smooth[-1]:.4g}")
            else:
                what = ", per batch" if prefix == "train" else ""
                ax.plot(steps, values, color=color, lw=1.4, marker="o" if len(values) < 30 else None, ms=3,
                        label=f"{prefix}{what}; last {values[-1]:.4g}")
        _value_axis(ax, np.concatenate([v for _, v in by_prefix.values()]), ticker)
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))  # steps are whole numbers
        ax.set_xlabel("step (optimizer updates)")
        ax.set_ylabel(name + (" (log scale)" if ax.get_yscale() == "log" else ""))
        same = f" (= {', '.join(twins)}: same values)" if twins else ""
        ax.set_title(f"{name}{same} during training")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, which="major")
        ax.grid(alpha=0.1, which="minor")
        fig.tight_layout()
        path = os.path.join(out_dir, f"curve_{name.replace('/', '_')}.png")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def _value_axis(ax, values: np.ndarray, ticker) -> None:
    """Log y axis when the positive values span a decade or more, labelled as plain numbers at 1, 2, 3, 5 x
    10^k (1, 2, 5 beyond two decades, 1 beyond four) so that the final value can be read off."""
    if values.size == 0 or np.any(values <= 0) or values.max() < 10 * values.min():
        return  # matplotlib's linear axis already has enough labelled ticks within a decade
    ax.set_yscale("log")
    decades = np.log10(values.max() / values.min())
    subs = (1.0, 2.0, 3.0, 5.0) if decades <= 2 else (1.0, 2.0, 5.0) if decades <= 4 else (1.0,)
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=subs))
    ax.yaxis.set_minor_locator(ticker.LogLocator(base=10, subs=np.arange(2, 10)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda y, _: f"{y:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


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
