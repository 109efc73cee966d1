"""Devices, meshes and batch placement for the three execution modes of `train.py`.

- "mesh" (default): `jax.jit` over the device mesh of `train.mesh` (seqjax/sharding.py: axes data, fsdp,
  tensor) spanning every device of every process. The state is created, kept and saved with the shardings
  its parameters' logical axes get under `train.sharding_rules` (replicated on a "data"-only mesh, the
  default `data:-1`); each batch is split along B over data x fsdp. The mesh uses `AxisType.Auto` (GSPMD
  propagation), not jax 0.10's `make_mesh` default `Explicit`: the models carry no activation sharding
  annotations, and Explicit ("sharding in types") raises ShardingTypeError on ops whose output sharding is
  ambiguous, e.g. the [B] -> [A, B/A] reshape that splits micro-batches, or a gather along B (checked on jax
  0.10.2); Auto lets the compiler choose and insert collectives.
- "pmap": `jax.pmap` over this process's devices with axis name "data"; state is copied per device and the
  step averages gradients with `lax.pmean` across all devices of all processes. `train.mesh` must be
  data-only.
- "none": the mesh over one device (`train.mesh` must fit one device, as `data:-1` does).

In every mode each process holds `batch_size // process_count` rows of the global batch.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from seqjax import sharding
from seqjax.data.iterators import eval_batches

DATA_AXIS = "data"
# jax.distributed timeouts (seconds): waiting for all processes to join, a peer's silence before it counts
# as lost, and waiting for the others at exit.
INITIALIZATION_TIMEOUT_S = 120
HEARTBEAT_TIMEOUT_S = 15
SHUTDOWN_TIMEOUT_S = 30
# distributed.coordinator_address that lets JAX read the coordinator, the process count and this process's id
# from the cluster (jax.distributed.initialize() without them).
AUTO = "auto"


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

    coordinator_address=AUTO ignores the other two arguments: JAX detects the cluster (a SLURM job step
    started by srun, Open MPI, a Cloud TPU pod slice) and reads all three from it; under SLURM it also
    limits each process to the GPU numbered SLURM_LOCALID (jax/_src/clusters/slurm_cluster.py).
    """
    if not coordinator_address and (num_processes or 1) <= 1:
        return False
    if coordinator_address == AUTO:
        where = {}
    elif not coordinator_address:
        raise ValueError(f"distributed.coordinator_address: required for num_processes={num_processes}")
    elif num_processes is None or process_id is None or not 0 <= process_id < num_processes:
        raise ValueError(f"distributed.process_id: expected in [0, num_processes={num_processes}), "
                         f"got {process_id}")
    else:
        where = dict(coordinator_address=coordinator_address, num_processes=num_processes,
                     process_id=process_id)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**where, initialization_timeout=INITIALIZATION_TIMEOUT_S,
                                   heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
                                   shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S)
    except ValueError as e:
        if where:
            raise
        raise ValueError(f"distributed.coordinator_address={AUTO!r}: JAX found no cluster to read the "
                         "coordinator, process count and process id from (a SLURM job step started by srun, "
                         f"Open MPI, a Cloud TPU pod slice): {e}") from None
    return True


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_ways(mode: str, mesh: str) -> int:
    """Into how many parts `train.parallel` = `mode` with `train.mesh` = `mesh` splits each batch; checks that
    the mesh fits the mode and the devices."""
    if mode == "pmap":
        sizes = sharding.parse_mesh(mesh, jax.local_device_count() * jax.process_count())
        if sizes["fsdp"] > 1 or sizes["tensor"] > 1:
            raise ValueError(f"train.mesh={mesh!r}: train.parallel='pmap' replicates the state, so its mesh "
                             "is data-only ('data:-1'); use train.parallel='mesh' to shard")
        return sizes["data"]
    sizes = sharding.parse_mesh(mesh, 1 if mode == "none" else jax.device_count())
    ways = sizes["data"] * sizes["fsdp"]
    if mode == "mesh" and ways % jax.process_count():
        raise ValueError(f"train.mesh={mesh!r}: the batch axes data x fsdp = {ways} must be a multiple of "
                         f"the {jax.process_count()} processes (each process feeds its own rows; tensor "
                         "parallelism stays within a process)")
    return ways


def check_batch_divides(batch_size: int, ways: int, accum_steps: int = 1) -> None:
    if batch_size % (ways * accum_steps):
        raise ValueError(f"train.batch_size: {batch_size} is not divisible by the batch's shards ({ways}: "
                         f"mesh axes data x fsdp, or the devices under pmap) x optim.accum_steps "
                         f"({accum_steps})")


