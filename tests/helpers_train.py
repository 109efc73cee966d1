"""Test-only helpers for the training-engine tests: the tiny toy experiment, subprocess launches, param reads."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `experiments` and `seqjax` live at the repository root, which may not be installed
    sys.path.insert(0, ROOT)
TOY = os.path.join(ROOT, "experiments", "toy_smoke.py")


def toy_config(**overrides):
    """The toy_smoke config, shrunk: 8 steps of batch 8, checkpoints every 4, no plots. Overrides: 'a.b'=v."""
    from experiments import toy_smoke

    c = toy_smoke.get_config("smoke")
    c.train.steps = 8
    c.train.eval_every = 0
    c.train.log_every = 4
    c.train.checkpoint_every = 4
    c.train.plots = False
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def final_params(workdir: str, step: int | None = None) -> dict[str, np.ndarray]:
    """{path: array} of the params in the run's latest (or given) checkpoint."""
    import jax

    from seqjax.checkpoint import load_raw

    params = load_raw(workdir, step)["params"]
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(params)[0]}


def assert_params_equal(a: dict, b: dict, exact: bool = True, atol: float = 1e-5):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            np.testing.assert_allclose(a[k], b[k], atol=atol, rtol=1e-5, err_msg=k)


def launch_env(devices: int = 4) -> dict:
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices), PYTHONPATH=ROOT)
    return env


def launch_cmd(*args) -> list[str]:
    return [sys.executable, os.path.join(ROOT, "launch.py"), *args]


def run_launch(*args, devices: int = 4, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(launch_cmd(*args), cwd=ROOT, env=launch_env(devices), capture_output=True, text=True,
                          timeout=timeout)


def overrides(config_overrides: dict) -> list[str]:
    return [f"--config.{k}={v}" for k, v in config_overrides.items()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
