"""The device mesh of a run (`train.mesh`) and where each parameter lives on it (`train.sharding_rules`).

A mesh has up to three named axes, outermost first:

| axis     | splits                                                    | collectives per step           |
|----------|-----------------------------------------------------------|--------------------------------|
| `data`   | the batch only; parameters and optimiser state replicated | gradient all-reduce            |
| `fsdp`   | the batch, and the parameters, gradients and optimiser    | parameter all-gather, gradient |
|          | state along the axes the rules map to it (ZeRO-3, FSDP)   | reduce-scatter                 |
| `tensor` | attention heads and the MLP width (Megatron: wq/wk/wv and | activation all-reduce after wo |
|          | fc1 split by columns, wo and fc2 by rows); not the batch  | and fc2                        |

`train.mesh` is one string, `"data:2,fsdp:2,tensor:2"`: sizes of the axes it names (the others are 1), one of
them may be -1 (the devices left). The product must be the number of devices. Devices are laid out
process-major with `tensor` innermost, so tensor parallelism stays among a process's (NVLink-connected)
devices and `data` spans the slow links between hosts.

Parameters name their axes logically where they are created (`seqjax.nn.params.LOGICAL_AXES`: "embed",
"heads", "mlp", ...). `train.sharding_rules` maps logical names to mesh axes, `"embed:fsdp,mlp:tensor"`
(`a+b` for several mesh axes); unnamed logical axes are replicated. A parameter axis is split only where its
size divides by the mesh axes' product, and a mesh axis splits at most one axis of a parameter (the first);
otherwise that axis stays replicated (`unsharded` lists which). The optimiser state holds the parameters'
variables (Adam's moments keep their metadata), so it is sharded as they are; the step counter, the other
model variables and scalars are replicated.

Every axis is `AxisType.Auto`: the parameters' and the batch's shardings are given, and the compiler (GSPMD)
propagates them through the step and inserts the collectives, so one pure train step serves every mesh. (jax
0.10's `jax.make_mesh` defaults to `Explicit`, sharding in types, which needs every ambiguous op annotated;
see parallel.py.)
"""
from __future__ import annotations

import math
from typing import Any

import jax
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from seqjax.nn.params import LOGICAL_AXES, axes_of

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # the mesh axes that split a batch's leading B axis


def parse_mesh(text: str, num_devices: int) -> dict[str, int]:
    """`"data:2,fsdp:-1"` -> {"data": 2, "fsdp": num_devices / 2, "tensor": 1}, checked."""
    where = f"train.mesh={text!r}"
    sizes: dict[str, int] = {}
    for part in str(text).split(","):
        name, sep, size = (s.strip() for s in part.partition(":"))
        if not sep or not name:
            raise ValueError(f"{where}: expected comma-separated 'axis:size' (e.g. "
                             f"'data:2,fsdp:2,tensor:2'), got {part.strip()!r}")
        if name not in MESH_AXES:
            raise ValueError(f"{where}: unknown mesh axis {name!r}; the axes are {', '.join(MESH_AXES)}")
        if name in sizes:
            raise ValueError(f"{where}: axis {name!r} named twice")
        try:
            sizes[name] = int(size)
        except ValueError:
            raise ValueError(f"{where}: size of {name!r} must be an integer (or -1), got {size!r}") from None
        if sizes[name] == 0 or sizes[name] < -1:
            raise ValueError(f"{where}: size of {name!r} must be >= 1 or -1 (the remaining devices), "
                             f"got {sizes[name]}")
    rest = [a for a, s in sizes.items() if s == -1]
    if len(rest) > 1:
        raise ValueError(f"{where}: only one axis may be -1, got {rest}")
    known = math.prod(s for s in sizes.values() if s != -1)
    if rest:
        if num_devices % known:
            raise ValueError(f"{where}: the other axes take {known} devices, which does not divide the "
                             f"{num_devices} devices")
        sizes[rest[0]] = num_devices // known
    if math.prod(sizes.values()) != num_devices:
        raise ValueError(f"{where}: the axes multiply to {math.prod(sizes.values())} devices, there are "
                         f"{num_devices}")
    return {a: sizes.get(a, 1) for a in MESH_AXES}


def make_mesh(text: str, devices: list | None = None) -> Mesh:
    """The mesh of `train.mesh` over `devices` (default: every device of every process), Auto axes."""
    devices = jax.devices() if devices is None else list(devices)
    sizes = parse_mesh(text, len(devices))
    return jax.make_mesh(tuple(sizes.values()), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                         devices=devices)


