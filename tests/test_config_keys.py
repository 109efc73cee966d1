"""What a user configures is what runs: no config key is ignored, none is unreachable.

For every experiment and every variant it lists:
- `config.data` and `config.model` are exactly the task's and the model's constructor arguments (so the
  command line can set each one), and building the run accepts them;
- changing any one key under `config.model`, `config.data` or `config.optim` changes something observable:
  the model's parameters or its training-mode loss, the task's arrays / model arguments / loss / evaluation,
  or the optimiser's updates;
and one real run reads every key under `config.train` and `config.optim`.

This is the test that would have caught `model.embed_dropout` being silently ignored.
"""
from __future__ import annotations

import glob
import importlib.util
import os

import helpers_train  # noqa: F401  (repository root on sys.path, persistent compilation cache)
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from seqjax import configs, models, optim, tasks
from seqjax.task import build_model, build_task

ROOT = helpers_train.ROOT
EXPERIMENTS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "experiments", "*.py"))
                     if not os.path.basename(p).startswith("_"))

# Keys whose changes are invisible in results by design, each checked where it acts.
SAME_RESULTS = {
    ("model", "attention_implementation"): "selects a kernel with equal outputs (tests/test_transformer.py)",
    ("model", "remat"): "recomputes activations in the backward pass: same values (test_transformer.py)",
    ("model", "implementation"): "selects the native, fused or scan recurrent kernel (test_rnn_kernels.py)",
    ("optim", "accum_steps"): "micro-batching of one update, equal gradients (tests/test_train.py)",
    ("optim", "name"): "selects the optimiser and with it the keys (test_optimiser_keys_are_exact)",
}
# Values to try for string keys (the first one that differs from the config and builds is used).
CHOICES = {
    "positions": ["learned", "sinusoidal", "rope", "sincos2d"], "pooling": ["cls", "mean"],
    "pool": ["last", "mean", "max"], "cell": ["lstm", "gru", "rnn"], "activation": ["relu", "gelu"],
    "attention": ["dot", "general", "bahdanau"], "merge": ["concat", "sum"],
    "variant": ["pytorch", "original"],
    "schedule": ["cosine", "linear", "constant"], "loss": ["mse", "mae"], "dataset": ["weather", "stocks"],
    "sources": ["mr", "shakespeare", "mr,shakespeare"],
}


def load_experiment(name: str):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", os.path.join(ROOT, "experiments",
                                                                                       f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def variants(name: str) -> list[str]:
    module = load_experiment(name)
    assert isinstance(getattr(module, "VARIANTS", None), dict) and "smoke" in module.VARIANTS, \
        f"experiments/{name}.py: declare VARIANTS = {{name: one-line description}}, with a 'smoke' variant"
    return list(module.VARIANTS)


def config_of(name: str, variant: str) -> ml_collections.ConfigDict:
    return load_experiment(name).get_config(variant)