def to_global(tree: Any, sharding: NamedSharding) -> Any:
    """Process-local arrays -> global jax.Arrays with `sharding`.

    For a batch sharding the global leading size is the local one times the process count (each process gives
    its rows); for a replicated sharding every process passes the same full value.
    """
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def place(tree: Any, shardings: Any) -> Any:
    """`tree` (host arrays, or jax.Arrays on any devices, with the full value on every process) on
    `shardings` (a tree of its structure, or one sharding for all). An array already there stays."""

    def put(x, s):
        if isinstance(x, jax.Array):
            if x.sharding == s:
                return x
            if x.is_fully_addressable == s.is_fully_addressable:  # jax reshards between devices
                return jax.device_put(x, s)
        x = np.asarray(x)  # through the host: this process's copy onto devices of many processes
        return jax.make_array_from_callback(x.shape, s, lambda index: x[index])

    if isinstance(shardings, jax.sharding.Sharding):
        return jax.tree.map(lambda x: put(x, shardings), tree)
    return jax.tree.map(put, tree, shardings)


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

    create_state: the state's initialiser (a function of no arguments) -> the state, made where it is kept:
        under a mesh by one jit with the state's shardings as out_shardings (no full copy on one device
        first); under pmap on one device (place_state then copies it).
    place_state: one copy of the TrainState (as created, restored or loaded) -> the steps' state argument.
    place_batch: this process's rows [B/P, ...] of the global batch [B, ...] (P processes) -> the batch.
    one_copy: the steps' state or metrics -> one copy, as saved and logged.
    """
    train_step: Callable  # (state, batch, rng) -> (state, metrics); donates the state
    eval_step: Callable  # (state, batch) -> metrics
    create_state: Callable
    place_state: Callable
    place_batch: Callable
    one_copy: Callable
    num_devices: int
    batch_ways: int  # into how many parts a batch is split (data x fsdp; the devices under pmap)
    mesh: Mesh | None  # None under pmap
    state_sharding: Any  # the state's shardings (the structure of the state, or one for all); None under pmap


def mesh_runner(train_fn: Callable, eval_fn: Callable, devices: list | None = None, *, mesh: str = "data:-1",
                rules: str = "", abstract_state: Any = None) -> Runner:
    """jit over the mesh `mesh` (train.mesh) of `devices` (default: every device of every process): the state
    sharded by `rules` (train.sharding_rules) from the logical axes of `abstract_state`'s parameters (None:
    replicated), the batch split along B over data x fsdp."""
    device_mesh = sharding.make_mesh(mesh, devices)
    rep, data = replicated(device_mesh), sharding.batch_sharding(device_mesh)
    state = rep if abstract_state is None else sharding.state_shardings(
        abstract_state, device_mesh, sharding.parse_rules(rules))
    return Runner(
        train_step=jax.jit(train_fn, in_shardings=(state, data, rep), out_shardings=(state, rep),
                           donate_argnums=0),
        eval_step=jax.jit(eval_fn, in_shardings=(state, data), out_shardings=rep),
        create_state=lambda make: jax.jit(make, out_shardings=state)(),
        place_state=functools.partial(place, shardings=state),
        place_batch=functools.partial(to_global, sharding=data),
        one_copy=lambda tree: tree,
        num_devices=device_mesh.size,
        batch_ways=sharding.batch_divisor(device_mesh), mesh=device_mesh, state_sharding=state)


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
        create_state=lambda make: jax.jit(make)(),
        place_state=functools.partial(replicate, n=n),
        place_batch=functools.partial(split_leading, n=n, name="batch"),  # [n, B/(P n), ...]
        one_copy=unreplicate,
        num_devices=n * jax.process_count(), batch_ways=n * jax.process_count(), mesh=None,
        state_sharding=None)


def make_runner(mode: str, train_fn: Callable, eval_fn: Callable, devices: list | None = None, *,
                mesh: str = "data:-1", rules: str = "", abstract_state: Any = None) -> Runner:
    """`train.parallel`: "mesh" (every device, laid out as `mesh`, the state sharded by `rules`), "none" (a
    mesh of one device) or "pmap" (a data-only `mesh`). See `mesh_runner` for the arguments."""
    if mode not in ("mesh", "none", "pmap"):
        raise ValueError(f"train.parallel: expected 'mesh', 'pmap' or 'none', got {mode!r}")
    if mode == "none" and jax.process_count() > 1:
        raise ValueError("train.parallel='none' is one device: a multi-process run needs 'mesh' or 'pmap'")
    if devices is None:
        batch_ways(mode, mesh)  # checks the mesh against the mode and the processes
    if mode == "pmap":
        return pmap_runner(train_fn, eval_fn, devices)
    if mode == "none":
        devices = (devices or jax.local_devices())[:1]
    return mesh_runner(train_fn, eval_fn, devices, mesh=mesh, rules=rules, abstract_state=abstract_state)


def evaluate_split(runner: Runner, state: Any, arrays: dict[str, np.ndarray], batch_size: int,
                   num_batches: int = 0) -> dict[str, float]:
    """Mean of the per-batch eval metrics over `num_batches` batches of the split (0 = the whole split)."""
    totals, count = {}, 0
    for batch in eval_batches(arrays, batch_size, num_batches, jax.process_index(), jax.process_count()):
        metrics = jax.device_get(runner.one_copy(runner.eval_step(state, runner.place_batch(batch))))
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + float(v)
        count += 1
    return {k: v / count for k, v in totals.items()}


def mean_over(axis_name: str | None, tree: Any) -> Any:
    """The floating-point leaves of `tree` averaged over the pmap axis `axis_name` (None: as they are)."""
    if axis_name is None:
        return tree
    return jax.tree.map(lambda x: jax.lax.pmean(x, axis_name) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                        tree)
