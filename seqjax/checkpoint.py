"""Checkpoints with orbax's `CheckpointManager` (the stable, documented training API of orbax 0.12; the newer
`orbax.checkpoint.v1` is still marked experimental there).

A checkpoint at step s is `workdir/checkpoints/<s>/` with two items: `state` (the TrainState pytree: step,
params, other model state, optimiser state) and `meta` (JSON: the data iterator's position and the config).
Saving is asynchronous by default; `max_to_keep` keeps the last K. Restoring walks back from the newest step:
a checkpoint that fails to load is moved to `workdir/corrupt_checkpoints/<s>` with a warning and the previous
one is tried; if steps exist but none loads, that is an error (never a silent restart from scratch).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

log = logging.getLogger("seqjax.checkpoint")


class CheckpointError(RuntimeError):
    pass


class WorkdirError(ValueError):
    """A workdir this run must not touch (reported in one line by launch.py)."""


def check_workdir_format(workdir: str) -> None:
    """Refuse a workdir written before configs named their model class: its checkpoints hold another
    parameter layout, and reading them as this run's would label good checkpoints corrupt."""
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        if "model_name" not in saved:
            raise WorkdirError(f"workdir {workdir!r} was written by an older seqjax (its config.json has no "
                               "model_name) whose checkpoints do not fit the current models; nothing was "
                               "changed: train in a new workdir")


def abstract_tree(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) describing `tree`: the restore target."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpoints:
    """`save(step, state, meta)`, `restore_latest(abstract_state) -> (step, state, meta) | None`."""

    def __init__(self, workdir: str, keep: int = 3, async_save: bool = True):
        self.workdir = os.path.abspath(workdir)
        self.directory = os.path.join(self.workdir, "checkpoints")
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=async_save,
                                               cleanup_tmp_directories=True)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, meta: dict, wait: bool = False) -> None:
        if step in self.manager.all_steps():
            return  # e.g. the final save right after a periodic one
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        meta=ocp.args.JsonSave(meta)), force=True)
        if wait:
            self.manager.wait_until_finished()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def _quarantine(self, step: int) -> None:
        src = os.path.join(self.directory, str(step))
        dst_dir = os.path.join(self.workdir, "corrupt_checkpoints")
        if jax.process_index() == 0 and os.path.exists(src):
            os.makedirs(dst_dir, exist_ok=True)
            dst = os.path.join(dst_dir, str(step))
            shutil.rmtree(dst, ignore_errors=True)
            shutil.move(src, dst)
        self.manager.reload()

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
        """Newest loadable checkpoint, falling back over corrupt ones; None only if there are none at all."""
        steps = self.all_steps()
        failures = []
        for step in reversed(steps):
            try:
                out = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
                if out.meta is None or "iterator" not in out.meta:
                    raise CheckpointError("meta item missing or without iterator state")
            except Exception as e:  # noqa: BLE001 - any failure to read means this checkpoint is unusable
                msg = f"checkpoint step {step} in {self.directory} is unreadable ({type(e).__name__}: " \
                      f"{str(e).splitlines()[0][:200] if str(e) else ''}); falling back to the previous one"
                log.warning(msg)
                print(f"WARNING: {msg}", flush=True)
                failures.append(step)
                self._quarantine(step)
                continue
            return step, out.state, dict(out.meta)
        if failures:
            raise CheckpointError(f"no readable checkpoint in {self.directory}: steps {failures} all failed "
                                  "to load (moved to corrupt_checkpoints/); refusing to restart from scratch")
        return None

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def flat_by_path(tree: Any) -> dict[str, Any]:
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names = []
        for k in path:
            for attr in ("key", "name", "idx"):
                if hasattr(k, attr):
                    names.append(str(getattr(k, attr)))
                    break
        out["/".join(names)] = leaf
    return out


def find_checkpoint(path: str) -> tuple[str, int]:
    """(checkpoint manager dir, step) from a run's workdir, its checkpoints/ dir, or a step dir."""
    path = os.path.abspath(path)
    for directory in (os.path.join(path, "checkpoints"), path):
        if os.path.isdir(directory):
            steps = [int(d) for d in os.listdir(directory) if d.isdigit()]
            if steps:
                return directory, max(steps)
    base, name = os.path.split(path.rstrip("/"))
    if name.isdigit() and os.path.isdir(path):
        return base, int(name)
    raise CheckpointError(f"train.init_from: no checkpoint found at {path!r}")


def load_params(path: str, params: Any) -> Any:
    """Params from another run's checkpoint, in the structure (and shardings) of `params`.

    Raises ValueError "checkpoint from another model" if the parameter names or shapes differ.
    """
    saved = flat_by_path(load_raw(path)["params"])
    wanted = flat_by_path(params)
    missing = sorted(set(wanted) - set(saved))
    unexpected = sorted(set(saved) - set(wanted))
    shapes = [f"{k}: saved {np.shape(saved[k])}, model {np.shape(v)}" for k, v in wanted.items()
              if k in saved and np.shape(saved[k]) != np.shape(v)]
    if missing or unexpected or shapes:
        raise ValueError(f"train.init_from={path!r}: checkpoint from another model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, shape mismatches {shapes[:5]}")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = list(flat_by_path(params))
    new = [jax.device_put(np.asarray(saved[k]).astype(leaf.dtype), leaf.sharding) for k, leaf in
           zip(keys, leaves, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, new)


def _not_missing_item_metadata(record: logging.LogRecord) -> bool:
    """Drops orbax's warning "Metadata file does not exist: <step>/state/_CHECKPOINT_METADATA". A
    PyTreeCheckpointer reading one item looks for the step's metadata file inside the item directory, where
    CheckpointManager never writes it (it lies one level up, in <step>/); the item is read from its own
    _METADATA, so the warning, printed on every read, says nothing."""
    return not (str(record.msg).startswith("Metadata file does not exist")
                and str(record.args[0] if record.args else "").endswith("_CHECKPOINT_METADATA"))


def load_raw(path: str, step: int | None = None) -> dict:
    """The saved TrainState of a run (workdir, checkpoints dir or step dir) as nested dicts of arrays.

    A damaged checkpoint (files truncated, metadata missing) raises CheckpointError with a one-line message.
    """
    directory, latest = find_checkpoint(path)
    step = latest if step is None else step
    step_dir = os.path.join(directory, str(step))
    absl_logger = logging.getLogger("absl")
    absl_logger.addFilter(_not_missing_item_metadata)
    checkpointer = ocp.PyTreeCheckpointer()
    try:
        metadata = checkpointer.metadata(os.path.join(step_dir, "state"))
        tree = getattr(getattr(metadata, "item_metadata", None), "tree", None)
        if tree is None:
            raise CheckpointError(f"damaged checkpoint {step_dir}: its state has no readable metadata")
        # Host NumPy arrays: the checkpoint may come from another device topology.
        as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        return checkpointer.restore(os.path.join(step_dir, "state"),
                                    args=ocp.args.PyTreeRestore(restore_args=as_numpy))
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever orbax or tensorstore raise, the files are unusable
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        raise CheckpointError(f"damaged checkpoint {step_dir}: {type(e).__name__}: {detail}") from e
    finally:
        checkpointer.close()  # an open one leaves "Event loop is closed" tracebacks at interpreter exit
        absl_logger.removeFilter(_not_missing_item_metadata)