def alternatives(key: str, value):
    """Values to try in place of `value` for `key`, most likely to build first."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, 2 * value, value - 1, 1]
    if isinstance(value, float):
        return [value + 0.1, 0.5 * value if value else 0.3, 2 * value]
    if isinstance(value, str):
        return [c for c in CHOICES.get(key, []) if c != value]
    if value is None:
        return [1, 2, 0.1, "x"]
    if isinstance(value, tuple):
        return [value[1:], value[:-1]] if len(value) > 1 else [()]
    raise AssertionError(f"no alternatives for {key}={value!r}")


def changes_nothing(section: ml_collections.ConfigDict, key: str, build, base, same) -> str | None:
    """None when some other value of `key` builds something `same` tells apart from `base`, or when every
    other value is refused with an error; else a note of the values tried (an ignored key)."""
    tried, errors = [], []
    for value in [v for v in alternatives(key, section[key]) if v != section[key]]:
        changed = ml_collections.ConfigDict(section.to_dict())
        try:
            changed[key] = value
            result = build(changed)
        except (ValueError, TypeError) as e:  # e.g. num_heads + 1 does not divide d_model: try the next
            errors.append(f"{value!r}: {e}")
            continue
        if not same(base, result):
            return None
        tried.append(repr(value))
    # Every other value refused with an error: the key cannot be silently ignored (e.g. layer_dropout with
    # one layer, which the model rejects because it would do nothing).
    return f"{key} = {', '.join(tried)}" if tried else None


def _same_tree(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    if [np.shape(x) for x in la] != [np.shape(x) for x in lb]:
        return False
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True))


class Fingerprint:
    """What a built thing is, as stages computed only when needed: two fingerprints differ as soon as one
    stage differs, so the costly stages (a loss, an evaluation) run only for keys the cheap ones miss."""

    def __init__(self, *stages):
        self.stages, self.values = stages, {}

    def stage(self, i):
        if i not in self.values:
            self.values[i] = self.stages[i]()
        return self.values[i]

    def same(self, other: Fingerprint) -> bool:
        return all(_same_tree(self.stage(i), other.stage(i)) for i in range(len(self.stages)))


def same_fingerprint(a: Fingerprint, b: Fingerprint) -> bool:
    return a.same(b)


def _first_rows(split: dict, n: int = 4) -> dict:
    return {k: jnp.asarray(v[:n]) for k, v in split.items()}


KEY = jax.random.PRNGKey(7)


# Decoding that a model key may change and a loss does not see (beam search's length penalty).
DECODE = {
    "encoder_decoder": lambda m, b: m.generate(b["src"], b["src_lengths"], max_new_tokens=3, beam_size=2),
}


def _model_fingerprint(config, task, batch) -> Fingerprint:
    """A model: its parameters, then its training-mode (dropout on) loss on a batch, then its evaluation loss,
    then its beam search where it has one."""
    model = build_model(config, task, nnx.Rngs(config.seed))
    decode = DECODE.get(config.model_name, lambda m, b: ())
    return Fingerprint(lambda: nnx.state(model, nnx.Param), lambda: task.loss(model, batch, KEY),
                       lambda: task.loss(model, batch, None), lambda: decode(model, batch))


_TASKS: dict = {}


def _task(name: str, variant: str, config):
    if (name, variant) not in _TASKS:
        _TASKS[(name, variant)] = build_task(config)
    return _TASKS[(name, variant)]


# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_sections_are_the_constructors_arguments(name):
    """Every variant's data/model sections hold exactly the constructors' keyword arguments, and build."""
    for variant in variants(name):
        config = config_of(name, variant)
        task_cls, model_cls = tasks.get(config.task), models.get(config.model_name)
        assert sorted(config.data.keys()) == sorted(configs.config_arguments(task_cls)), (name, variant)
        assert sorted(config.model.keys()) == sorted(configs.config_arguments(model_cls)), (name, variant)
        optim.check_fields(config.optim)
        with pytest.raises(AttributeError):  # the config is locked: a misspelt key fails at once
            config.model.not_a_key = 1
    config = config_of(name, "smoke")
    model = build_model(config, _task(name, "smoke", config), nnx.Rngs(0))
    assert isinstance(model, models.get(config.model_name))


def first_experiment_of(section: str) -> list[str]:
    """One experiment per model class (section "model_name") or task class ("task"): what a key does is the
    class's code, so each class is checked once, on the smoke variant of the first experiment using it."""
    seen, out = set(), []
    for name in EXPERIMENTS:
        owner = config_of(name, "smoke")[section]
        if owner not in seen:
            seen.add(owner)
            out.append(name)
    return out


@pytest.mark.parametrize("name", first_experiment_of("model_name"))
def test_every_model_key_changes_the_model(name):
    config = config_of(name, "smoke")
    task = _task(name, "smoke", config)
    batch = _first_rows(task.data()["train"])
    base = _model_fingerprint(config, task, batch)
    ignored = []
    for key in config.model.keys():
        if ("model", key) in SAME_RESULTS:
            continue

        def build(section, config=config):
            changed = ml_collections.ConfigDict(config.to_dict())
            changed.model = section
            return _model_fingerprint(changed, task, batch)

        note = changes_nothing(config.model, key, build, base, same_fingerprint)
        if note:
            ignored.append(f"model.{note}")
    assert not ignored, f"experiments/{name}.py: changing these keys changed nothing: {ignored}"


def _task_fingerprint(config, task, workdir) -> Fingerprint:
    """A task: its arrays and model arguments, then its losses on a batch, then its evaluation and files."""
    splits = task.data()

    def model():
        return build_model(config, task, nnx.Rngs(config.seed))

    def evaluation():
        result = task.evaluate(model(), splits, workdir)
        files = {}
        for path in sorted(glob.glob(os.path.join(workdir, "*"))):
            if not path.endswith(".png"):
                with open(path, "rb") as f:
                    files[os.path.basename(path)] = np.frombuffer(f.read(), np.uint8)
        return result, files

    batch = _first_rows(splits["train"])
    return Fingerprint(lambda: (splits, task.model_args()),
                       lambda: (task.loss(model(), batch, KEY), task.loss(model(), batch, None)), evaluation)


