"""Experiment configs: every key is a constructor argument, declared from the constructor's signature.

An experiment's `get_config(arg)` starts from `base(task, model_name)`:

- `config.task` names a task class (short name in `seqjax.tasks.TASKS`, or "module:Class"), and
  `config.data` holds exactly that class's keyword arguments: data set, split, loss and evaluation options.
- `config.model_name` names a model class (short name in `seqjax.models.MODELS`, or "module:Class"), and
  `config.model` holds exactly that class's keyword arguments.
- `config.optim`: the optimiser (seqjax/optim.py: the fields of the named optimiser and no others).
- `config.train`: the trainer (below). `config.distributed`: multi-process setup. `config.seed`.

`base` fills `config.data` and `config.model` with every keyword argument of the two constructors, each with
the constructor's own default, so the command line can set any of them
(`--config.model.attention_dropout=0.1`) and no default lives anywhere else. The sections are locked:
assigning a key that is not an argument is an
error at once. The constructors' arguments without a default are not config keys: the task derives them from
its data (`task.model_args()`, e.g. the vocabulary size). `construct` is the one place a config section
becomes a constructor call; it names any key that does not fit.

Trainer fields (`config.train`, `config.distributed`), their units and meaning: `FIELD_DOCS` below (what
`python launch.py --config=... --show_config` prints beside each value, with `optim.FIELD_DOCS` and the
constructors' own docs for `config.data` / `config.model`: `describe`).
The dropout key of step s is `fold_in(fold_in(PRNGKey(seed), s), micro_batch)`, so a resumed run draws the
same numbers.
"""
from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

import ml_collections
from ml_collections import config_dict

FIELD_DOCS = {
    "seed": "PRNG seed of the parameter initialisation, the training data order and the dropout keys",
    "task": "the task class (seqjax.tasks.TASKS short name, or 'module:Class'); config.data holds its "
            "keyword arguments",
    "model_name": "the model class (seqjax.models.MODELS short name, or 'module:Class'); config.model holds "
                  "its keyword arguments",
    "train.steps": "optimiser updates",
    "train.batch_size": "the global batch (over all devices and processes)",
    "train.length_buckets": "1 = batches of any rows, padded to the split's width; N > 1 = each batch from "
                            "one of N length buckets, cut to that bucket's width (tasks that declare "
                            "padded_lengths; see data/iterators.py)",
    "train.eval_every": "evaluate on the val split every N steps (0 = only at the end)",
    "train.eval_batches": "batches per evaluation (0 = the whole split, last batch wrapped around)",
    "train.log_every": "console/metrics line every N steps",
    "train.checkpoint_every": "save a checkpoint every N steps (0 = only at the end)",
    "train.keep_checkpoints": "how many checkpoints to keep",
    "train.async_checkpoints": "save checkpoints in a background thread",
    "train.parallel": "'mesh' (jit over a 1-D device mesh, axis 'data'), 'pmap', or 'none' (a mesh of one "
                      "device)",
    "train.mesh": "the device mesh of train.parallel='mesh', 'axis:size,...' over the axes data (batch "
                  "only), fsdp (parameters, gradients, optimiser state and batch) and tensor (attention "
                  "heads and MLP, Megatron); -1 = the remaining devices, e.g. 'data:2,fsdp:2,tensor:2' "
                  "(seqjax/sharding.py)",
    "train.sharding_rules": "logical parameter axis -> mesh axes, 'embed:fsdp,mlp:tensor,...' ('a+b' for "
                            "two); unnamed axes, and axes whose size the mesh axes do not divide, are "
                            "replicated (seqjax/nn/params.py LOGICAL_AXES, seqjax/sharding.py)",
    "train.precision": "'f32', 'bf16' or 'fp16' (seqjax/precision.py): params and optimiser state stay f32; "
                       "'bf16'/'fp16' compute matmuls and attention products in 16 bits, LayerNorm, softmax "
                       "and loss in f32; 'fp16' adds dynamic loss scaling (a step with inf/NaN gradients is "
                       "skipped and the scale halved)",
    "train.init_from": "path of another run's workdir or checkpoint step dir whose params initialise this "
                       "run ('' = none)",
    "train.init_from_params": "comma-separated top-level parameter names (e.g. 'encoder') that "
                              "train.init_from loads, the rest keeping their initialisation; the names "
                              "loaded, kept and ignored are logged and written to init_from.json ('' = the "
                              "whole model, which must match exactly)",
    "train.plots": "write training-curve PNGs at the end",
    "distributed.coordinator_address": "host:port of process 0 for jax.distributed.initialize ('' = a single "
                                       "process; 'auto' = JAX reads it, the process count and id from the "
                                       "cluster: SLURM srun, Open MPI, a TPU pod slice)",
    "distributed.num_processes": "number of processes (multi-process runs)",
    "distributed.process_id": "this process's index in [0, num_processes)",
}


