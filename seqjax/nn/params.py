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

`ParamTree` holds a pure-core parameter NamedTuple (e.g. `cells.LSTMParams`, `attention.MultiHeadParams`,
nested ones such as `patterns.Seq2SeqParams`) as NNX parameters, one attribute per field, and `get()` gives
the NamedTuple of arrays back for the pure functions. A NamedTuple type names its bias fields in a class
attribute
`BIASES`; every other array field is a `Kernel`.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx


class Kernel(nnx.Param):
    """A matrix that multiplies activations (dense, attention, recurrent, embedding): weight-decayed."""


class Bias(nnx.Param):
    """An additive offset: never weight-decayed."""


class Norm(nnx.Param):
    """A normalisation scale or offset: never weight-decayed."""


class Position(nnx.Param):
    """A learned position table: never weight-decayed."""


class ClassToken(nnx.Param):
    """A learned input vector ([CLS] prepended to a sequence, [MASK] in place of a token): never decayed."""


DECAYED_ROLES = (Kernel,)
UNDECAYED_ROLES = (Bias, Norm, Position, ClassToken)


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


class ParamTree(nnx.Module):
    """A pure-core parameter NamedTuple held as NNX parameters; `get()` rebuilds it from their values.

    Fields may be arrays (-> `Kernel`, or `Bias` when listed in the type's `BIASES`), None, or nested
    NamedTuples (-> a nested ParamTree).
    """

    def __init__(self, params: NamedTuple):
        if not _is_namedtuple(params):
            raise TypeError(f"params: expected a NamedTuple of arrays, got {type(params).__name__}")
        self.kind = type(params)
        biases = getattr(self.kind, "BIASES", ())
        for name, value in zip(params._fields, params, strict=True):
            if value is None:
                node = None
            elif _is_namedtuple(value):
                node = ParamTree(value)
            else:
                node = (Bias if name in biases else Kernel)(value)
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
