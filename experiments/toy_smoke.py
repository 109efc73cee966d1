"""Toy regression smoke test of the training engine: a tiny MLP on synthetic data (CPU, seconds).

This file is the experiment, its task and its model (`config.task = "experiments.toy_smoke:ToyTask"`,
`config.model_name = "experiments.toy_smoke:ToyModel"`): inputs x [N, T, D], targets y = mean_t(x) @ W + noise
[N, O], a model Dense -> LayerNorm -> ReLU -> dropout -> Dense on the time-mean of x. Variants: "" (default)
and "smoke" (fewer steps). `python launch.py --config=experiments/toy_smoke.py:smoke --workdir=/tmp/toy`
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from seqjax import configs, losses, nn
from seqjax.dropout import dropout
from seqjax.task import Figure, predict

VARIANTS = {"full": "40 steps of batch 8", "smoke": "8 steps, an evaluation and a checkpoint every 4"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = configs.base("experiments.toy_smoke:ToyTask", "experiments.toy_smoke:ToyModel")
    c.model.hidden_size = 16
    c.optim.lr = 1e-2
    c.optim.warmup_steps = 2
    c.optim.weight_decay = 1e-4
    c.train.steps = 40
    c.train.batch_size = 8
    c.train.eval_every = 20
    c.train.log_every = 10
    c.train.checkpoint_every = 20
    if arg == "smoke":
        configs.smoke_train(c, steps=8, batch_size=8)
        c.train.eval_every = 4  # the trainer's tests need an evaluation and a checkpoint mid-run
        c.train.checkpoint_every = 4
    elif arg not in (None, "", "full"):
        raise ValueError(f"toy_smoke: unknown variant {arg!r}; expected '' or 'smoke'")
    return c


class ToyModel(nnx.Module):
    """x [B, T, D] -> predictions [B, O]: Dense -> LayerNorm -> ReLU -> dropout -> Dense on the time-mean.

    Args:
        hidden_size: width of the hidden layer.
        output_dropout: dropout rate before the output layer (training only).
        layer_norm_epsilon: epsilon of the LayerNorm.
    """

    def __init__(self, num_inputs: int, num_outputs: int, *, hidden_size: int = 16,
                 output_dropout: float = 0.0,
                 layer_norm_epsilon: float = 1e-6, rngs: nnx.Rngs):
        self.inp = nn.Dense(num_inputs, hidden_size, axes=("features", "embed"), rngs=rngs)
        self.norm = nn.LayerNorm(hidden_size, epsilon=layer_norm_epsilon, rngs=rngs)
        self.out = nn.Dense(hidden_size, num_outputs, axes=("embed", "classes"), rngs=rngs)
        self.output_dropout = output_dropout

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        h = jax.nn.relu(self.norm(self.inp(jnp.mean(x, axis=1))))  # [B, H]
        return self.out(dropout(h, self.output_dropout, key))


class ToyTask:
    """y = mean_t(x) @ W + noise: n_train / n_val / n_test rows of x [T, D] and y [O], drawn with `seed`.

    Args:
        n_train: training rows.
        n_val: validation rows.
        n_test: test rows.
        T: time steps per input.
        D: input features per step.
        O: outputs per row.
        noise: noise standard deviation added to the targets.
        seed: seed of W and of every split's draws.
    """

    HEADLINE = (Figure("test_mse", "test MSE", "lower",
                       baselines=(("test_mse_mean_baseline", "the training mean"),)),)

    def __init__(self, *, n_train: int = 64, n_val: int = 16, n_test: int = 16, T: int = 4, D: int = 3,
                 O: int = 2, noise: float = 0.1, seed: int = 0):
        rng = np.random.default_rng(seed + 1234)
        w = rng.normal(size=(D, O)).astype(np.float32)
        self.D, self.O, self.splits = D, O, {}
        for name, n in (("train", n_train), ("val", n_val), ("test", n_test)):
            x = rng.normal(size=(n, T, D)).astype(np.float32)
            y = x.mean(axis=1) @ w + noise * rng.normal(size=(n, O)).astype(np.float32)
            self.splits[name] = {"x": x, "y": y.astype(np.float32)}

    def data(self) -> dict[str, dict[str, np.ndarray]]:
        return self.splits

    def model_args(self):
        return {"num_inputs": self.D, "num_outputs": self.O}

    def loss(self, model, batch, key):
        pred = model(batch["x"], key=key)
        loss = losses.mse(pred, batch["y"].astype(pred.dtype))
        return loss, {"mae": jnp.mean(jnp.abs(pred - batch["y"]))}

    def evaluate(self, model, splits, workdir: str) -> dict[str, float]:
        test = splits["test"]
        pred = predict(lambda m, b: m(b["x"]), model, {"x": test["x"]})
        baseline = np.mean(np.square(splits["train"]["y"].mean(axis=0) - test["y"]))
        return {"test_mse": float(np.mean(np.square(pred - test["y"]))),
                "test_mse_mean_baseline": float(baseline)}
