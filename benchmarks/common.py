"""Helpers shared by benchmark modules and the runner.

Nothing here imports jax or torch at module level: a worker process must load only the framework of the
implementation it runs, so each helper imports its framework inside the function that needs it.
"""
from __future__ import annotations

import statistics
import time


def median(values) -> float:
    return float(statistics.median(values))


def merge(config: dict, quick_config: dict | None, quick: bool) -> dict:
    """The config a benchmark runs with: `quick_config` entries override `config` under --quick."""
    return {**config, **(quick_config or {})} if quick else dict(config)


# ---------------------------------------------------------------------------------------------- FLOP counts

def matmul_flops(m: int, k: int, n: int) -> int:
    """FLOPs of an [m, k] @ [k, n] matmul (a multiply and an add per term)."""
    return 2 * m * k * n


def rnn_train_flops(B: int, T: int, D: int, H: int, gates: int, readout: int = 1) -> int:
    """Matmul FLOPs of one recurrent training step (forward + backward, backward = 2x forward).

    Forward per step: the input projection [B, D] @ [D, G*H], the recurrent one [B, H] @ [H, G*H] and a linear
    readout [B, H] @ [H, readout]; elementwise gate maths and the optimiser update are not counted.
    """
    per_step = matmul_flops(B, D, gates * H) + matmul_flops(B, H, gates * H) + matmul_flops(B, H, readout)
    forward = T * per_step
    return 3 * forward


# ---------------------------------------------------------------------------------------------- JAX helpers

def jax_train_callable(step, state, batch):
    """A no-argument callable running `state, loss = step(state, batch)` once and blocking on the result.

    `step` is a jitted pure function; the callable keeps the latest state so successive calls train on,
    like a real loop (and buffer donation, if the step uses it, stays valid).
    """
    import jax

    holder = {"state": state}

    def run():
        holder["state"], loss = step(holder["state"], batch)
        jax.block_until_ready((holder["state"], loss))
        return loss

    return run


def jax_warmup(run, calls: int = 2) -> None:
    """Compile and settle caches: the first call compiles, the next ones touch every buffer once."""
    for _ in range(calls):
        run()


def jax_compile_seconds(fn, *args, **kwargs) -> float:
    """Seconds to trace, lower and compile `jax.jit(fn)` for these arguments (a fresh jit each call)."""
    import jax

    jitted = jax.jit(fn)
    start = time.perf_counter()
    jitted.lower(*args, **kwargs).compile()
    return time.perf_counter() - start


def jax_peak_bytes(fn, *args, **kwargs) -> int:
    """Peak bytes of `jax.jit(fn)` from XLA's compiled memory analysis: arguments, outputs, temporaries.

    This is the buffer-assignment figure, deterministic and independent of the process's other allocations.
    """
    import jax

    analysis = jax.jit(fn).lower(*args, **kwargs).compile().memory_analysis()
    if analysis is None:
        raise RuntimeError("this backend provides no compiled memory analysis")
    return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes
               + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes)


# -------------------------------------------------------------------------------------------- torch helpers

def torch_train_callable(model, optimizer, loss_fn):
    """A no-argument callable running one eager torch training step: zero grads, loss, backward, update."""

    def run():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model)
        loss.backward()
        optimizer.step()
        return loss

    return run
