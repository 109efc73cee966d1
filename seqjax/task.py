"""The Task contract between the trainer (`seqjax/train.py`) and an experiment.

An experiment's config names a task module in `config.task`: either a module under `seqjax.tasks`
("copy" means `seqjax.tasks.copy`) or a full dotted path ("experiments.toy_smoke"). That module exposes
`build(config) -> Task`. The trainer owns the rest: optimiser, jit/pmap, sharding, checkpoints, logging.

Optional: a task whose arrays are padded along axis 1 may set `padded_lengths = {array: lengths array}`
(e.g. {"src": "src_lengths"}); `config.train.length_buckets > 1` then batches rows of similar length and cuts
the padding (data/iterators.py). Its `loss` must then accept any width up to the padded one.
"""
from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

import jax
import numpy as np
from flax import nnx


@runtime_checkable
class Task(Protocol):
    def data(self) -> dict[str, dict[str, np.ndarray]]:
        """Splits ('train', 'val', optionally 'test'): each a dict of arrays with a common leading N."""

    def model(self, rngs: nnx.Rngs) -> nnx.Module:
        """A freshly initialised model. It must not keep an `nnx.Rngs`: randomness comes in through `key`."""

    def loss(
        self, model: nnx.Module, batch: dict[str, jax.Array], key: jax.Array | None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Mean loss over the batch and scalar metrics. key=None means evaluation (no dropout)."""

    def evaluate(
        self, model: nnx.Module, splits: dict[str, dict[str, np.ndarray]], workdir: str
    ) -> dict[str, float]:
        """Final report after training (test metrics, baselines, figures in workdir). May be slow."""


def task_module(name: str) -> Any:
    """Import the module named by `config.task`: a short name under seqjax.tasks, or a full dotted path."""
    if not name:
        raise ValueError("config.task: empty; set it to a module under seqjax.tasks or a dotted path")
    candidates = [name] if "." in name else [f"seqjax.tasks.{name}"]
    errors = []
    for candidate in candidates:
        try:
            module = importlib.import_module(candidate)
        except ModuleNotFoundError as e:
            # Only swallow "this very module does not exist", not a missing import inside it.
            if e.name is not None and candidate.startswith(e.name):
                errors.append(candidate)
                continue
            raise
        if not hasattr(module, "build"):
            raise ValueError(f"config.task: module {candidate!r} has no build(config) -> Task")
        return module
    raise ValueError(f"config.task: no module named {' or '.join(map(repr, errors))}")


def build_task(config) -> Task:
    """`task_module(config.task).build(config)`, checked against the Task protocol."""
    task = task_module(config.task).build(config)
    missing = [m for m in ("data", "model", "loss", "evaluate") if not callable(getattr(task, m, None))]
    if missing:
        raise ValueError(f"config.task={config.task!r}: build() returned an object without {missing}")
    return task


def build_model(config, task, rngs):
    """The run's model: `config.model_name`'s class called with `config.model` and the task's data-derived
    arguments. (Placeholder: calls task.model(rngs).)"""
    return task.model(rngs)
