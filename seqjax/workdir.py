"""The rules that keep a workdir's run whole: one run at a time, and a resumed run is the same run.

- One run at a time: `WorkdirLock` holds workdir/.lock (hostname and PID) for the run; a lock whose PID is
  gone on this host is taken over.
- A resumed run is the same run: `check_config` compares the new config with the saved one before anything is
  written and refuses a difference in a key that defines the run (all but `FREE_CONFIG_KEYS`) unless the
  caller allows that key; `write_config` then keeps the old config.json as config.<step>.json.
- A workdir written before configs named their model class is refused untouched (`check_workdir_format`).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from typing import Any

from seqjax import metrics_io

# Keys that say how long, how often and on which devices a run goes, not what it computes: they may change on
# any resume (e.g. more train.steps to extend a finished run); a dotted key or a whole section.
# train.parallel, train.mesh and train.sharding_rules are here with the device count (no config key): a
# checkpoint restores onto any layout (orbax reshards it onto the run's shardings).
FREE_CONFIG_KEYS = ("train.steps", "train.log_every", "train.eval_every", "train.eval_batches",
                    "train.checkpoint_every", "train.keep_checkpoints", "train.async_checkpoints",
                    "train.plots", "train.parallel", "train.mesh", "train.sharding_rules", "distributed")
MAX_KEYS_SHOWN = 5


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