def parse_rules(text: str) -> dict[str, tuple[str, ...]]:
    """`"embed:fsdp,mlp:tensor,vocab:fsdp+tensor"` -> {logical axis: mesh axes}; "" = all replicated."""
    where = f"train.sharding_rules={text!r}"
    rules: dict[str, tuple[str, ...]] = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        logical, sep, mesh_axes = (s.strip() for s in part.partition(":"))
        targets = tuple(a.strip() for a in mesh_axes.split("+"))
        if not sep or not logical or not all(targets):
            raise ValueError(f"{where}: expected comma-separated 'logical:mesh_axis' (e.g. 'embed:fsdp,"
                             f"mlp:tensor'), got {part!r}")
        if logical not in LOGICAL_AXES:
            raise ValueError(f"{where}: unknown logical axis {logical!r}; the logical axes are "
                             f"{', '.join(LOGICAL_AXES)} (seqjax.nn.params.LOGICAL_AXES)")
        bad = [a for a in targets if a not in MESH_AXES]
        if bad:
            raise ValueError(f"{where}: unknown mesh axes {bad} for {logical!r}; the mesh axes are "
                             f"{', '.join(MESH_AXES)}")
        if logical in rules:
            raise ValueError(f"{where}: logical axis {logical!r} has two rules")
        rules[logical] = targets
    return rules


def _spec(axes: tuple[str | None, ...], shape: tuple[int, ...], rules: dict, mesh: Mesh,
          unsharded: list | None = None, name: str = "") -> P:
    """The PartitionSpec of a parameter of `shape` with logical `axes` under `rules` (see the module doc)."""
    used: set[str] = set()
    out = []
    for dim, (logical, size) in enumerate(zip(axes, shape, strict=True)):
        wanted = [a for a in rules.get(logical, ()) if mesh.shape[a] > 1]
        split = [a for a in wanted if a not in used]
        if split and size % math.prod(mesh.shape[a] for a in split) == 0:
            used.update(split)
            out.append(split[0] if len(split) == 1 else tuple(split))
            continue
        if wanted and unsharded is not None:
            unsharded.append(f"{name} axis {dim} ({logical}, {size}) over {'+'.join(wanted)}")
        out.append(None)
    while out and out[-1] is None:
        out.pop()
    return P(*out)


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def state_shardings(tree: Any, mesh: Mesh, rules: dict, unsharded: list | None = None) -> Any:
    """A tree of NamedShardings of the structure of `tree` (arrays or ShapeDtypeStructs): a variable with
    logical axes by `rules`, every other leaf replicated. `unsharded` collects the axes the rules name that
    stay replicated (their size does not divide)."""
    paths = {id(v): jax.tree_util.keystr(p) for p, v in
             jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_variable)[0]}

    def sharding(x):
        if _is_variable(x) and axes_of(x) is not None:
            spec = _spec(axes_of(x), x.shape, rules, mesh, unsharded, paths.get(id(x), ""))
            return x.replace(NamedSharding(mesh, spec))
        rep = NamedSharding(mesh, P())
        return x.replace(rep) if _is_variable(x) else rep

    return jax.tree.map(sharding, tree, is_leaf=_is_variable)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """A batch's leading B axis split over the mesh's batch axes (data and fsdp), the rest replicated."""
    axes = tuple(a for a in BATCH_AXES if mesh.shape.get(a, 1) > 1)
    return NamedSharding(mesh, P(axes[0] if len(axes) == 1 else (axes or None)))


def batch_divisor(mesh: Mesh) -> int:
    """How many ways a batch is split: the product of the batch axes' sizes."""
    return math.prod(mesh.shape.get(a, 1) for a in BATCH_AXES)


def bytes_per_device(tree: Any) -> dict[Any, int]:
    """{device: bytes of the addressable shards of `tree`'s arrays that it holds}."""
    out: dict[Any, int] = {}
    for leaf in jax.tree.leaves(tree):
        for shard in getattr(leaf, "addressable_shards", ()):
            out[shard.device] = out.get(shard.device, 0) + shard.data.nbytes
    return out


def describe_bytes(tree: Any) -> str:
    """"X MiB per device (Y MiB in all)": the largest per-device share of `tree`'s arrays, and their total."""
    per_device = bytes_per_device(tree)
    total = sum(leaf.nbytes for leaf in jax.tree.leaves(tree) if hasattr(leaf, "nbytes"))
    most = max(per_device.values(), default=0)
    return f"{most / 2**20:.2f} MiB per device ({total / 2**20:.2f} MiB in all)"


def addressable(tree: Any) -> Any:
    """`tree` with every array usable by this process alone: an array whose shards all live here stays as it
    is (sharded); an array spread over processes becomes this host's full copy (a replicated one from a local
    shard; a sharded one gathered, a collective that every process must call)."""
    from jax.experimental import multihost_utils

    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return x
        if x.is_fully_replicated:
            return x.addressable_data(0)
        return multihost_utils.process_allgather(x, tiled=True)

    return jax.tree.map(one, tree)
