"""The contract between the trainer (`seqjax/train.py`) and an experiment, and how a config builds both sides.

`config.task` names a task class and `config.data` holds its keyword arguments; `config.model_name` names a
model class and `config.model` holds its keyword arguments (seqjax/configs.py). The trainer owns the rest:
optimiser, jit/pmap, sharding, checkpoints, logging.

    task = build_task(config)                    # TaskClass(**config.data)
    model = build_model(config, task, rngs)      # ModelClass(**config.model, **task.model_args(), rngs=rngs)

Optional: a task whose arrays are padded along axis 1 may set `padded_lengths = {array: lengths array}`
(e.g. {"src": "src_lengths"}); `config.train.length_buckets > 1` then batches rows of similar length and cuts
the padding (data/iterators.py). Its `loss` must then accept any width up to the padded one.

Optional: `use_workdir(workdir)`, for what a task trains from its data and a run must keep (a subword
tokenizer): the trainer calls it before training and `load_run` before rebuilding the model, so the task
saves it in the workdir on a run's first start and loads it from there on resume and in the CLIs.

Optional: `HEADLINE = (Figure(...), ...)`, a class attribute: the few metrics of `evaluate` that say how the
run went, each with its unit, which way is better and the baselines it is read against (other metrics of the
same report). `headline(task, final)` turns it into the lines the trainer prints at the end of a run and the
`headline` section of summary.json, e.g.

    Figure("test_model_mae", "test MAE", "lower", unit="train-std units",
           baselines=(("test_persistence_mae", "persistence"), ("test_linear_ar_mae", "linear AR")))
    -> "test MAE 0.428 train-std units (lower is better): better than persistence 0.496 (13.7% lower), ..."

A table rather than a method: it is data the sweep's results.md and the tests read without building the task
(which loads its data). A figure whose metric is absent from `final` (another data set, an interrupted run)
is left out; a task without HEADLINE has an empty headline (every metric stays in summary.json's `final`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import numpy as np
from flax import nnx

from seqjax import configs, models, tasks


@runtime_checkable
class Task(Protocol):
    def data(self) -> dict[str, dict[str, np.ndarray]]:
        """Splits ('train', 'val', optionally 'test'): each a dict of arrays with a common leading N."""

    def model_args(self) -> dict[str, Any]:
        """The model's constructor arguments that come from the data (vocabulary sizes, classes, ...)."""

    def loss(
        self, model: nnx.Module, batch: dict[str, jax.Array], key: jax.Array | None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Mean loss over the batch and scalar metrics. key=None means evaluation (no dropout)."""

    def evaluate(
        self, model: nnx.Module, splits: dict[str, dict[str, np.ndarray]], workdir: str
    ) -> dict[str, float]:
        """Final report after training (test metrics, baselines, figures in workdir). May be slow."""


class Figure(NamedTuple):
    """One headline figure: the metric `final[key]`, called `label`, where `better` is "lower" or "higher".

    unit: written after the value; "%" shows a fraction as a percentage (and differences in points).
    baselines: (key, label) of the metrics it is compared with, in words ("better than persistence 0.496
    (13.7% lower)"). also: (key, label) of related figures appended to the same line, without a comparison.
    only_if: (key, value): shown only when final[key] == value (e.g. which data set the run used).
    """
    key: str
    label: str
    better: str
    unit: str = ""
    baselines: tuple[tuple[str, str], ...] = ()
    also: tuple[tuple[str, str], ...] = ()
    only_if: tuple[str, float] | None = None


def _value(value: float, unit: str, named: bool = True) -> str:
    """The value in its unit; `named=False` (baselines, after the figure's own value) leaves out a unit's
    name, but a fraction shown as a percentage keeps its "%"."""
    if unit == "%":
        return f"{100 * value:.1f}%"
    return f"{value:.4g}" + (f" {unit}" if unit and named else "")


def _compare(value: float, base: float, f: Figure, label: str) -> str:
    """'better than <label> <base> (<gap>)', or worse, or 'equal to': the gap in points for percentages,
    else relative to the baseline."""
    if value == base:
        return f"equal to {label} {_value(base, f.unit, named=False)}"
    lower = value < base
    word = "better" if lower == (f.better == "lower") else "worse"
    if f.unit == "%":
        gap = f"{100 * abs(value - base):.1f} points "
    elif base != 0:
        gap = f"{100 * abs(value / base - 1):.1f}% "
    else:
        gap = ""
    return f"{word} than {label} {_value(base, f.unit, named=False)} ({gap}{'lower' if lower else 'higher'})"


def headline(task: Any, final: dict[str, float]) -> dict[str, list]:
    """The headline of a run's final metrics from `task.HEADLINE` (a task or its class; see the module
    docstring): {"lines": [str], "metrics": [{"name", "label", "value", "unit", "better", "baselines":
    {name: value}}]}."""
    lines, metrics = [], []
    for f in getattr(task, "HEADLINE", ()):
        if f.better not in ("lower", "higher"):
            raise ValueError(f"{type(task).__name__} HEADLINE {f.key}: better must be 'lower' or 'higher', "
                             f"got {f.better!r}")
        if f.key not in final or (f.only_if is not None and final.get(f.only_if[0]) != f.only_if[1]):
            continue
        value = float(final[f.key])
        line = f"{f.label} {_value(value, f.unit)} ({f.better} is better)"
        parts, bases = [], {}
        for key, label in f.baselines:
            if key in final:
                bases[key] = float(final[key])
                parts.append(_compare(value, bases[key], f, label))
        if parts:
            line += ": " + ", ".join(parts)
        also = [f"{label} {_value(float(final[key]), f.unit)}" for key, label in f.also if key in final]
        if also:
            line += "; " + ", ".join(also)
        lines.append(line)
        metrics.append({"name": f.key, "label": f.label, "value": value, "unit": f.unit, "better": f.better,
                        "baselines": bases})
    return {"lines": lines, "metrics": metrics}


def result_block(summary: dict, summary_path: str) -> list[str]:
    """The few lines the trainer prints at the end of a run: its headline figures, and where every metric is.
    Nothing when the run reported no metric (interrupted before its final evaluation)."""
    final, lines = summary["final"], summary["headline"]["lines"]
    if not final:
        return []
    where = f"{len(final)} metrics in {summary_path} (\"final\")"
    if not lines:
        return [f"result: no headline figures declared (task HEADLINE); {where}"]
    header = f"result of {summary['experiment']} at step {summary['steps']} ({where}):"
    return [header] + [f"  {line}" for line in lines]


def build_task(config) -> Task:
    """The task class named by `config.task`, called with `config.data`."""
    task = configs.construct(tasks.get(config.task), "data", config.data)
    missing = [m for m in ("data", "model_args", "loss", "evaluate") if not callable(getattr(task, m, None))]
    if missing:
        raise TypeError(f"config.task={config.task!r}: {type(task).__name__} has no method {missing}")
    return task


def use_workdir(task: Task, workdir: str) -> None:
    """Let the task keep its data-derived artifacts in the run's workdir (its optional `use_workdir`)."""
    hook = getattr(task, "use_workdir", None)
    if hook is not None:
        hook(workdir)


def build_model(config, task: Task, rngs: nnx.Rngs) -> nnx.Module:
    """The model class named by `config.model_name`, called with `config.model` and the task's data-derived
    arguments. It must not keep `rngs`: randomness comes in through the `key` of each call."""
    return configs.construct(models.get(config.model_name), "model", config.model, rngs=rngs,
                             **task.model_args())


def predict(fn: Callable[[nnx.Module, dict[str, jax.Array]], Any], model: nnx.Module,
            arrays: dict[str, np.ndarray], batch_size: int = 256) -> Any:
    """`fn(model, batch)` over every row of `arrays` (a dict of [N, ...] arrays) in batches: NumPy [N, ...].

    The tasks' evaluation helper (the trainer's own eval loop is `train.evaluate_split`). `fn` is jitted once:
    the last batch wraps around to the first rows, so every batch has the same shape, and the extra rows are
    cut from the result. Equivalent to `fn(model, arrays)` on all N rows at once, in bounded memory.
    """
    N = len(next(iter(arrays.values())))
    if N == 0:
        raise ValueError("arrays: no rows to predict")
    B = min(batch_size, N)
    graphdef, state = nnx.split(model)
    run = jax.jit(lambda state, batch: fn(nnx.merge(graphdef, state), batch))
    outs = []
    for start in range(0, N, B):
        rows = np.arange(start, start + B) % N
        out = run(state, {k: np.asarray(v)[rows] for k, v in arrays.items()})
        n = min(B, N - start)
        outs.append(jax.tree.map(lambda a, n=n: np.asarray(a)[:n], out))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outs)


def load_run(workdir: str, expected_tasks: tuple[str, ...] | None = None):
    """(config, task, model with the latest checkpoint's parameters) of the training run in `workdir`.

    The config is the run's own config.json; the task is rebuilt from it (which gives vocabularies and
    normalisers) and the model's parameters are restored. Every failure is a ValueError or FileNotFoundError
    with a one-line message naming the workdir.
    """
    import json
    import os

    import ml_collections

    from seqjax import checkpoint as ckpt_lib

    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"--workdir={workdir!r}: no config.json (not a training run workdir)")
    with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    if "model_name" not in config:
        raise ValueError(f"--workdir={workdir!r}: written by an older seqjax (its config has no model_name); "
                         "its checkpoints do not fit the current models: train it again")
    if isinstance(expected_tasks, str):
        raise TypeError("expected_tasks: a tuple of task names, not one string")
    if expected_tasks and config.task not in expected_tasks:
        raise ValueError(f"--workdir={workdir!r}: checkpoint from another model: the run trained task "
                         f"{config.task!r}, this tool needs {' or '.join(map(repr, expected_tasks))}")
    task = build_task(config)
    use_workdir(task, workdir)  # the run's own tokenizers, not retrained ones
    graphdef, params, rest = nnx.split(build_model(config, task, nnx.Rngs(config.seed)), nnx.Param, ...)
    try:
        params = ckpt_lib.load_params(workdir, params)
    except ckpt_lib.CheckpointError as e:  # none, or a damaged one
        raise FileNotFoundError(f"--workdir={workdir!r}: cannot load a checkpoint ({e})") from e
    except ValueError as e:
        raise ValueError(f"--workdir={workdir!r}: checkpoint from another model: its parameters do not fit "
                         f"the model configured in config.json ({e})") from e
    return config, task, nnx.merge(graphdef, params, rest)
