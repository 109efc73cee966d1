"""Devices, meshes and batch placement for the three execution modes of `train.py`.

- "mesh" (default): `jax.jit` over a 1-D mesh with axis "data" spanning every device of every process.
  Parameters and optimiser state are replicated (`P()`), each batch is split along B (`P("data")`). The mesh
  uses `AxisType.Auto` (GSPMD propagation), not jax 0.10's `make_mesh` default `Explicit`: models here carry
  no sharding annotations, and Explicit ("sharding in types") raises ShardingTypeError on ops whose output
  sharding is ambiguous, e.g. the [B] -> [A, B/A] reshape that splits micro-batches, or a gather along B
  (checked on jax 0.10.2); Auto lets the compiler choose and insert collectives.
- "pmap": `jax.pmap` over this process's devices with axis name "data"; state is copied per device and the
  step averages gradients with `lax.pmean` across all devices of all processes.
- "none": the mesh over one device.

In every mode each process holds `batch_size // process_count` rows of the global batch.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"
# jax.distributed timeouts (seconds): waiting for all processes to join, a peer's silence before it counts
# as lost, and waiting for the others at exit.
INITIALIZATION_TIMEOUT_S = 120
HEARTBEAT_TIMEOUT_S = 15
SHUTDOWN_TIMEOUT_S = 30


def initialize_distributed(coordinator_address: str = "", num_processes: int | None = 1,
                           process_id: int | None = 0) -> bool:
    """`jax.distributed.initialize` when more than one process is asked for; call before any other JAX use.

    Returns whether it initialised. CPU processes talk through gloo collectives. A process whose peer dies
    must not wait forever in a collective: after HEARTBEAT_TIMEOUT_S without a peer's heartbeat jax's
    coordination service reports the peer lost and the processes left end with jax's message "Terminating
    process because the JAX distributed service detected fatal errors. This most likely indicates that another
    task died" and SIGABRT (exit status 134 in a shell, -6 from subprocess). Its client takes a callback that
    could exit more quietly, but jax 0.10 cannot call a Python one (the status argument does not convert:
    std::bad_cast, checked). At exit a process waits at most SHUTDOWN_TIMEOUT_S for the others. jax's
    defaults (100 s and 300 s) are long for a run on one machine; a cluster with slow links can raise these.
    """
    if not coordinator_address and (num_processes or 1) <= 1:
        return False
    if not coordinator_address:
        raise ValueError(f"distributed.coordinator_address: required for num_processes={num_processes}")
    if num_processes is None or process_id is None or not 0 <= process_id < num_processes:
        raise ValueError(f"distributed.process_id: expected in [0, num_processes={num_processes}), "
                         f"got {process_id}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, initialization_timeout=INITIALIZATION_TIMEOUT_S,
                               heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
                               shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S)
    return True


def make_mesh(devices: list | None = None) -> Mesh:
    """A 1-D ("data",) mesh over `devices` (default: all devices of all processes), Auto axis type."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_batch_divides(batch_size: int, num_devices: int, accum_steps: int = 1) -> None:
    if batch_size % (num_devices * accum_steps):
        raise ValueError(f"train.batch_size: {batch_size} is not divisible by devices ({num_devices}) x "
                         f"optim.accum_steps ({accum_steps})")


def to_global(tree: Any, sharding: NamedSharding) -> Any:
    """Process-local arrays -> global jax.Arrays with `sharding`.

    For a batch sharding the global leading size is the local one times the process count (each process gives
    its rows); for a replicated sharding every process passes the same full value.
    """
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def replicate(tree: Any, n: int) -> Any:
    """Copy each leaf n times along a new leading axis, for `jax.pmap` over n local devices.

    Leaves pass through the host: a leaf committed to one device (as restored or loaded from a checkpoint)
    would commit its copies there too, and pmap rejects arguments committed to other than its devices.
    """
    return jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(np.asarray(x)), (n, *np.shape(x))), tree)


def unreplicate(tree: Any) -> Any:
    """The first device's copy of a pmapped tree."""
    return jax.tree.map(lambda x: x[0], tree)


