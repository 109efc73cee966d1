"""Parameters in the NNX layer: their roles, and the one bridge from the pure core's NamedTuples.

Every parameter is declared with its role where it is created, as a subclass of `nnx.Param`:

| role         | what it is                                                   | weight decay |
|--------------|--------------------------------------------------------------|--------------|
| `Kernel`     | a matrix that multiplies activations: dense, attention,      | yes          |
|              | recurrent and embedding kernels (an embedding table is the    |              |
|              | kernel of a one-hot dense layer)                              |              |
| `Bias`       | an additive offset                                            | no           |
| `Norm`       | a LayerNorm scale or offset                                   | no           |
| `Position`   | a learned position table                                      | no           |
| `ClassToken` | a learned input vector such as ViT's or BERT's [CLS], [MASK] | no           |

`seqjax.optim.decay_mask` reads these types, so a bias is never decayed whatever it is called, and a plain
`nnx.Param` (no declared role, e.g. from `flax.nnx.Linear`) is an error when weight decay is on, not a guess.

Every parameter also names what each of its axes is, with one of the logical axis names of `LOGICAL_AXES`
(`Kernel(w, ("embed", "mlp"))` for a [D, F] matrix), kept as Flax's `out_sharding` metadata, so
`nnx.get_partition_spec` shows them. `seqjax.sharding` maps them to the axes of a device mesh with the
config's rules (`train.sharding_rules`); the models never name a mesh. A `LayerStack` prepends "layers" to
the parameters it stacks.

`ParamTree` holds a pure-core parameter NamedTuple (e.g. `cells.LSTMParams`, `attention.MultiHeadParams`,
nested ones such as `patterns.Seq2SeqParams`) as NNX parameters, one attribute per field, and `get()` gives
the NamedTuple of arrays back for the pure functions. A NamedTuple type names its bias fields in a class
attribute `BIASES` (every other array field is a `Kernel`) and the logical axes of each array field in a class
attribute `AXES` ({field: names}).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx

# The logical axis names, one meaning each (the shape letters of ARCHITECTURE.md). The sharding rules of
# `seqjax.sharding` map some of them to mesh axes; the others stay replicated.
LOGICAL_AXES = {
    "vocab": "V, a token table's rows or an output layer over a vocabulary",
    "embed": "D, the model width (also a recurrent cell's input features and E, a token embedding's width)",
    "heads": "N, query heads",
    "kv_heads": "M, key/value heads",
    "kv": "K, the width of one attention head",
    "mlp": "F, the hidden width of a transformer MLP",
    "layers": "L, the leading axis of a LayerStack's stacked parameters",
    "length": "T_max, the rows of a learned position table",
    "hidden": "H, a recurrent cell's state width (the rows of its recurrent kernel and of what reads it)",
    "gates": "G * H, a recurrent cell's gate pre-activations (4H for an LSTM, 3H for a GRU, H for an RNN)",
    "attention": "A, the width of additive (Bahdanau) attention",
    "features": "the input features of a model that reads vectors (not tokens or patches)",
    "classes": "C, the outputs of a classification, regression or forecast head",
    "patch": "ph * pw * C, a flattened image patch",
}


class _Role(nnx.Param):
    """A parameter with its role (the subclass) and the logical names of its axes (Flax `out_sharding`).

    Flax's eager sharding is off: the names are logical, a mesh is chosen by the trainer (seqjax.sharding).
    """

    def __init__(self, value, axes: tuple[str | None, ...], **metadata):
        axes = tuple(axes)
        unknown = [a for a in axes if a is not None and a not in LOGICAL_AXES]
        if unknown:
            raise ValueError(f"{type(self).__name__} axes: unknown logical axis names {unknown}; expected "
                             f"names of seqjax.nn.params.LOGICAL_AXES: {sorted(LOGICAL_AXES)}")
        if len(axes) != np.ndim(value):
            raise ValueError(f"{type(self).__name__} axes: {axes} name {len(axes)} axes, the value has shape "
                             f"{tuple(np.shape(value))}")
        super().__init__(value, out_sharding=axes, eager_sharding=False, **metadata)


def axes_of(variable: nnx.Variable) -> tuple[str | None, ...] | None:
    """The logical axis names of a parameter (None for a variable declared without them)."""
    return variable.get_metadata().get("out_sharding")


class Kernel(_Role):
    """A matrix that multiplies activations (dense, attention, recurrent, embedding): weight-decayed."""


class Bias(_Role):
    """An additive offset: never weight-decayed."""


class Norm(_Role):
    """A normalisation scale or offset: never weight-decayed."""


class Position(_Role):
    """A learned position table: never weight-decayed."""


class ClassToken(_Role):
    """A learned input vector ([CLS] prepended to a sequence, [MASK] in place of a token): never decayed."""


DECAYED_ROLES = (Kernel,)
UNDECAYED_ROLES = (Bias, Norm, Position, ClassToken)


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


class ParamTree(nnx.Module):
    """A pure-core parameter NamedTuple held as NNX parameters; `get()` rebuilds it from their values.

    Fields may be arrays (-> `Kernel`, or `Bias` when listed in the type's `BIASES`; their axes named in the
    type's `AXES`), None, or nested NamedTuples (-> a nested ParamTree).
    """

    def __init__(self, params: NamedTuple):
        if not _is_namedtuple(params):
            raise TypeError(f"params: expected a NamedTuple of arrays, got {type(params).__name__}")
        self.kind = type(params)
        biases, axes = getattr(self.kind, "BIASES", ()), getattr(self.kind, "AXES", {})
        for name, value in zip(params._fields, params, strict=True):
            if value is None:
                node = None
            elif _is_namedtuple(value):
                node = ParamTree(value)
            elif name not in axes:
                raise ValueError(f"{self.kind.__name__}.AXES: no logical axis names for field {name!r}")
            else:
                node = (Bias if name in biases else Kernel)(value, axes[name])
            setattr(self, name, node)

    def get(self) -> NamedTuple:
        def value(node):
            if node is None:
                return None
            return node.get() if isinstance(node, ParamTree) else node[...]

        return self.kind(*(value(getattr(self, name)) for name in self.kind._fields))


def count_params(model: nnx.Module) -> int:
    """Number of scalar parameters (every `nnx.Param`, whatever its role)."""
    return sum(int(math.prod(np.shape(p))) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
