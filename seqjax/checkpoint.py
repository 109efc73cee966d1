"""Checkpoints with orbax's `CheckpointManager` (the stable, documented training API of orbax 0.12; the newer
`orbax.checkpoint.v1` is still marked experimental there).

A checkpoint at step s is `workdir/checkpoints/<s>/` with two items: `state` (the TrainState pytree: step,
params, other model state, optimiser state) and `meta` (JSON: the data iterator's position, the config and a
sha256 of every saved array). Saving is asynchronous by default; `max_to_keep` keeps the last K.

Restoring walks back from the newest step. A checkpoint whose arrays have other names or shapes than this
run's state is refused (`workdir.WorkdirError`), never labelled corrupt. One that fails to load or whose
arrays do not match their checksums is corrupt: if an older one loads, the corrupt ones are moved to
`workdir/corrupt_checkpoints/<s>` with a warning; if none loads, nothing is moved and that is an error
(never a silent restart from scratch). A checkpoint that loads is never moved or deleted. The rules of the
workdir around them (one run at a time, the same config on resume) are in seqjax/workdir.py.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from seqjax.workdir import MAX_KEYS_SHOWN, WorkdirError


class CheckpointError(RuntimeError):
    pass



# ======================================================================== checkpoints


def abstract_tree(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) describing `tree`: the restore target."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def host_array(x: Any) -> np.ndarray:
    """The full value of a (possibly sharded, possibly multi-process) array on this host. An array sharded
    over processes is gathered (a collective: every process calls this for it, as save and restore do)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def checksums(tree: Any) -> dict[str, str]:
    """{path: sha256 of dtype, shape and bytes} of each leaf: what a save stores and a restore verifies. Of
    the whole array, whatever its sharding, so a checkpoint restored onto another mesh verifies too."""
    out = {}
    for path, leaf in flat_by_path(tree).items():
        a = np.ascontiguousarray(host_array(leaf))
        h = hashlib.sha256(f"{a.dtype}{a.shape}".encode())
        h.update(a.reshape(-1).view(np.uint8).data)
        out[path] = h.hexdigest()
    return out


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
        # The checksums need the arrays on the host, which orbax copies there too before its background write.
        meta = {**meta, "checksums": checksums(state)}
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        meta=ocp.args.JsonSave(meta)), force=True)
        if wait:
            self.manager.wait_until_finished()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def last_good(self, bad_step: int) -> str:
        """Where to resume once the parameters of `bad_step` are non-finite or give a non-finite loss: the
        newest checkpoint before it (the trainer checks the losses up to a step before saving it)."""
        self.wait()
        good = [s for s in self.all_steps() if s < bad_step]
        newer = " ".join(os.path.join(self.directory, str(s)) for s in self.all_steps() if s >= bad_step)
        hint = f" ({'to resume from it' if good else 'to start over'}, move away {newer})" if newer else ""
        return f"the last good checkpoint is {good[-1] if good else 'none'} in {self.directory}{hint}"

    def _quarantine(self, step: int) -> None:
        src = os.path.join(self.directory, str(step))
        print(f"WARNING: moving the unreadable checkpoint step {step} to corrupt_checkpoints/", flush=True)
        if jax.process_index() == 0 and os.path.exists(src):
            dst = os.path.join(self.workdir, "corrupt_checkpoints", str(step))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            base, n = dst, 1
            while os.path.exists(dst):  # an earlier quarantined copy of that step stays too
                dst, n = f"{base}.{n}", n + 1
            shutil.move(src, dst)
        self.manager.reload()

    def _check_fits(self, step: int, abstract_state: Any) -> None:
        """WorkdirError if checkpoint `step` holds arrays of other names, shapes or dtypes than this run's
        state (of another model or optimiser, not corrupt); anything else raised means unreadable metadata."""
        handler = ocp.PyTreeCheckpointHandler()
        try:
            tree = handler.metadata(epath.Path(self.directory) / str(step) / "state").tree
        finally:
            handler.close()
        saved = {k: (tuple(m.shape), np.dtype(m.dtype)) for k, m in flat_by_path(tree).items()}
        wanted = {k: (tuple(a.shape), np.dtype(a.dtype)) for k, a in flat_by_path(abstract_state).items()}
        if saved != wanted:
            diff = [f"{k}: saved {saved.get(k, 'none')}, now {wanted.get(k, 'none')}"
                    for k in sorted(set(saved) | set(wanted)) if saved.get(k) != wanted.get(k)]
            raise WorkdirError(f"checkpoint step {step} in {self.directory} holds another state than this "
                               f"run builds ({'; '.join(diff[:MAX_KEYS_SHOWN])}); nothing was moved: train "
                               "in a new workdir, or with the config and code that wrote it")

    def _restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        if out.meta is None or "iterator" not in out.meta:
            raise CheckpointError("meta item missing or without iterator state")
        saved = out.meta.get("checksums")
        if saved is not None:  # checkpoints written before checksums were stored have none
            bad = [k for k, v in checksums(out.state).items() if saved.get(k) != v]
            if bad:
                raise CheckpointError(f"arrays {bad[:MAX_KEYS_SHOWN]} do not match their checksums")
        return out.state, dict(out.meta)

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict] | None:
        """Newest loadable checkpoint, falling back over corrupt ones; None only if there are none at all."""
        failures = []
        for step in reversed(self.all_steps()):
            try:
                self._check_fits(step, abstract_state)
                state, meta = self._restore(step, abstract_state)
            except WorkdirError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure to read means this checkpoint is unusable
                why = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                print(f"WARNING: checkpoint step {step} in {self.directory} is unreadable ({why}); trying "
                      "the previous one", flush=True)
                failures.append(step)
                continue
            for bad in failures:  # moved only now that a readable one exists, so the next run resumes too
                self._quarantine(bad)
            return step, state, meta
        if failures:
            paths = " ".join(os.path.join(self.directory, str(s)) for s in failures)
            raise CheckpointError(f"no readable checkpoint in {self.directory}: steps {failures} all failed "
                                  f"to load; nothing was moved (refusing to restart from scratch): to start "
                                  f"over, move away {paths}, or train in a new workdir")
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


