"""Toy regression smoke test of the training engine: a tiny MLP on synthetic data (CPU, seconds).

This file is both the experiment and its task (`config.task = "experiments.toy_smoke"`): inputs x [N, T, D],
targets y = mean_t(x) @ W + noise [N, O], a model Linear -> LayerNorm -> ReLU -> dropout -> Linear on the
time-mean of x. Variants: "" (default) and "smoke" (fewer steps).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from seqjax import configs
from seqjax.dropout import dropout
from seqjax.losses import mse


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = configs.base()
    c.task = "experiments.toy_smoke"
    c.data.n_train = 64
    c.data.n_val = 16
    c.data.n_test = 16
    c.data.T = 4
    c.data.D = 3
    c.data.O = 2
    c.data.noise = 0.1
    c.model.hidden = 16
    c.model.dropout = 0.0
    c.optim.lr = 1e-2
    c.optim.warmup_steps = 2
    c.optim.weight_decay = 1e-4
    c.train.steps = 40
    c.train.batch_size = 8
    c.train.eval_every = 20
    c.train.eval_batches = 0
    c.train.log_every = 10
    c.train.checkpoint_every = 20
    if arg == "smoke":
        c.train.steps = 8
        c.train.eval_every = 4
        c.train.log_every = 4
        c.train.checkpoint_every = 4
    elif arg not in (None, ""):
        raise ValueError(f"toy_smoke: unknown variant {arg!r}; expected '' or 'smoke'")
    return c


class ToyModel(nnx.Module):
    def __init__(self, D: int, H: int, O: int, rate: float, rngs: nnx.Rngs):
        self.inp = nnx.Linear(D, H, rngs=rngs)
        self.norm = nnx.LayerNorm(H, rngs=rngs)
        self.out = nnx.Linear(H, O, rngs=rngs)
        self.rate = rate

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """x [B, T, D] -> predictions [B, O]."""
        h = jax.nn.relu(self.norm(self.inp(jnp.mean(x, axis=1))))  # [B, H]
        return self.out(dropout(h, self.rate, key))


class ToyTask:
    def __init__(self, config):
        self.config = config

    def data(self) -> dict[str, dict[str, np.ndarray]]:
        d = self.config.data
        rng = np.random.default_rng(self.config.seed + 1234)
        w = rng.normal(size=(d.D, d.O)).astype(np.float32)
        splits = {}
        for name, n in (("train", d.n_train), ("val", d.n_val), ("test", d.n_test)):
            x = rng.normal(size=(n, d.T, d.D)).astype(np.float32)
            y = x.mean(axis=1) @ w + d.noise * rng.normal(size=(n, d.O)).astype(np.float32)
            splits[name] = {"x": x, "y": y.astype(np.float32)}
        return splits

    def model(self, rngs: nnx.Rngs) -> nnx.Module:
        d, m = self.config.data, self.config.model
        return ToyModel(d.D, m.hidden, d.O, m.dropout, rngs)

    def loss(self, model, batch, key):
        pred = model(batch["x"], key=key)
        loss = mse(pred, batch["y"].astype(pred.dtype))
        return loss, {"mae": jnp.mean(jnp.abs(pred - batch["y"]))}

    def evaluate(self, model, splits, workdir: str) -> dict[str, float]:
        test = splits["test"]
        pred = np.asarray(nnx.jit(lambda m, x: m(x))(model, jnp.asarray(test["x"])))
        baseline = np.mean(np.square(splits["train"]["y"].mean(axis=0) - test["y"]))
        return {"test_mse": float(np.mean(np.square(pred - test["y"]))),
                "test_mse_mean_baseline": float(baseline)}


def build(config) -> ToyTask:
    return ToyTask(config)
