"""The training engine: one pure train step, compiled over a device mesh (or pmap, or one device), with
checkpoints that resume exactly, console progress, metrics files, plots and a final summary.

    state, metrics = train_step(state, batch, rng)      # pure; rng = PRNGKey(seed)
    metrics = eval_step(state, batch)

`train_and_evaluate(config, workdir)` runs a whole experiment (see configs.py for every field).
"""
from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from seqjax import checkpoint as ckpt_lib
from seqjax import metrics_io, optim, parallel
from seqjax.data.iterators import ArrayIterator, eval_batches
from seqjax.task import Task, build_model, build_task


class TrainState(NamedTuple):
    step: jax.Array  # int32 [], optimiser updates done so far
    params: nnx.State  # the model's nnx.Param variables (float32)
    rest: nnx.State  # every other model variable (e.g. batch statistics); empty for most models
    opt_state: optax.OptState


class NonFiniteLossError(FloatingPointError):
    pass


def log(msg: str) -> None:
    if jax.process_index() == 0:
        print(msg, flush=True)


def init_state(config, task: Task, tx: optax.GradientTransformation, seed: int) -> tuple[nnx.GraphDef, TrainState]:
    """(graphdef, TrainState at step 0) from `task.model(nnx.Rngs(seed))`.

    Initialisation runs as one jitted function: op-by-op it would compile every initialiser separately.
    """

    def make() -> TrainState:
        _, params, rest = nnx.split(build_model(config, task, nnx.Rngs(seed)), nnx.Param, ...)
        return TrainState(jnp.zeros((), jnp.int32), params, rest, tx.init(params))

    graphdef = nnx.split(nnx.eval_shape(lambda: build_model(config, task, nnx.Rngs(seed))), nnx.Param, ...)[0]
    return graphdef, jax.jit(make)()


def step_key(rng: jax.Array, step: jax.Array, micro: int | jax.Array = 0) -> jax.Array:
    """The dropout key of micro-batch `micro` of step `step`: fold_in(fold_in(rng, step), micro)."""
    return jax.random.fold_in(jax.random.fold_in(rng, step), micro)


def _mean_over(axis_name: str | None, tree: Any) -> Any:
    if axis_name is None:
        return tree
    return jax.tree.map(lambda x: jax.lax.pmean(x, axis_name) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                        tree)


def make_train_step(task: Task, graphdef: nnx.GraphDef, tx: optax.GradientTransformation,
                    schedule: optax.Schedule | None = None, *, accum_steps: int = 1,
                    mixed_precision: bool = False, axis_name: str | None = None) -> Callable:
    """A pure `train_step(state, batch, rng) -> (state, metrics)`.

    `batch` leaves are [B, ...] (this device's rows under pmap). With `accum_steps` A > 1 the batch is split
    into A micro-batches [A, B/A, ...] whose gradients are averaged before one optimiser update. Under pmap
    (`axis_name` set), gradients, loss and metrics are averaged over devices and the dropout key also folds in
    the device index; under the mesh the key covers the global batch, so 1 and N devices draw the same masks.
    """
    compute_dtype = jnp.bfloat16 if mixed_precision else None

    def loss_fn(params, rest, batch, key):
        if compute_dtype is not None:
            params = optim.cast_floating(params, compute_dtype)
        model = nnx.merge(graphdef, params, rest)
        loss, metrics = task.loss(model, batch, key)
        _, _, new_rest = nnx.split(model, nnx.Param, ...)
        return loss.astype(jnp.float32), (jax.tree.map(lambda m: m.astype(jnp.float32), metrics), new_rest)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
        key = jax.random.fold_in(rng, state.step)
        if axis_name is not None:
            key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
        micro = parallel.split_leading(batch, accum_steps, "batch")  # [A, B/A, ...]
        first = jax.tree.map(lambda x: x[0], micro)
        _, (metrics_shape, _) = jax.eval_shape(loss_fn, state.params, state.rest, first, key)

        def body(carry, xs):
            """for i in range(A): grads += grad(loss)(params, micro[i], fold_in(key, i)); then divide by A."""
            grads, rest, loss_sum, metrics_sum = carry
            i, mb = xs
            (loss, (metrics, rest)), g = grad_fn(state.params, rest, mb, jax.random.fold_in(key, i))
            grads = jax.tree.map(jnp.add, grads, g)
            metrics_sum = jax.tree.map(jnp.add, metrics_sum, metrics)
            return (grads, rest, loss_sum + loss, metrics_sum), None

        zeros = (jax.tree.map(jnp.zeros_like, state.params), state.rest, jnp.zeros((), jnp.float32),
                 jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metrics_shape))
        (grads, rest, loss, metrics), _ = jax.lax.scan(body, zeros, (jnp.arange(accum_steps), micro))
        grads, loss, metrics = jax.tree.map(lambda x: x / accum_steps, (grads, loss, metrics))
        grads, loss, metrics, rest = _mean_over(axis_name, (grads, loss, metrics, rest))
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        out = {"loss": loss, **metrics, "grad_norm": optax.tree.norm(grads)}
        if schedule is not None:
            out["lr"] = schedule(state.step)
        return TrainState(state.step + 1, params, rest, opt_state), out

    return train_step


