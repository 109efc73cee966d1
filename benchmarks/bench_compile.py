"""Compile time of the GPT training step for 2, 6 and 12 layers (V=65, N=4, D=128, T=128, B=32, AdamW).

  L12, L6, L2   seqjax.models.gpt.GPT: layers are a lax.scan over stacked parameters, so the
                compiled program holds one layer body whatever L is (goal: L12 <= 1.5x L2)
  flax-L12      the Flax nnx.MultiHeadAttention GPT of bench_gpt.py, a Python loop over 12 layers (every
                layer is traced and compiled separately), for contrast
Each call traces, lowers and compiles a fresh jax.jit of a fresh step function (no cache can answer it) and
returns the seconds taken; the median over rounds is reported.
"""
from __future__ import annotations

from common import jax_compile_seconds

CONFIG = {"V": 65, "N": 4, "D": 128, "T": 128, "B": 32}
QUICK = {"T": 32, "B": 4}


def _setup(config, layers: int, framework: str = "seqjax"):
    import bench_gpt

    cfg = {**config, "L": layers}
    make_model = bench_gpt.seqjax_model if framework == "seqjax" else bench_gpt.flax_model
    model = make_model(cfg)
    batch = bench_gpt.batch(cfg)

    def run():
        step, state = bench_gpt.make_train_step(model)  # a new function object: a cold trace every time
        return jax_compile_seconds(step, state, batch)

    run()  # the first compile also pays for one-off imports and backend start-up
    return run


def setup_l2(config):
    return _setup(config, 2)


def setup_l6(config):
    return _setup(config, 6)


def setup_l12(config):
    return _setup(config, 12)


def setup_flax_l12(config):
    return _setup(config, 12, "flax")


BENCHMARKS = {
    "compile_layers": {
        "config": CONFIG,
        "quick_config": QUICK,
        "kind": "compile",
        "impls": {"L12": "bench_compile:setup_l12", "L2": "bench_compile:setup_l2",
                  "L6": "bench_compile:setup_l6", "flax-L12": "bench_compile:setup_flax_l12"},
        "subject": "L12",
        "peers": ["L2", "L6", "flax-L12"],
    },
}
