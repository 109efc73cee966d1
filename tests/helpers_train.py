"""Helpers for the training-engine tests: the tiny toy experiment, subprocess launches, param reads."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `experiments` and `seqjax` live at the repository root, which may not be installed
    sys.path.insert(0, ROOT)

# The engine tests compile the same tiny steps in many runs and subprocesses: a persistent compilation cache
# (test-only, per user) makes the repeats cheap. It changes no numerics.
CACHE_DIR = os.path.join(tempfile.gettempdir(), f"seqjax-test-jax-cache-{os.getuid()}")


def _enable_cache():
    import jax

    jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


_enable_cache()
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
    from seqjax.checkpoint import flat_by_path, load_raw

    return {k: np.asarray(v) for k, v in flat_by_path(load_raw(workdir, step)["params"]).items()}


def assert_params_equal(a: dict, b: dict, exact: bool = True, atol: float = 1e-5):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            np.testing.assert_allclose(a[k], b[k], atol=atol, rtol=1e-5, err_msg=k)


def launch_env(devices: int = 4) -> dict:
    env = dict(os.environ)
    # tests/ on the path too: tests define tasks the launched runs import as "test_module:Class".
    env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices),
               PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]),
               JAX_COMPILATION_CACHE_DIR=CACHE_DIR, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env


def launch_cmd(*args) -> list[str]:
    return [sys.executable, os.path.join(ROOT, "launch.py"), *args]


def run_launch(*args, devices: int = 4, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(launch_cmd(*args), cwd=ROOT, env=launch_env(devices), capture_output=True,
                          text=True, timeout=timeout)


def overrides(config_overrides: dict) -> list[str]:
    return [f"--config.{k}={v}" for k, v in config_overrides.items()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