def make_eval_step(task: Task, graphdef: nnx.GraphDef, *, mixed_precision: bool = False,
                   axis_name: str | None = None) -> Callable:
    """A pure `eval_step(state, batch) -> metrics` (key=None: no dropout)."""

    def eval_step(state: TrainState, batch: dict[str, jax.Array]):
        params = optim.cast_floating(state.params, jnp.bfloat16) if mixed_precision else state.params
        loss, metrics = task.loss(nnx.merge(graphdef, params, state.rest), batch, None)
        out = {"loss": loss.astype(jnp.float32), **jax.tree.map(lambda m: m.astype(jnp.float32), metrics)}
        return _mean_over(axis_name, out)

    return eval_step


class Runner:
    """The step functions compiled for one execution mode, and how states and batches are placed for it.

    mode "mesh": jit with NamedShardings (state replicated, batch split on "data"), state donated.
    mode "pmap": pmap over local devices, axis "data", state donated. mode "none": jit on one device.
    """

    def __init__(self, mode: str, train_step_fn: Callable, eval_step_fn: Callable,
                 devices: list | None = None):
        self.mode = mode
        if mode == "mesh":
            self.mesh = parallel.make_mesh(devices)
            self.num_devices = self.mesh.size
            rep, data = parallel.replicated(self.mesh), parallel.batch_sharding(self.mesh)
            self.train_step = jax.jit(train_step_fn, in_shardings=(rep, data, rep), out_shardings=(rep, rep),
                                      donate_argnums=0)
            self.eval_step = jax.jit(eval_step_fn, in_shardings=(rep, data), out_shardings=rep)
        elif mode == "pmap":
            self.devices = jax.local_devices() if devices is None else list(devices)
            self.num_devices = len(self.devices) * jax.process_count()
            self.train_step = jax.pmap(train_step_fn, axis_name=parallel.DATA_AXIS, in_axes=(0, 0, None),
                                       donate_argnums=0, devices=self.devices)
            self.eval_step = jax.pmap(eval_step_fn, axis_name=parallel.DATA_AXIS, devices=self.devices)
        elif mode == "none":
            self.device = (devices or jax.local_devices())[0]
            self.num_devices = 1
            self.train_step = jax.jit(train_step_fn, donate_argnums=0)
            self.eval_step = jax.jit(eval_step_fn)
        else:
            raise ValueError(f"train.parallel: expected 'mesh', 'pmap' or 'none', got {mode!r}")

    def place_state(self, state: Any) -> Any:
        """A host/single-device state -> the form the compiled step takes."""
        if self.mode == "mesh":
            return parallel.to_global(state, parallel.replicated(self.mesh))
        if self.mode == "pmap":
            return parallel.replicate(state, len(self.devices))
        return jax.device_put(state, self.device)

    def place_batch(self, local_batch: dict[str, np.ndarray]) -> Any:
        """This process's rows of the global batch -> the compiled step's batch argument."""
        if self.mode == "mesh":
            return parallel.to_global(local_batch, parallel.batch_sharding(self.mesh))
        if self.mode == "pmap":
            return parallel.split_leading(local_batch, len(self.devices), "batch")
        return jax.device_put(local_batch, self.device)

    def checkpointable(self, state: Any) -> Any:
        """The state as saved: one copy (pmap keeps one per device)."""
        return parallel.unreplicate(state) if self.mode == "pmap" else state

    def metrics_to_host(self, metrics: Any) -> dict[str, float]:
        if self.mode == "pmap":
            metrics = parallel.unreplicate(metrics)
        return {k: float(v) for k, v in jax.device_get(metrics).items()}