class ConfigError(ValueError):
    """A config key that is not a constructor argument, or a constructor argument the config cannot set."""


# ----------------------------------------------------------------------------------------------------------
# Names -> classes
# ----------------------------------------------------------------------------------------------------------


def import_object(name: str, registry: Mapping[str, str], what: str) -> Any:
    """A registered short name (registry: name -> "module:attr") or a "module:attr" path -> the object."""
    if not name:
        raise ConfigError(f"{what}: empty; use one of {sorted(registry)} or 'module:Class'")
    path = registry.get(name, name)
    if ":" not in path:
        raise ConfigError(f"{what}: unknown name {name!r}; use one of {sorted(registry)} or 'module:Class'")
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and module_name.startswith(e.name):  # that very module is missing
            raise ConfigError(f"{what}: no module {module_name!r} (from {name!r})") from e
        raise
    if not hasattr(module, attr):
        raise ConfigError(f"{what}: module {module_name!r} has no {attr!r}")
    return getattr(module, attr)


# ----------------------------------------------------------------------------------------------------------
# Constructor signatures -> config sections
# ----------------------------------------------------------------------------------------------------------

# Arguments a constructor receives from the framework, never from a config: NNX's random streams.
FRAMEWORK_ARGUMENTS = ("rngs",)
_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _parameters(cls) -> list[inspect.Parameter]:
    # The signature of __init__ (NNX modules' metaclass hides the class's own call signature), minus self.
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    bad = [p.name for p in params if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if bad:
        raise TypeError(f"{cls.__name__}: *args/**kwargs ({bad}) cannot be config keys; name every argument")
    return [p for p in params if p.name not in FRAMEWORK_ARGUMENTS]


def config_arguments(cls) -> dict[str, inspect.Parameter]:
    """The constructor's arguments with a default: the config keys."""
    return {p.name: p for p in _parameters(cls) if p.default is not p.empty}


def data_arguments(cls) -> list[str]:
    """The constructor's arguments without a default: supplied by the task from its data."""
    return [p.name for p in _parameters(cls) if p.default is p.empty]


def _field(cls, p: inspect.Parameter):
    """A config value for parameter p: its default, or a typed placeholder for a None default."""
    if p.default is not None:
        return p.default
    names = [s.strip() for s in str(p.annotation).split("|") if s.strip() != "None"]
    if len(names) != 1 or names[0] not in _TYPES:
        raise TypeError(f"{cls.__name__}.{p.name}: a None default needs an annotation 'T | None' with T in "
                        f"{sorted(_TYPES)}, got {p.annotation!r}")
    return config_dict.placeholder(_TYPES[names[0]])


def fields(cls, **values) -> ml_collections.ConfigDict:
    """Every config key of `cls` with its default, `values` set on top (each must be a key)."""
    args = config_arguments(cls)
    unknown = sorted(set(values) - set(args))
    if unknown:
        raise ConfigError(f"{cls.__name__} has no keyword argument {', '.join(unknown)}; its config keys: "
                          f"{', '.join(args)}")
    section = ml_collections.ConfigDict({name: _field(cls, p) for name, p in args.items()})
    for name, value in values.items():
        section[name] = value
    return section


def construct(cls, section: str, values: Mapping[str, Any], **data_args):
    """`cls(**values, **data_args)`, after checking that every key of `config.<section>` is an argument a
    config may set, and that `data_args` cover every argument without a default."""
    values = {k: values[k] for k in values.keys()}  # reads every key once (tests record these reads)
    args, data = config_arguments(cls), data_arguments(cls)
    unknown = [k for k in values if k not in args and k not in data]
    if unknown:
        raise ConfigError(f"config.{section}: {cls.__name__} takes no argument {', '.join(unknown)}; "
                          f"its config keys: {', '.join(args)}")
    derived = [k for k in values if k in data]
    if derived:
        raise ConfigError(f"config.{section}: {', '.join(derived)} of {cls.__name__} come from the data "
                          "(set by the task); remove them from the config")
    missing = [k for k in data if k not in data_args]
    if missing:
        raise TypeError(f"{cls.__name__}: needs {missing} from the data, and the task supplies only "
                        f"{sorted(k for k in data_args if k not in FRAMEWORK_ARGUMENTS)}")
    # A task offers every fact of its data a model of its kind may need (e.g. the <unk> id); each model
    # takes the ones its constructor names.
    taken = {k: v for k, v in data_args.items() if k in data or k in FRAMEWORK_ARGUMENTS}
    return cls(**taken, **values)


# ----------------------------------------------------------------------------------------------------------
# The base config
# ----------------------------------------------------------------------------------------------------------


def base(task: str, model_name: str, *, optimizer: str = "adamw") -> ml_collections.ConfigDict:
    """A locked config for `task` (a task name or "module:Class") and `model_name`, every key declared."""
    from seqjax import models, optim, tasks  # the registries import the classes only when asked

    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = task
    c.data = fields(tasks.get(task))
    c.model_name = model_name
    c.model = fields(models.get(model_name))
    c.optim = optim.optimizer_fields(optimizer)

    c.train = t = ml_collections.ConfigDict()
    t.steps = 1000
    t.batch_size = 32
    t.length_buckets = 1
    t.eval_every = 0
    t.eval_batches = 0
    t.log_every = 50
    t.checkpoint_every = 0
    t.keep_checkpoints = 3
    t.async_checkpoints = True
    t.parallel = "mesh"
    t.mesh = "data:-1"
    t.sharding_rules = "embed:fsdp,vocab:tensor,heads:tensor,kv_heads:tensor,mlp:tensor"
    t.precision = "f32"
    t.init_from = ""
    t.init_from_params = ""
    t.plots = True

    c.distributed = d = ml_collections.ConfigDict()
    d.coordinator_address = ""
    d.num_processes = 1
    d.process_id = 0
    c.lock()
    return c


def smoke_train(c: ml_collections.ConfigDict, *, steps: int, batch_size: int) -> None:
    """The training settings every experiment's `smoke` variant shares: a few steps, no warmup, no evaluation
    or checkpoint before the end, no plots, two log lines, no length buckets. Runs in seconds on a CPU (the
    tests run these)."""
    c.optim.warmup_steps = 0
    c.train.length_buckets = 1  # one batch shape, one compilation (tests/test_buckets.py runs the buckets)
    c.train.steps = steps
    c.train.batch_size = batch_size
    c.train.eval_every = 0
    c.train.log_every = steps // 2
    c.train.checkpoint_every = 0
    c.train.plots = False


# ----------------------------------------------------------------------------------------------------------
# A config, field by field, with each field's meaning (launch.py --show_config)
# ----------------------------------------------------------------------------------------------------------


def argument_docs(cls) -> dict[str, str]:
    """{argument: description} from an "Args:" section (Google style: `name: text` or `name (type): text`,
    continuation lines indented deeper) of the class docstring or its __init__'s. Only what is written there:
    an argument the docstring does not describe is absent. A class may also hold shared meanings in a class
    attribute `ARGUMENT_DOCS` ({argument: description}, e.g. the transformer models' common arguments);
    its docstring's own lines win."""
    import re

    docs = dict(getattr(cls, "ARGUMENT_DOCS", {}))
    for doc in (cls.__doc__, getattr(cls.__init__, "__doc__", None)):
        lines = inspect.cleandoc(doc or "").splitlines()
        i = 0
        while i < len(lines):
            if lines[i].strip() not in ("Args:", "Arguments:"):
                i += 1
                continue
            i, indent, name = i + 1, None, None
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > 0):
                line = lines[i]
                depth = len(line) - len(line.lstrip())
                m = re.match(r"\s*(\w+)\s*(\([^)]*\))?\s*:\s*(.*)$", line)
                if line.strip() and (indent is None or depth == indent) and m:
                    indent, name = depth, m.group(1)
                    docs[name] = m.group(3).strip()
                elif line.strip() and name is not None:
                    docs[name] = f"{docs[name]} {line.strip()}".strip()
                i += 1
    return docs


