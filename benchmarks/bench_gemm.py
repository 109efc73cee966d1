"""The f32 GEMM peak: an [n, n] @ [n, n] matmul in JAX and in torch.

Every other benchmark's GFLOP/s is reported as a fraction of this, measured in the same run, so a figure like
"35% of GEMM peak" says how much of the machine a recurrent or attention step actually uses.
"""
from __future__ import annotations

from common import matmul_flops


def setup_jax(config):
    import jax
    import jax.numpy as jnp

    n = config["n"]
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    run = lambda: jax.block_until_ready(matmul(a, b))
    run()
    run()
    return run


def setup_torch(config):
    import torch

    n = config["n"]
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator, dtype=torch.float32)
    b = torch.randn(n, n, generator=generator, dtype=torch.float32)
    out = torch.empty(n, n, dtype=torch.float32)
    run = lambda: torch.matmul(a, b, out=out)
    run()
    run()
    return run


BENCHMARKS = {
    "gemm_f32": {
        "config": {"n": 2048},
        "quick_config": {"n": 1024},
        "flops": lambda config: matmul_flops(config["n"], config["n"], config["n"]),
        "impls": {"jax": "bench_gemm:setup_jax", "torch": "bench_gemm:setup_torch"},
        "subject": "jax",
        "peers": ["torch"],
    },
}