def evaluate_split(runner: Runner, state: Any, arrays: dict[str, np.ndarray], batch_size: int,
                   num_batches: int = 0) -> dict[str, float]:
    """Mean of the per-batch eval metrics over `num_batches` batches of the split (0 = the whole split)."""
    totals, count = {}, 0
    for batch in eval_batches(arrays, batch_size, num_batches, jax.process_index(), jax.process_count()):
        metrics = runner.metrics_to_host(runner.eval_step(state, runner.place_batch(batch)))
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + v
        count += 1
    return {k: v / count for k, v in totals.items()}


class _StopSignals:
    """SIGTERM/SIGINT set a flag the loop checks after each step, so it saves and exits cleanly.

    Multi-process runs need the signal on every process (as cluster schedulers send it): one process stopping
    alone would leave the others waiting in a collective.
    """

    def __init__(self):
        self.received = None
        self._old = {}

    def __enter__(self):
        import threading
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def train_and_evaluate(config, workdir: str, experiment: str = "") -> dict:
    """Train `config` in `workdir` (resuming from its latest checkpoint if any) and write the run's files.

    Returns the summary also written to workdir/summary.json:
    {"experiment", "config", "steps", "wall_time_s", "final": {metric: value}, "status"}.
    status is "completed" or "interrupted" (SIGTERM/SIGINT: saved a checkpoint and stopped early).
    """
    start = time.time()
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    is_main = jax.process_index() == 0
    t = config.train
    task = build_task(config)
    splits = task.data()
    if "train" not in splits:
        raise ValueError(f"task {config.task!r}: data() returned splits {sorted(splits)}, needs 'train'")

    tx, schedule = optim.make_optimizer(config.optim, t.steps)
    graphdef, host_state = init_state(config, task, tx, config.seed)
    train_fn = make_train_step(task, graphdef, tx, schedule, accum_steps=config.optim.accum_steps,
                               mixed_precision=t.mixed_precision,
                               axis_name=parallel.DATA_AXIS if t.parallel == "pmap" else None)
    eval_fn = make_eval_step(task, graphdef, mixed_precision=t.mixed_precision,
                             axis_name=parallel.DATA_AXIS if t.parallel == "pmap" else None)
    runner = Runner(t.parallel, train_fn, eval_fn)
    parallel.check_batch_divides(t.batch_size, runner.num_devices, config.optim.accum_steps)

    if t.init_from:
        params = ckpt_lib.load_params(t.init_from, host_state.params)
        host_state = host_state._replace(params=params, opt_state=tx.init(params))
        log(f"initialised params from {t.init_from}")

    buckets = int(t.length_buckets)
    lengths = getattr(task, "padded_lengths", None)
    if buckets > 1 and not lengths:
        raise ValueError(f"train.length_buckets={buckets}: task {config.task!r} declares no padded_lengths "
                         "({padded array: its lengths array}), so its batches cannot be cut to length")
    train_iter = ArrayIterator(splits["train"], t.batch_size, seed=config.seed,
                               process_index=jax.process_index(), process_count=jax.process_count(),
                               lengths=lengths, num_buckets=buckets)
    checkpoints = ckpt_lib.Checkpoints(workdir, keep=t.keep_checkpoints, async_save=t.async_checkpoints)
    state = runner.place_state(host_state)
    restored = checkpoints.restore_latest(ckpt_lib.abstract_tree(runner.checkpointable(state)))
    if restored is not None:
        step0, saved, meta = restored
        state = runner.place_state(saved) if t.parallel == "pmap" else saved
        train_iter.set_state(meta["iterator"])
        log(f"resumed from checkpoint step {step0} in {checkpoints.directory}")
    else:
        step0 = 0
    if is_main:
        metrics_io.write_json(os.path.join(workdir, "config.json"), config.to_dict())

    writer = metrics_io.MetricWriter(workdir, enabled=is_main)
    rng = jax.random.PRNGKey(config.seed)
    val = splits.get("val")
    eval_bs = t.batch_size

    def save(step, wait=False):
        meta = {"iterator": train_iter.get_state(), "config": config.to_dict(), "step": step}
        checkpoints.save(step, runner.checkpointable(state), meta, wait=wait)

    def run_eval(step):
        if val is None:
            return {}
        result = evaluate_split(runner, state, val, eval_bs, t.eval_batches)
        writer.write(step, result, "val")
        log(f"step {step:6d} | eval " + " ".join(f"{k}={v:.4g}" for k, v in sorted(result.items())))
        return result

    step, status, last_eval = step0, "completed", {}
    pending = []  # (step, loss) not yet checked for finiteness; checked in bulk to avoid a sync every step
    window_start, window_steps = time.time(), 0

    def check_finite():
        for s, loss in pending:
            if not np.isfinite(float(np.asarray(jax.device_get(loss)).reshape(-1)[0])):
                writer.close()
                checkpoints.wait()
                good = checkpoints.all_steps()
                raise NonFiniteLossError(f"non-finite loss at step {s}; the last good checkpoint is "
                                         f"{good[-1] if good else 'none'} in {checkpoints.directory}")
        pending.clear()

    with _StopSignals() as stop:
        while step < t.steps:
            batch = runner.place_batch(next(train_iter))
            state, metrics = runner.train_step(state, batch, rng)
            step += 1
            window_steps += 1
            pending.append((step, metrics["loss"]))
            if len(pending) >= 1000:
                check_finite()
            if t.log_every and (step % t.log_every == 0 or step == t.steps):
                check_finite()
                host = runner.metrics_to_host(metrics)
                rate = window_steps / max(time.time() - window_start, 1e-9)
                window_start, window_steps = time.time(), 0
                writer.write(step, {**host, "steps_per_s": rate}, "train")
                log(f"step {step:6d}/{t.steps} | loss {host['loss']:.4g} | {rate:.1f} steps/s | "
                    f"ETA {_format_eta((t.steps - step) / rate)}")
            if t.eval_every and step % t.eval_every == 0 and step < t.steps:
                last_eval = run_eval(step)
                window_start = time.time()  # keep eval time out of steps/s
            if t.checkpoint_every and step % t.checkpoint_every == 0:
                check_finite()
                save(step)
                window_start = time.time()
            if stop.received:
                status = "interrupted"
                log(f"received {stop.received} at step {step}: saving a checkpoint and stopping")
                break
        check_finite()
        save(step, wait=True)

    final = {}
    if status == "completed":
        last_eval = run_eval(step) if step > step0 or not last_eval else last_eval
        final.update({f"val_{k}": v for k, v in last_eval.items()})
        model = nnx.merge(graphdef, *jax.device_get((runner.checkpointable(state).params,
                                                     runner.checkpointable(state).rest)))
        final.update({k: float(v) for k, v in task.evaluate(model, splits, workdir).items()})
    writer.flush()
    writer.close()
    checkpoints.close()
    summary = {"experiment": experiment or config.task, "config": config.to_dict(), "steps": int(step),
               "wall_time_s": time.time() - start, "final": final, "status": status}
    if is_main:
        if t.plots:
            metrics_io.plot_curves(writer.path, workdir)
        metrics_io.write_json(os.path.join(workdir, "summary.json"), summary)
        log(f"done: {status} at step {step}; " + " ".join(f"{k}={v:.4g}" for k, v in sorted(final.items())))
    return summary
