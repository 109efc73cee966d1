"""Checkpoints with orbax's `CheckpointManager` (the stable, documented training API of orbax 0.12; the newer
`orbax.checkpoint.v1` is still marked experimental there), and the rules that keep a workdir's run whole.

A checkpoint at step s is `workdir/checkpoints/<s>/` with two items: `state` (the TrainState pytree: step,
params, other model state, optimiser state) and `meta` (JSON: the data iterator's position, the config and a
sha256 of every saved array). Saving is asynchronous by default; `max_to_keep` keeps the last K.

The workdir rules. One run at a time: `WorkdirLock` holds workdir/.lock (hostname and PID) for the run.
- A resumed run is the same run: `check_config` compares the new config with the saved one before anything is
  written and refuses a difference in a key that defines the run (all but `FREE_CONFIG_KEYS`) unless the
  caller allows that key; `write_config` then keeps the old config.json as config.<step>.json.
- Restoring walks back from the newest step. A checkpoint whose arrays have other names or shapes than this
  run's state is refused (`WorkdirError`), never labelled corrupt. One that fails to load or whose arrays do
  not match their checksums is corrupt: if an older one loads, the corrupt ones are moved to
  `workdir/corrupt_checkpoints/<s>` with a warning; if none loads, nothing is moved and that is an error
  (never a silent restart from scratch). A checkpoint that loads is never moved or deleted.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from seqjax import metrics_io

# Keys that say how long, how often and on which devices a run goes, not what it computes: they may change on
# any resume (e.g. more train.steps to extend a finished run); a dotted key or a whole section. train.parallel
# is here with the device count (no config key): a checkpoint holds one host copy, so any layout restores it.
FREE_CONFIG_KEYS = ("train.steps", "train.log_every", "train.eval_every", "train.eval_batches",
                    "train.checkpoint_every", "train.keep_checkpoints", "train.async_checkpoints",
                    "train.plots", "train.parallel", "distributed")
MAX_KEYS_SHOWN = 5


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


# ======================================================================== one run per workdir


class WorkdirLock:
    """workdir/.lock, created atomically (O_EXCL) with this host's name and PID, removed at exit.

    A lock naming a PID that no longer runs on this host is stale (a killed run) and taken over. A lock from
    another host cannot be checked from here, so it holds until a person removes it.
    """

    def __init__(self, workdir: str, enabled: bool = True):
        self.path = os.path.join(workdir, ".lock")
        self.enabled, self.held = enabled, False
        self.me = {"host": socket.gethostname(), "pid": os.getpid()}

    def _holder(self) -> dict | None:
        try:
            with open(self.path) as f:
                holder = json.load(f)
        except (OSError, ValueError):
            return None  # gone, or being written by the run that just created it
        return holder if isinstance(holder, dict) else None

    def _stale(self, holder: dict | None) -> bool:
        if not holder or holder.get("host") != self.me["host"] or not isinstance(holder.get("pid"), int):
            return False
        try:
            os.kill(holder["pid"], 0)  # signal 0: only asks whether the PID exists
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            pass
        return False

    def __enter__(self) -> WorkdirLock:
        if not self.enabled:
            return self
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if not self._stale(holder):
                    who = f"PID {holder.get('pid')} on {holder.get('host')}" if holder else "an unknown run"
                    raise WorkdirError(f"workdir {os.path.dirname(self.path)!r} is in use by {who} "
                                       f"(lock {self.path}); wait for that run to end, or remove the lock "
                                       "if it is gone") from None
                print(f"WARNING: taking over the stale lock {self.path} of PID {holder['pid']} (no longer "
                      "running)", flush=True)
                # Removed only if still the stale one: another run may have taken it over since (O_EXCL then
                # decides between us; a takeover within this instant is the one race left).
                if self._holder() == holder:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(self.me, f)
            self.held = True
            return self
        raise WorkdirError(f"could not take the lock {self.path}: other runs keep taking it")

    def __exit__(self, *exc) -> None:
        if self.held and self._holder() == self.me:
            os.unlink(self.path)
        self.held = False


# ======================================================================== the run's config


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, leaves normalised as JSON writes them (tuples are lists)."""
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.loads(json.dumps(metrics_io.jsonable(v)))
    return out


def _matches(key: str, names) -> bool:
    return any(key == n or key.startswith(n + ".") for n in names)


def saved_config(workdir: str) -> dict | None:
    """The config of the run in `workdir`: config.json, else the newest checkpoint's; None for a new run."""
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    directory = os.path.join(workdir, "checkpoints")
    names = os.listdir(directory) if os.path.isdir(directory) else []
    for step in sorted((int(d) for d in names if d.isdigit()), reverse=True):
        try:
            with open(os.path.join(directory, str(step), "meta", "metadata")) as f:
                return json.load(f)["config"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unreadable one; restoring will deal with it
    return None


def check_config(workdir: str, config: dict, allow_changes: tuple[str, ...] = ()) -> list[str]:
    """The keys defining the run that differ from the saved config and are allowed to; raise WorkdirError
    for any other such difference (nothing in the workdir is touched)."""
    new = flatten(config)
    unknown = [k for k in allow_changes if not any(_matches(key, [k]) for key in new)]
    if unknown:
        raise WorkdirError(f"--allow_config_change: unknown config key {unknown[0]!r}")
    saved = saved_config(workdir)
    if saved is None:
        return []
    old = flatten(saved)
    missing = "<absent>"
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k, missing) != new.get(k, missing)
               and not _matches(k, FREE_CONFIG_KEYS)]
    refused = [k for k in changed if not _matches(k, allow_changes)]
    if refused:
        shown = ", ".join(f"{k} {old.get(k, missing)!r} -> {new.get(k, missing)!r}"
                          for k in refused[:MAX_KEYS_SHOWN])
        more = f" (and {len(refused) - MAX_KEYS_SHOWN} more)" if len(refused) > MAX_KEYS_SHOWN else ""
        raise WorkdirError(f"workdir {workdir!r} holds a run of another config: {shown}{more}; nothing was "
                           "changed: train in a new workdir, or resume with these changes by "
                           f"--allow_config_change={','.join(refused)}")
    return changed


def write_config(workdir: str, config: dict, keep_old_as_step: int | None = None) -> None:
    """Write config.json; first copy the old one to config.<step>.json if `keep_old_as_step` is given (the
    step up to which it was in force), so a run's history of allowed changes stays on disk."""
    path = os.path.join(workdir, "config.json")
    if keep_old_as_step is not None and os.path.exists(path):
        old, n = os.path.join(workdir, f"config.{keep_old_as_step}.json"), 1
        while os.path.exists(old):
            old, n = os.path.join(workdir, f"config.{keep_old_as_step}.{n}.json"), n + 1
        shutil.copyfile(path, old)
    metrics_io.write_json(path, config)


# ======================================================================== checkpoints


def abstract_tree(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) describing `tree`: the restore target."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def host_array(x: Any) -> np.ndarray:
    """One copy of a (possibly multi-process, replicated) array on this host."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        x = x.addressable_data(0)
    return np.asarray(x)


def checksums(tree: Any) -> dict[str, str]:
    """{path: sha256 of dtype, shape and bytes} of each leaf: what a save stores and a restore verifies."""
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