def split_leading(tree: Any, n: int, name: str = "batch") -> Any:
    """[B, ...] -> [n, B/n, ...] for each leaf (device or micro-batch axis first)."""

    def split(x):
        if x.shape[0] % n:
            raise ValueError(f"{name}: leading size {x.shape[0]} is not divisible by {n}")
        return x.reshape(n, x.shape[0] // n, *x.shape[1:])  # [n, B/n, ...]

    return jax.tree.map(split, tree)


# ----------------------------------------------------------------------------------------------------------
# The compiled steps of one execution mode
# ----------------------------------------------------------------------------------------------------------


class Runner(NamedTuple):
    """The compiled steps and how values enter and leave them: all the training loop knows of the devices.

    place_state: one host copy of the TrainState -> the steps' state argument.
    place_batch: this process's rows [B/P, ...] of the global batch [B, ...] (P processes) -> the batch.
    one_copy: the steps' state or metrics -> one copy, as saved and logged.
    """
    train_step: Callable  # (state, batch, rng) -> (state, metrics); donates the state
    eval_step: Callable  # (state, batch) -> metrics
    place_state: Callable
    place_batch: Callable
    one_copy: Callable
    num_devices: int


def mesh_runner(train_fn: Callable, eval_fn: Callable, devices: list | None = None) -> Runner:
    """jit over a 1-D "data" mesh of `devices` (default: every device of every process): state replicated,
    batch split along B."""
    mesh = make_mesh(devices)
    rep, data = replicated(mesh), batch_sharding(mesh)
    return Runner(
        train_step=jax.jit(train_fn, in_shardings=(rep, data, rep), out_shardings=(rep, rep),
                           donate_argnums=0),
        eval_step=jax.jit(eval_fn, in_shardings=(rep, data), out_shardings=rep),
        place_state=functools.partial(to_global, sharding=rep),
        place_batch=functools.partial(to_global, sharding=data),
        one_copy=lambda tree: tree,
        num_devices=mesh.size)


def pmap_runner(train_fn: Callable, eval_fn: Callable, devices: list | None = None) -> Runner:
    """The same steps under pmap over this process's `devices`, axis "data": one state copy per device.

    The steps must be made with `axis_name="data"`, so that they average gradients and metrics over devices.
    """
    devices = jax.local_devices() if devices is None else list(devices)
    n = len(devices)
    return Runner(
        train_step=jax.pmap(train_fn, axis_name=DATA_AXIS, in_axes=(0, 0, None), donate_argnums=0,
                            devices=devices),
        eval_step=jax.pmap(eval_fn, axis_name=DATA_AXIS, devices=devices),
        place_state=functools.partial(replicate, n=n),
        place_batch=functools.partial(split_leading, n=n, name="batch"),  # [n, B/(P n), ...]
        one_copy=unreplicate,
        num_devices=n * jax.process_count())


def make_runner(mode: str, train_fn: Callable, eval_fn: Callable, devices: list | None = None) -> Runner:
    """`train.parallel`: "mesh" (every device), "none" (a mesh of one device) or "pmap"."""
    if mode == "mesh":
        return mesh_runner(train_fn, eval_fn, devices)
    if mode == "none":
        if jax.process_count() > 1:
            raise ValueError("train.parallel='none' is one device: a multi-process run needs 'mesh' or "
                             "'pmap'")
        return mesh_runner(train_fn, eval_fn, (devices or jax.local_devices())[:1])
    if mode == "pmap":
        return pmap_runner(train_fn, eval_fn, devices)
    raise ValueError(f"train.parallel: expected 'mesh', 'pmap' or 'none', got {mode!r}")


def mean_over(axis_name: str | None, tree: Any) -> Any:
    """The floating-point leaves of `tree` averaged over the pmap axis `axis_name` (None: as they are)."""
    if axis_name is None:
        return tree
    return jax.tree.map(lambda x: jax.lax.pmean(x, axis_name) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                        tree)