@pytest.mark.parametrize("name", first_experiment_of("task"))
def test_every_data_key_changes_the_task(name, tmp_path):
    config = config_of(name, "smoke")
    base = _task_fingerprint(config, _task(name, "smoke", config), str(tmp_path / "base"))
    ignored = []
    for i, key in enumerate(config.data.keys()):

        def build(section, config=config, i=i):
            changed = ml_collections.ConfigDict(config.to_dict())
            changed.data = section
            return _task_fingerprint(changed, build_task(changed), str(tmp_path / str(i)))

        note = changes_nothing(config.data, key, build, base, same_fingerprint)
        if note:
            ignored.append(f"data.{note}")
    assert not ignored, f"experiments/{name}.py: changing these keys changed nothing: {ignored}"


def _updates(optim_section, steps: int = 6):
    """Parameters after `steps` updates of a fixed tiny model with large fixed gradients (clipping acts)."""
    from seqjax.nn import Bias, Kernel

    params = nnx.State({"w": Kernel(jnp.ones((3, 2)), ("embed", "mlp")),
                        "b": Bias(jnp.ones((2,)), ("mlp",))})
    tx, _ = optim.make_optimizer(optim_section, 10)
    state = tx.init(params)
    # Magnitudes that vary from step to step (Adam is invariant to a constant gradient scale, so b2 and
    # clipping would not show), some above the clipping norm and some below.
    for i, size in enumerate([10.0, 0.1, 30.0, 0.2, 5.0, 1.0][:steps]):
        grads = jax.tree.map(lambda p, i=i, size=size: jnp.full_like(p, size * (-1) ** i), params)
        updates, state = tx.update(grads, state, params)
        params = jax.tree.map(jnp.add, params, updates)
    return params


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_optim_key_changes_the_updates(name):
    config = config_of(name, "smoke")
    config.optim.warmup_steps = 2  # room for the schedule's keys to act within the few steps
    base = _updates(config.optim)
    ignored = []
    for key in config.optim.keys():
        if ("optim", key) in SAME_RESULTS:
            continue
        note = changes_nothing(config.optim, key, _updates, base, _same_tree)
        if note:
            ignored.append(f"optim.{note}")
    assert not ignored, f"experiments/{name}.py: changing these keys changed nothing: {ignored}"


def test_optimiser_keys_are_exact():
    section = optim.optimizer_fields("adam")
    section.weight_decay = 0.1  # adam has no weight decay: a key it would not read
    with pytest.raises(ValueError, match=r"'adam' reads .* it does not read \['weight_decay'\]"):
        optim.make_optimizer(section, 10)
    section = optim.optimizer_fields("sgd")
    del section["momentum"]
    with pytest.raises(ValueError, match=r"missing \['momentum'\]"):
        optim.make_optimizer(section, 10)


def test_a_run_reads_every_train_and_optim_key(tmp_path, monkeypatch):
    """Record every key read from the config while launch's trainer runs the toy experiment."""
    from seqjax import train

    reads = set()
    original = ml_collections.ConfigDict.__getitem__

    def recording_getitem(self, key):
        reads.add((id(self), key))
        return original(self, key)

    config = helpers_train.toy_config()
    monkeypatch.setattr(ml_collections.ConfigDict, "__getitem__", recording_getitem)
    train.train_and_evaluate(config, str(tmp_path / "run"))
    monkeypatch.undo()
    for section in ("train", "optim"):
        unread = [k for k in config[section].keys() if (id(config[section]), k) not in reads]
        assert not unread, f"config.{section}: never read during a run: {unread}"


def test_unknown_and_data_keys_are_named():
    config = config_of("toy_smoke", "smoke")
    task = build_task(config)
    with config.unlocked():
        config.model.hidden = 8
    with pytest.raises(configs.ConfigError, match=r"config.model: ToyModel takes no argument hidden"):
        build_model(config, task, nnx.Rngs(0))
    config = config_of("toy_smoke", "smoke")
    with config.unlocked():
        config.model.num_inputs = 3
    with pytest.raises(configs.ConfigError, match=r"num_inputs of ToyModel come from the data"):
        build_model(config, task, nnx.Rngs(0))
    with pytest.raises(configs.ConfigError, match=r"unknown name 'no_such_model'"):
        models.get("no_such_model")
