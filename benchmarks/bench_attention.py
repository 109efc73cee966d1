"""Attention forward + backward, and its peak memory.

Time ("attention_full", "attention_causal"): out = attention(q, k, v) at B=8, N=8, T=512, K=64 (f32), then the
gradients of <out, g> w.r.t. q, k, v, one jitted step.
  seqjax            seqjax.attention.dot_product_attention, default path (the einsum path below 2048^2
                    scores, blockwise from there: attention.BLOCKWISE_MIN_SCORES)
  seqjax-blockwise  implementation="blockwise": seqjax.kernels.blockwise (online softmax, blockwise custom-VJP
                    backward, causal blocks above the diagonal skipped)
  seqjax-einsum     implementation="xla": the einsum path ([B, N, T, S] scores)
  jax.nn          jax.nn.dot_product_attention (XLA implementation)
  torch           torch.nn.functional.scaled_dot_product_attention (eager, CPU flash kernel)

Memory ("attention_memory_t2048", "_t4096", "attention_memory" at T=8192): peak bytes of the same causal
fwd + bwd step at B=1, N=8, K=64 from XLA's compiled memory analysis (arguments + outputs + temporaries),
so nothing is allocated: blockwise grows linearly in T, the einsum path and jax.nn quadratically.
"""
from __future__ import annotations

from common import jax_peak_bytes, jax_warmup

TIME_CONFIG = {"B": 8, "N": 8, "T": 512, "K": 64}
TIME_QUICK = {"B": 2, "N": 4, "T": 256}


def attention_flops(config) -> float:
    """Matmul FLOPs of fwd + bwd: q k^T and p v forward (2 x 2BNT^2K), 4 products backward; causal: half."""
    B, N, T, K = config["B"], config["N"], config["T"], config["K"]
    total = 6 * 2 * B * N * T * T * K
    return total / 2 if config["causal"] else total


def _attend(impl: str, causal: bool):
    import jax

    from seqjax import attention

    if impl == "jax.nn":
        return lambda q, k, v: jax.nn.dot_product_attention(q, k, v, is_causal=causal)
    implementation = {"seqjax": None, "seqjax-blockwise": "blockwise", "seqjax-einsum": "xla"}[impl]
    return lambda q, k, v: attention.dot_product_attention(q, k, v, causal=causal,
                                                           implementation=implementation)


def _fwd_bwd(impl: str, causal: bool):
    """The jitted step (q, k, v, g) -> (dq, dk, dv) of <attention(q, k, v), g>."""
    import jax
    import jax.numpy as jnp

    attend = _attend(impl, causal)
    return jax.jit(jax.grad(lambda q, k, v, g: jnp.sum(attend(q, k, v) * g), argnums=(0, 1, 2)))


def _setup_time(impl: str, config):
    import jax

    B, N, T, K = config["B"], config["N"], config["T"], config["K"]
    keys = jax.random.split(jax.random.key(0), 4)
    q, k, v, g = (jax.random.normal(key, (B, T, N, K)) for key in keys)
    step = _fwd_bwd(impl, config["causal"])
    run = lambda: jax.block_until_ready(step(q, k, v, g))
    jax_warmup(run, 3)
    return run


def setup_seqjax(config):
    return _setup_time("seqjax", config)


def setup_seqjax_blockwise(config):
    return _setup_time("seqjax-blockwise", config)


def setup_jax_nn(config):
    return _setup_time("jax.nn", config)


def _setup_memory(impl: str, config):
    import jax

    B, N, T, K = config["B"], config["N"], config["T"], config["K"]
    x = jax.ShapeDtypeStruct((B, T, N, K), jax.numpy.float32)
    attend = _attend(impl, config["causal"])
    step = lambda q, k, v, g: jax.grad(lambda *qkv: (attend(*qkv) * g).sum(), argnums=(0, 1, 2))(q, k, v)
    peak = jax_peak_bytes(step, x, x, x, x)  # compiles only: nothing of size [T, T] is ever allocated
    return lambda: peak


def setup_memory_seqjax(config):
    return _setup_memory("seqjax", config)


def setup_memory_seqjax_einsum(config):
    return _setup_memory("seqjax-einsum", config)


def setup_memory_jax_nn(config):
    return _setup_memory("jax.nn", config)


def _time_benchmark(causal: bool) -> dict:
    return {
        "config": {**TIME_CONFIG, "causal": causal},
        "quick_config": TIME_QUICK,
        "flops": attention_flops,
        "impls": {
            "seqjax": "bench_attention:setup_seqjax",
            "seqjax-blockwise": "bench_attention:setup_seqjax_blockwise",
            "jax.nn": "bench_attention:setup_jax_nn",
            "torch": "peers.torch_attention:setup_sdpa",
        },
        "subject": "seqjax",
        "peers": ["torch", "jax.nn", "seqjax-blockwise"],
    }


def _memory_benchmark(T: int) -> dict:
    return {
        "config": {"B": 1, "N": 8, "T": T, "K": 64, "causal": True},
        "quick_config": {"T": T // 4},
        "kind": "memory",
        "impls": {
            "seqjax": "bench_attention:setup_memory_seqjax",
            "seqjax-einsum": "bench_attention:setup_memory_seqjax_einsum",
            "jax.nn": "bench_attention:setup_memory_jax_nn",
        },
        "subject": "seqjax",
        "peers": ["seqjax-einsum", "jax.nn"],
    }


BENCHMARKS = {
    "attention_full": _time_benchmark(causal=False),
    "attention_causal": _time_benchmark(causal=True),
    "attention_memory_t2048": _memory_benchmark(2048),
    "attention_memory_t4096": _memory_benchmark(4096),
    "attention_memory": _memory_benchmark(8192),
}
