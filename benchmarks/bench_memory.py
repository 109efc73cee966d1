"""Memory of one GPT training step (AdamW) on 8 simulated CPU devices: mesh data:8 against fsdp:8.

    python benchmarks/bench_memory.py                          # both meshes at D=1024, L=16 (0.2 B params)
    python benchmarks/bench_memory.py --mesh fsdp:8 --d_model 1280 --run   # one mesh, and one real step
    python benchmarks/run.py memory_gpt_mesh                   # the compiled figures in the results table

Per mesh, in a fresh process with 8 simulated CPU devices (`jax_num_cpu_devices`), the train step of
seqjax.train (the trainer's own step, the state sharded by train.mesh and the default train.sharding_rules)
is compiled from the state's shapes alone, so nothing is allocated for the figures from XLA:
  state/device   parameters + AdamW moments per device, from the shardings the trainer gives the state
                 (bytes of the device's shard of every array; exact, not a formula)
  peak/device    XLA's compiled memory analysis of the SPMD step, per device: arguments + outputs +
                 temporaries - aliased (the donated state)
With --run the state is then created sharded (one jit with out_shardings), one step runs on random tokens, and
  rss            the process's peak resident memory (ru_maxrss) after the step, all 8 devices together
                 (CPU devices share the process; `device.memory_stats()` is None on CPU)
is measured. Results AS MEASURED: see README.md ("Sharded training") and benchmarks/results/latest.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

DEVICES = 8
CONFIG = {"d_model": 1024, "num_layers": 16, "num_heads": 16, "vocab_size": 256, "seq_len": 128,
          "batch_size": 8}


class RandomTokens:
    """Uniform random tokens int[N, T + 1] as a language-modelling task (the memory does not depend on them).

    Args:
        vocab_size: V.
        seq_len: T.
        rows: N.
    """

    def __init__(self, *, vocab_size: int = 256, seq_len: int = 128, rows: int = 64):
        tokens = np.random.default_rng(0).integers(0, vocab_size, (rows, seq_len + 1)).astype(np.int32)
        self.vocab_size, self.splits = vocab_size, {"train": {"tokens": tokens}}

    def data(self):
        return self.splits

    def model_args(self):
        return {"vocab_size": self.vocab_size}

    def loss(self, model, batch, key):
        from seqjax import losses

        logits = model(batch["tokens"][:, :-1], key=key)  # [B, T, V]
        loss = losses.softmax_cross_entropy(logits, batch["tokens"][:, 1:])
        return loss, {}

    def evaluate(self, model, splits, workdir):
        return {}


def _config(c: dict, mesh: str):
    from seqjax import configs

    config = configs.base("bench_memory:RandomTokens", "gpt")
    config.data.vocab_size, config.data.seq_len = c["vocab_size"], c["seq_len"]
    m = config.model
    m.d_model, m.num_layers, m.num_heads = c["d_model"], c["num_layers"], c["num_heads"]
    m.mlp_dim = 4 * c["d_model"]
    m.max_len = c["seq_len"]
    config.train.batch_size, config.train.mesh = c["batch_size"], mesh
    return config


def measure(c: dict, mesh: str, run: bool) -> dict:
    """The figures of the module docstring for config `c` on `mesh` (this process: 8 CPU devices)."""
    import jax

    jax.config.update("jax_num_cpu_devices", DEVICES)
    from seqjax import optim, parallel, sharding, train
    from seqjax.task import build_task

    config = _config(c, mesh)
    task = build_task(config)
    tx, schedule = optim.make_optimizer(config.optim, config.train.steps)
    graphdef, make = train.state_initializer(config, task, tx)
    abstract = jax.eval_shape(make)
    runner = parallel.make_runner("mesh", train.make_train_step(task, graphdef, tx, schedule),
                                  train.make_eval_step(task, graphdef), mesh=mesh,
                                  rules=config.train.sharding_rules, abstract_state=abstract)
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract.params))
    shardings = jax.tree.leaves(runner.state_sharding)
    shard_bytes = [int(np.prod(s.shard_shape(x.shape))) * x.dtype.itemsize
                   for x, s in zip(jax.tree.leaves(abstract), shardings, strict=True)]
    batch = jax.ShapeDtypeStruct((c["batch_size"], c["seq_len"] + 1), np.int32,
                                 sharding=sharding.batch_sharding(runner.mesh))
    with_shardings = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract,
                                  runner.state_sharding)
    start = time.time()
    compiled = runner.train_step.lower(with_shardings, {"tokens": batch}, jax.random.PRNGKey(0)).compile()
    analysis = compiled.memory_analysis()
    out = {"mesh": mesh, "params": params, "config": c,
           "state_bytes_per_device": sum(shard_bytes),
           "peak_bytes_per_device": int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes
                                        + analysis.temp_size_in_bytes - analysis.alias_size_in_bytes),
           "temp_bytes_per_device": int(analysis.temp_size_in_bytes), "compile_s": time.time() - start}
    if run:
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        state = runner.create_state(make)
        out["state_bytes_per_device_allocated"] = max(sharding.bytes_per_device(state).values())
        tokens = task.data()["train"]["tokens"][:c["batch_size"]]
        start = time.time()
        state, metrics = compiled(state, runner.place_batch({"tokens": tokens}), jax.random.PRNGKey(0))
        out["loss"] = float(metrics["loss"])
        out["step_s"] = time.time() - start
        out["rss_before_state_bytes"] = rss0
        out["rss_peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def setup_data8(config):
    return _setup("data:8", config)


def setup_fsdp8(config):
    return _setup("fsdp:8", config)


def _setup(mesh: str, config):
    """For run.py (kind "memory"): the compiled per-device peak of one step, nothing allocated."""
    figures = measure(config, mesh, run=False)
    return lambda: figures["peak_bytes_per_device"]


BENCHMARKS = {
    "memory_gpt_mesh": {
        "config": CONFIG,
        "quick_config": {"d_model": 256, "num_layers": 4, "num_heads": 4},
        "kind": "memory",
        "impls": {"fsdp:8": "bench_memory:setup_fsdp8", "data:8": "bench_memory:setup_data8"},
        "subject": "fsdp:8",
        "peers": ["data:8"],
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mesh", action="append", help="a mesh (repeatable); default data:8 and fsdp:8")
    parser.add_argument("--run", action="store_true", help="also create the state and run one step")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for key, value in CONFIG.items():
        parser.add_argument(f"--{key}", type=int, default=value)
    args = parser.parse_args()
    c = {k: getattr(args, k) for k in CONFIG}
    meshes = args.mesh or ["data:8", "fsdp:8"]
    if args.child:  # one mesh in this process
        print(json.dumps(measure(c, meshes[0], args.run)), flush=True)
        return
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([os.path.dirname(here), here, os.environ.get("PYTHONPATH", "")]))
    print(f"GPT D={c['d_model']} L={c['num_layers']} N={c['num_heads']} F={4 * c['d_model']} "
          f"V={c['vocab_size']}, batch {c['batch_size']} x {c['seq_len']}, AdamW, {DEVICES} CPU devices; "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    for mesh in meshes:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", f"--mesh={mesh}",
               *(f"--{k}={v}" for k, v in c.items()), *(["--run"] if args.run else [])]
        start = time.time()
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if result.returncode:
            print(f"{mesh}: failed\n{result.stderr[-3000:]}", flush=True)
            continue
        r = json.loads(result.stdout.strip().splitlines()[-1])
        mib = lambda b: f"{b / 2**20:,.0f} MiB"  # noqa: E731
        line = (f"{mesh:8s} params {r['params'] / 1e6:.0f} M | state/device "
                f"{mib(r['state_bytes_per_device'])} | compiled peak/device "
                f"{mib(r['peak_bytes_per_device'])}")
        if args.run:
            line += (f" | allocated state/device {mib(r['state_bytes_per_device_allocated'])} | process peak "
                     f"RSS {mib(r['rss_peak_bytes'])} | step {r['step_s']:.1f} s, loss {r['loss']:.3f}")
        print(f"{line} | wall {time.time() - start:.0f} s, load {os.getloadavg()[0]:.1f}", flush=True)
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