def _constructor_field(cls, name: str, docs: dict[str, str]) -> dict[str, Any]:
    p = config_arguments(cls).get(name)
    if p is None:
        return {"meaning": f"(not an argument of {cls.__name__})", "owner": None, "type": None,
                "default": None}
    kind = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
    kind = kind if p.annotation is not p.empty else "no annotation"
    return {"meaning": docs.get(name, "(no description)"), "owner": cls.__name__, "type": kind,
            "default": p.default}


def field_docs(config) -> list[dict[str, Any]]:
    """Every leaf field of `config`, in `describe`'s order, as a dict: "key" (dotted), "value", "meaning"
    (FIELD_DOCS for the trainer's, optim.FIELD_DOCS for the optimiser's, the constructor's "Args:" docs for
    config.data and config.model, "(no description)" where none is written), and for a constructor argument
    "owner" (the class name), "type" (its annotation) and "default" (the constructor's); for other fields
    "owner" and "type" are None. Builds nothing. The one source of `describe` (launch.py --show_config) and of
    the documentation's config reference (docs/gen_config_reference.py)."""
    from seqjax import models, optim, tasks

    classes = {"data": tasks.get(config.task), "model": models.get(config.model_name)}
    docs = {section: argument_docs(cls) for section, cls in classes.items()}
    out = []

    def walk(node, prefix, only=None):
        for key in [only] if only is not None else node.keys():
            value, path = node[key], f"{prefix}{key}"
            if hasattr(value, "keys"):
                walk(value, f"{path}.")
                continue
            section, _, leaf = path.partition(".")
            if section in classes:
                row = _constructor_field(classes[section], leaf, docs[section])
            else:
                docs_of = optim.FIELD_DOCS.get(leaf) if section == "optim" else FIELD_DOCS.get(path)
                row = {"meaning": docs_of or "(no description)", "owner": None, "type": None, "default": None}
            out.append({"key": path, "value": value, **row})

    order = ["seed", "task", "data", "model_name", "model", "optim", "train", "distributed"]
    for key in sorted(config.keys(), key=lambda k: (order.index(k) if k in order else len(order), k)):
        walk(config, "", only=key)
    return out


def describe(config) -> list[str]:
    """Every field of `config` as `key = value` and, indented below, its meaning (`field_docs`), with type and
    default for a constructor argument (config.data and config.model). Builds nothing."""
    out = []
    for f in field_docs(config):
        meaning = f["meaning"]
        if f["owner"] is not None:
            meaning = f"{meaning} [{f['owner']} argument: {f['type']}, default {f['default']!r}]"
        out.extend([f"{f['key']} = {f['value']!r}", f"    {meaning}"])
    return out