def load_params(path: str, params: Any, only: Sequence[str] = (), report: dict | None = None) -> Any:
    """Params from another run's checkpoint, in the structure (and shardings) of `params`.

    only=(): the whole model; raises ValueError "checkpoint from another model" if the parameter names or
    shapes differ. only=("encoder", ...): exactly the parameters under those top-level names (path prefixes
    ending at a "/"), which must all be in the checkpoint with their shapes; the others keep their values in
    `params`, and the checkpoint's other parameters are ignored. `report`, if given, receives the names:
    {"loaded": [...], "kept": [...], "ignored": [...]} (nothing is dropped or kept silently).
    """
    saved = flat_by_path(load_raw(path)["params"])
    wanted = flat_by_path(params)

    def chosen(name: str) -> bool:
        return not only or any(_under(name, p) for p in only)

    loaded = [k for k in wanted if chosen(k)]
    if only:
        empty = [p for p in only if not any(_under(k, p) for k in wanted)]
        if empty:
            raise ValueError(f"train.init_from_params: {empty} name no parameter of this model; its "
                             f"top-level names: {sorted({k.split('/')[0] for k in wanted})}")
    missing = sorted(k for k in loaded if k not in saved)
    unexpected = [] if only else sorted(set(saved) - set(wanted))
    shapes = [f"{k}: saved {np.shape(saved[k])}, model {np.shape(wanted[k])}" for k in loaded
              if k in saved and np.shape(saved[k]) != np.shape(wanted[k])]
    if missing or unexpected or shapes:
        raise ValueError(f"train.init_from={path!r}: checkpoint from another model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, shape mismatches {shapes[:5]}")
    if report is not None:
        report.update(loaded=loaded, kept=[k for k in wanted if not chosen(k)],
                      ignored=sorted(k for k in saved if not (chosen(k) and k in wanted)))
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = list(wanted)

    def placed(value: np.ndarray, sharding) -> jax.Array:  # each device its shard, on any mesh and process
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    new = [placed(np.asarray(saved[k]).astype(leaf.dtype), leaf.sharding) if chosen(k) else leaf
           for k, leaf in zip(keys, leaves, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, new)


def init_params(path: str, params: Any, only: str = "", workdir: str | None = None) -> tuple[Any, dict]:
    """`train.init_from`: (params loaded by `load_params`, report). only: comma-separated top-level names
    (`train.init_from_params`; "" = the whole model). The report {"from", "only", "loaded", "kept",
    "ignored", "summary"} is written to workdir/init_from.json when a workdir is given."""
    names = tuple(p.strip() for p in only.split(",") if p.strip())
    report: dict = {"from": path, "only": list(names)}
    params = load_params(path, params, names, report)
    report["summary"] = (f"initialised params from {path}: loaded {len(report['loaded'])} arrays "
                         f"({', '.join(report['loaded'])})")
    if names:
        report["summary"] += (f"; kept their initialisation: {', '.join(report['kept']) or 'none'}; ignored "
                              f"from the checkpoint: {', '.join(report['ignored']) or 'none'}")
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "init_from.json"), "w") as f:
            json.dump(report, f, indent=1)
    return params, report


def _under(name: str, prefix: str) -> bool:
    """Whether parameter `name` ("encoder/stack/...") lies under `prefix` ("encoder" or "encoder/stack")."""
    prefix = prefix.rstrip("/")
    return name == prefix or name.startswith(prefix + "/")


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
