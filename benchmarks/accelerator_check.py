"""Check each vendor kernel against seqjax's XLA path on this machine's accelerator: values, gradients, time.

    python benchmarks/accelerator_check.py [--quick]

On a GPU: cuDNN flash attention (`implementation="cudnn"`, bf16) against the einsum path ("xla", same bf16
inputs) and cuDNN LSTM (`kernels.vendor.cudnn_lstm`, f32) against the fused XLA layer (`kernels.rnn`). On a
TPU: the Pallas splash kernel against the blockwise path. Each row: the largest relative error (max |vendor -
xla| / max |xla|) of the output and of each gradient, whether it is within the row's tolerance, and the
median milliseconds of one jitted forward + backward for both paths. One table; exit status 1 if a vendor
path is off or fails.

On a CPU there is no vendor kernel: the script says so, times the XLA paths (so the script itself is
exercised) and exits 0. `implementation=None` / "auto" picks the vendor path by itself where
`kernels.vendor.attention_kernel` / `rnn_kernel` allow (seqjax/kernels/vendor.py).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from seqjax import allocator  # noqa: E402  (standard library only)

if __name__ == "__main__":  # before JAX loads, as every seqjax program
    allocator.tune_cli("accelerator_check.py")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402


def timed_ms(fn, *args, reps: int = 10) -> float:
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def rel_err(a, b) -> float:
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-30))


def value_and_grads(fn, argnums):
    """jit of args -> (out, grads of <out, fixed cotangent> w.r.t. argnums)."""
    def run(*args):
        out, vjp = jax.vjp(lambda *a: fn(*a), *args)
        cot = jax.tree.map(lambda o: jax.random.normal(jax.random.PRNGKey(9), o.shape, o.dtype), out)
        grads = vjp(cot)
        return out, tuple(grads[i] for i in argnums)
    return jax.jit(run)


def attention_rows(backend: str, quick: bool):
    from seqjax import attention

    B, N, T, K = (2, 4, 256, 64) if quick else (4, 8, 2048 if backend == "tpu" else 1024, 64)
    vendor_impl, ref_impl = ("splash", "blockwise") if backend == "tpu" else ("cudnn", "xla")
    q, k, v = (jax.random.normal(key, (B, T, N, K), jnp.float32).astype(jnp.bfloat16)
               for key in jax.random.split(jax.random.PRNGKey(0), 3))
    rows = []
    for causal in (False, True):
        name = f"attention {'causal' if causal else 'full'} B{B} N{N} T{T} K{K} bf16"
        ref = value_and_grads(lambda q, k, v, c=causal: attention.dot_product_attention(
            q, k, v, causal=c, implementation=ref_impl), (0, 1, 2))
        if backend == "cpu":
            rows.append((name, "-", ref_impl, None, None, timed_ms(ref, q, k, v), None))
            continue
        vend = value_and_grads(lambda q, k, v, c=causal: attention.dot_product_attention(
            q, k, v, causal=c, implementation=vendor_impl), (0, 1, 2))
        (o1, g1), (o2, g2) = vend(q, k, v), ref(q, k, v)
        errs = [rel_err(o1, o2)] + [rel_err(a, b) for a, b in zip(g1, g2, strict=True)]
        times = timed_ms(ref, q, k, v), timed_ms(vend, q, k, v)
        rows.append((name, vendor_impl, ref_impl, errs, 2e-2, *times))
    return rows


def lstm_rows(backend: str, quick: bool):
    from seqjax import cells, scan
    from seqjax.kernels import vendor

    B, T, D, H = (4, 16, 8, 32) if quick else (32, 128, 64, 256)
    cell = cells.Cell("lstm")
    params = cell.init(jax.random.PRNGKey(1), D, H)
    xs = jax.random.normal(jax.random.PRNGKey(2), (B, T, D))
    lengths = jnp.full((B,), T, jnp.int32).at[0].set(T // 2)  # right-padded: one shorter sequence
    name = f"LSTM B{B} T{T} D{D} H{H} f32, lengths"

    def ref_fn(params, xs):
        return scan.unroll(cell, params, xs, lengths=lengths, implementation="fused")[0]

    ref = value_and_grads(ref_fn, (0, 1))
    if backend != "gpu":  # cuDNN only; on a TPU the XLA path is what "auto" runs
        return [(name, "-", "fused", None, None, timed_ms(ref, params, xs), None)]

    def vendor_fn(params, xs):
        return vendor.cudnn_lstm(params, xs, lengths, cell.zero_state(params, B))[0]

    vend = value_and_grads(vendor_fn, (0, 1))
    (o1, g1), (o2, g2) = vend(params, xs), ref(params, xs)
    errs = [rel_err(o1, o2)] + [rel_err(a, b) for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2),
                                                             strict=True)]
    return [(name, "cudnn", "fused", errs, 1e-3, timed_ms(ref, params, xs), timed_ms(vend, params, xs))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes")
    args = parser.parse_args(argv)
    backend = {"cuda": "gpu", "rocm": "gpu"}.get(jax.default_backend(), jax.default_backend())
    print(f"backend {backend}: {jax.devices()}")
    if backend not in ("gpu", "tpu"):
        print("no accelerator: there is no vendor kernel to check here; timing the XLA paths only")
    rows, failed = [], False
    for make in (attention_rows, lstm_rows):
        try:
            rows += make(backend, args.quick)
        except Exception as error:  # noqa: BLE001  a vendor path that fails is a row, not a crash
            rows.append((make.__name__, "FAILED", "", None, None, None, None))
            print(f"{make.__name__}: {type(error).__name__}: {str(error).splitlines()[0]}", file=sys.stderr)
            failed = True
    print("\n| check | vendor | xla path | rel. error out, grads | within | xla ms | vendor ms |")
    print("|---|---|---|---|---|---|---|")
    for name, vendor_impl, ref_impl, errs, tol, ref_ms, vendor_ms in rows:
        ok = "-" if errs is None else ("yes" if max(errs) <= tol else "NO")
        failed |= ok == "NO"
        err_text = "-" if errs is None else ", ".join(f"{e:.1e}" for e in errs)
        ms = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
        tol_text = "" if tol is None else f" (tol {tol:g})"
        print(f"| {name} | {vendor_impl} | {ref_impl} | {err_text} | {ok}{tol_text} | {ms(ref_ms)} | "
              f"{ms(vendor_ms)} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
