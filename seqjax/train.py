"""The training engine: one pure train step, compiled over a device mesh (one device is a mesh of one) or,
through a thin adapter, under pmap; checkpoints that resume exactly, console progress, metrics files, plots
and a final summary.

    state, metrics = train_step(state, batch, rng)      # pure; rng = PRNGKey(seed)
    metrics = eval_step(state, batch)

`train_and_evaluate(config, workdir)` runs a whole experiment (see configs.py for every field) in four
sections, top to bottom: setup, restore, training loop, final evaluation and summary.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from seqjax import checkpoint as ckpt_lib
from seqjax import metrics_io, optim, parallel, precision, sharding, stopping
from seqjax import workdir as workdir_lib
from seqjax.data.iterators import ArrayIterator, check_split_lengths
from seqjax.task import Task, build_model, build_task, headline, result_block, use_workdir

# Losses stay on the device until a log line or a save needs them: reading each one at once would make every
# step wait for the previous one. This bounds how many wait.
MAX_UNCHECKED_LOSSES = 1000


class TrainState(NamedTuple):
    step: jax.Array  # int32 [], optimiser updates done so far
    params: nnx.State  # the model's nnx.Param variables (float32)
    rest: nnx.State  # every other model variable (e.g. batch statistics); empty for most models
    opt_state: optax.OptState


class NonFiniteLossError(FloatingPointError):
    """A step's loss was NaN or inf; the message names the step and the last good checkpoint."""


def log(msg: str) -> None:
    if jax.process_index() == 0:
        print(msg, flush=True)


# ======================================================================== the state and the pure steps


def state_initializer(config, task: Task, tx: optax.GradientTransformation
                      ) -> tuple[nnx.GraphDef, Callable[[], TrainState]]:
    """(graphdef, make): `make()` is the TrainState at step 0 of `build_model(config, task,
    nnx.Rngs(config.seed))`, to run as one jitted function (op-by-op it would compile every initialiser
    separately; `parallel.Runner.create_state` jits it with the state's shardings as out_shardings)."""

    def model() -> nnx.Module:
        return build_model(config, task, nnx.Rngs(config.seed))

    def make() -> TrainState:
        _, params, rest = nnx.split(model(), nnx.Param, ...)
        return TrainState(jnp.zeros((), jnp.int32), params, rest, tx.init(params))

    return nnx.split(nnx.eval_shape(model), nnx.Param, ...)[0], make


def init_state(config, task: Task, tx: optax.GradientTransformation) -> tuple[nnx.GraphDef, TrainState]:
    """(graphdef, TrainState at step 0) on the default device."""
    graphdef, make = state_initializer(config, task, tx)
    return graphdef, jax.jit(make)()


def step_key(rng: jax.Array, step: jax.Array, micro: int | jax.Array = 0) -> jax.Array:
    """The dropout key of micro-batch `micro` of step `step`: fold_in(fold_in(rng, step), micro)."""
    return jax.random.fold_in(jax.random.fold_in(rng, step), micro)


def make_train_step(task: Task, graphdef: nnx.GraphDef, tx: optax.GradientTransformation,
                    schedule: optax.Schedule | None = None, *, accum_steps: int = 1,
                    policy: precision.Policy = precision.F32, axis_name: str | None = None) -> Callable:
    """A pure `train_step(state, batch, rng) -> (state, metrics)`.

    `batch` leaves are [B, ...] (this device's rows under pmap). With `accum_steps` A > 1 the batch is split
    into A micro-batches [A, B/A, ...] whose gradients are averaged before one optimiser update. Under pmap
    (`axis_name` set), gradients, loss and metrics are averaged over devices and the dropout key also folds in
    the device index; under the mesh the key covers the global batch, so 1 and N devices draw the same masks.
    `policy`: seqjax/precision.py (under fp16, `tx` is `precision.with_loss_scale(tx)`, which skips a step).
    """

    def loss_fn(params, rest, batch, key, scale):
        model = nnx.merge(graphdef, policy.cast_params(params), rest)
        loss, metrics = task.loss(model, policy.cast_batch(batch), key)
        _, _, new_rest = nnx.split(model, nnx.Param, ...)
        loss = loss.astype(jnp.float32)
        return loss * scale, (loss, jax.tree.map(lambda m: m.astype(jnp.float32), metrics), new_rest)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_step(state: TrainState, batch: dict[str, jax.Array], rng: jax.Array):
        key = jax.random.fold_in(rng, state.step)
        if axis_name is not None:
            key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
        micro = parallel.split_leading(batch, accum_steps, "batch")  # [A, B/A, ...]
        first = jax.tree.map(lambda x: x[0], micro)
        scale = precision.loss_scale(state.opt_state)  # 1 unless fp16
        _, (_, metrics_shape, _) = jax.eval_shape(loss_fn, state.params, state.rest, first, key, scale)

        def body(carry, xs):
            """for i in range(A): grads += grad(loss)(params, micro[i], fold_in(key, i)); then divide by A."""
            grads, rest, loss_sum, metrics_sum = carry
            i, mb = xs
            (_, (loss, metrics, rest)), g = grad_fn(state.params, rest, mb, jax.random.fold_in(key, i),
                                                    scale)
            grads = jax.tree.map(jnp.add, grads, g)
            metrics_sum = jax.tree.map(jnp.add, metrics_sum, metrics)
            return (grads, rest, loss_sum + loss, metrics_sum), None

        zeros = (jax.tree.map(jnp.zeros_like, state.params), state.rest, jnp.zeros((), jnp.float32),
                 jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metrics_shape))
        (grads, rest, loss, metrics), _ = jax.lax.scan(body, zeros, (jnp.arange(accum_steps), micro))
        grads, loss, metrics = jax.tree.map(lambda x: x / accum_steps, (grads, loss, metrics))
        grads, loss, metrics, rest = parallel.mean_over(axis_name, (grads, loss, metrics, rest))
        grads = precision.unscale(grads, scale)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)  # skips non-finite under fp16
        params = optax.apply_updates(state.params, updates)
        out = {"loss": loss, **metrics, "grad_norm": optax.tree.norm(grads),
               **precision.step_metrics(state.opt_state, grads)}
        if schedule is not None:
            out["lr"] = schedule(state.step)
        return TrainState(state.step + 1, params, rest, opt_state), out

    return train_step


def make_eval_step(task: Task, graphdef: nnx.GraphDef, *, policy: precision.Policy = precision.F32,
                   axis_name: str | None = None) -> Callable:
    """A pure `eval_step(state, batch) -> metrics` (key=None: no dropout), computed as `policy` says."""

    def eval_step(state: TrainState, batch: dict[str, jax.Array]):
        model = nnx.merge(graphdef, policy.cast_params(state.params), state.rest)
        loss, metrics = task.loss(model, policy.cast_batch(batch), None)
        out = {"loss": loss.astype(jnp.float32), **jax.tree.map(lambda m: m.astype(jnp.float32), metrics)}
        return parallel.mean_over(axis_name, out)

    return eval_step


# ==================================================================== the steps compiled for the devices


def _compiled_steps(config, task: Task, graphdef: nnx.GraphDef, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, abstract_state: TrainState) -> parallel.Runner:
    """The run's train and eval steps for `train.parallel` and `train.mesh`, the state sharded by
    `train.sharding_rules` (jit and pmap compile on the first call)."""
    t = config.train
    axis_name = parallel.DATA_AXIS if t.parallel == "pmap" else None
    policy = precision.policy(t.precision)
    train_fn = make_train_step(task, graphdef, tx, schedule, accum_steps=config.optim.accum_steps,
                               policy=policy, axis_name=axis_name)
    eval_fn = make_eval_step(task, graphdef, policy=policy, axis_name=axis_name)
    runner = parallel.make_runner(t.parallel, train_fn, eval_fn, mesh=t.mesh, rules=t.sharding_rules,
                                  abstract_state=abstract_state)
    parallel.check_batch_divides(t.batch_size, runner.batch_ways, config.optim.accum_steps)
    return runner


evaluate_split = parallel.evaluate_split


def _to_floats(metrics: dict[str, jax.Array]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


# ============================================================================= setup and restore helpers


def _train_iterator(config, task: Task, arrays: dict[str, np.ndarray]) -> ArrayIterator:
    """This process's rows of each global training batch, cut to length buckets if `train.length_buckets`
    > 1."""
    buckets = int(config.train.length_buckets)
    lengths = getattr(task, "padded_lengths", None)
    if buckets > 1 and not lengths:
        raise ValueError(f"train.length_buckets={buckets}: task {config.task!r} declares no padded_lengths "
                         "({padded array: its lengths array}), so its batches cannot be cut to length")
    return ArrayIterator(arrays, config.train.batch_size, seed=config.seed, process_index=jax.process_index(),
                         process_count=jax.process_count(), lengths=lengths, num_buckets=buckets)


def _load_init_from(path: str, only: str, state: TrainState, tx, workdir: str | None) -> TrainState:
    """`state` with a fresh optimiser state and the params that `checkpoint.init_params` reads and reports."""
    params, report = ckpt_lib.init_params(path, state.params, only, workdir)
    log(report["summary"])
    return state._replace(params=params, opt_state=tx.init(params))


# ================================================================================ training loop helpers


def _due(step: int, every: int, last: int | None = None) -> bool:
    """Whether an action done every `every` steps (0 = never) falls on `step`, or on step `last` if given."""
    return bool(every) and (step % every == 0 or step == last)


def _check_finite(unchecked: list[tuple[int, jax.Array]], checkpoints: ckpt_lib.Checkpoints,
                  writer: metrics_io.MetricWriter) -> None:
    """Empty `unchecked` [(step, loss)], raising NonFiniteLossError at its first NaN or inf loss.

    The loss of step s comes from the parameters after step s - 1, so the good checkpoints are those before.
    """
    for step, loss in unchecked:
        if not np.isfinite(np.asarray(jax.device_get(loss)).reshape(-1)[0]):
            writer.close()
            raise NonFiniteLossError(f"non-finite loss at step {step}; {checkpoints.last_good(step - 1)}")
    unchecked.clear()


def _log_train(writer: metrics_io.MetricWriter, step: int, steps: int, metrics: dict[str, jax.Array],
               pace: metrics_io.Pace) -> None:
    host = _to_floats(metrics)
    rate, eta = pace.lap(step)
    writer.write(step, {**host, "steps_per_s": rate}, "train")
    log(f"step {step:6d}/{steps} | loss {host['loss']:.4g} | {rate:.1f} steps/s | ETA {eta}")


def _evaluate_val(runner: parallel.Runner, state: Any, val: dict[str, np.ndarray] | None, train_config,
                  writer: metrics_io.MetricWriter, step: int) -> dict[str, float]:
    """Metrics on the val split ({} if the task has none), also written to the metrics files and printed."""
    if val is None:
        return {}
    result = evaluate_split(runner, state, val, train_config.batch_size, train_config.eval_batches)
    writer.write(step, result, "val")
    log(f"step {step:6d} | eval " + " ".join(f"{k}={v:.4g}" for k, v in sorted(result.items())))
    return result


def _save(checkpoints: ckpt_lib.Checkpoints, step: int, state: TrainState, train_iter: ArrayIterator,
          config, wait: bool = False) -> None:
    """Save `state` (one copy) with the data iterator's position, so that a resume continues exactly; never
    parameters with a NaN or inf (the checkpoint a NonFiniteLossError names must resume)."""
    if not all(np.isfinite(ckpt_lib.host_array(x)).all() for x in jax.tree.leaves(state.params)):
        raise NonFiniteLossError(f"non-finite parameters after step {step} (not saved); "
                                 f"{checkpoints.last_good(step)}")
    meta = {"iterator": train_iter.get_state(), "config": config.to_dict(), "step": step}
    checkpoints.save(step, state, meta, wait=wait)


def _final_evaluation(stop: stopping.StopSignals, runner: parallel.Runner, state: Any, val, train_config,
                      writer: metrics_io.MetricWriter, step: int, task: Task, graphdef: nnx.GraphDef,
                      splits: dict, workdir: str) -> dict[str, float]:
    """val metrics and the task's report. A signal stops it (`stop.stopped`), keeping the metrics done so far.

    Val evaluation is a collective in a multi-process run, so there the processes finish it and then agree;
    the task's report runs on each process alone and stops at once.
    """
    log("final evaluation ...")
    final = {}
    try:
        with stop.interruptible("final evaluation") if jax.process_count() == 1 else contextlib.nullcontext():
            result = _evaluate_val(runner, state, val, train_config, writer, step)
        final.update({f"val_{k}": v for k, v in result.items()})
        if stop.agree_now():
            return final
        with stop.interruptible("final evaluation"):
            one = runner.one_copy(state)  # pmap holds one copy per device
            model = nnx.merge(graphdef, *sharding.addressable((one.params, one.rest)))
            final.update({k: float(v) for k, v in task.evaluate(model, splits, workdir).items()})
    except stopping.Interrupted:
        stop.stopped = True
    return final


# ========================================================================================== the run


def train_and_evaluate(config, workdir: str, experiment: str = "", allow_changes: tuple[str, ...] = (),
                       task: Task | None = None, stop: stopping.StopSignals | None = None) -> dict:
    """Train `config` in `workdir` (resuming from its latest checkpoint if any); returns the summary also
    written to workdir/summary.json: {"experiment", "config", "steps", "wall_time_s", "final", "headline",
    "status" ("completed" | "interrupted"), "interruption" ({"signal", "phase"} or None)}. SIGTERM/SIGINT in
    any phase save the state and stop. The workdir is locked for the run; resuming refuses a config that
    differs in a key that defines the run (all but workdir.FREE_CONFIG_KEYS) unless `allow_changes` names it.
    `task`, `stop`: the task and the signal handlers launch.py already made before loading data, or None.
    """
    workdir = os.path.abspath(workdir)
    workdir_lib.check_workdir_format(workdir)
    os.makedirs(workdir, exist_ok=True)
    with workdir_lib.WorkdirLock(workdir, enabled=jax.process_index() == 0):
        # Under the lock (no other run rewrites config.json meanwhile) and before anything is written.
        changed = workdir_lib.check_config(workdir, config.to_dict(), tuple(allow_changes))
        # A signal in any phase, setup and restore too, stops the run with its state saved.
        with contextlib.nullcontext(stop) if stop is not None else stopping.StopSignals("setup") as stop:
            return _run(config, workdir, experiment, changed, task, stop)


def _run(config, workdir: str, experiment: str, changed: list[str], task: Task | None,
         stop: stopping.StopSignals) -> dict:
    # ------------------------------------------------------------------------------------------- setup
    start = time.time()
    is_main = jax.process_index() == 0
    t = config.train

    task = task if task is not None else build_task(config)  # launch.py passes the one it checked
    use_workdir(task, workdir)
    log("loading data ...")
    splits = task.data()
    if "train" not in splits:
        raise ValueError(f"task {config.task!r}: data() returned splits {sorted(splits)}, needs 'train'")
    train_iter = _train_iterator(config, task, splits["train"])
    val = splits.get("val")
    if val is not None and getattr(task, "padded_lengths", None):  # the train split: by its iterator
        check_split_lengths(val, task.padded_lengths, "val")

    tx, schedule = optim.make_optimizer(config.optim, t.steps)
    tx = precision.with_loss_scale(tx, precision.policy(t.precision))  # itself under fp16
    log("initialising the model and optimiser state ...")
    graphdef, make_state = state_initializer(config, task, tx)
    runner = _compiled_steps(config, task, graphdef, tx, schedule, jax.eval_shape(make_state))
    state = runner.create_state(make_state)  # sharded as the steps keep it (one device under pmap)
    if runner.mesh is not None:
        log(f"mesh {dict(runner.mesh.shape)}: state {sharding.describe_bytes(state)}")
    init_only = t.init_from_params  # read even without init_from (which preflight refuses)
    if t.init_from:
        state = _load_init_from(t.init_from, init_only, state, tx, workdir if is_main else None)

    checkpoints = ckpt_lib.Checkpoints(workdir, keep=t.keep_checkpoints, async_save=t.async_checkpoints)
    writer = metrics_io.MetricWriter(workdir, enabled=is_main)

    # ----------------------------------------------------------------------------------------- restore
    stop.phase = "restore"
    step0, restored = 0, checkpoints.restore_latest(ckpt_lib.abstract_tree(state))
    if restored is not None:  # the newest readable checkpoint, restored onto the shardings of `state`
        step0, state, meta = restored
        train_iter.set_state(meta["iterator"])
        log(f"resumed from checkpoint step {step0} in {checkpoints.directory}")
    if is_main:  # only once the checkpoints are known to fit this config
        metrics_io.truncate_after(writer.path, step0)  # rows of steps the restored state has not done
        workdir_lib.write_config(workdir, config.to_dict(), keep_old_as_step=step0 if changed else None)
    state = runner.place_state(state)  # the live copy (the train step donates it)

    # ----------------------------------------------------------------------------------- training loop
    rng = jax.random.PRNGKey(config.seed)
    step, pace = step0, metrics_io.Pace(step0, t.steps)
    unchecked = []  # (step, loss on the device) not yet checked for NaN/inf
    if step < t.steps:
        log(f"compiling the train step (then steps {step + 1}..{t.steps}) ...")
    stop.phase = "training"  # a signal received before this point stops the loop before its first step
    sync = True  # gather the processes' stop flags now and at each log, eval and save step
    while step < t.steps and not stop.agreed(step, check_now=sync):
        state, metrics = runner.train_step(state, runner.place_batch(next(train_iter)), rng)
        step += 1
        unchecked.append((step, metrics["loss"]))
        log_now, save_now = _due(step, t.log_every, last=t.steps), _due(step, t.checkpoint_every)
        eval_now = _due(step, t.eval_every) and step < t.steps
        sync = log_now or save_now or eval_now
        if log_now or save_now or len(unchecked) >= MAX_UNCHECKED_LOSSES:
            _check_finite(unchecked, checkpoints, writer)
        if log_now:
            _log_train(writer, step, t.steps, runner.one_copy(metrics), pace)
        if eval_now:
            with pace.paused():
                _evaluate_val(runner, state, val, t, writer, step)
        if save_now:
            with pace.paused():
                _save(checkpoints, step, runner.one_copy(state), train_iter, config)

    stopped_in_loop = stop.stopped
    if stopped_in_loop:  # on every process: which one had the signal, and that all stop at one step
        print(f"{stop.describe()} at step {step}: saving a checkpoint and stopping", flush=True)
    stop.phase = "final save"
    _check_finite(unchecked, checkpoints, writer)
    _save(checkpoints, step, runner.one_copy(state), train_iter, config, wait=True)

    # ----------------------------------------------------------------- final evaluation and summary
    final = {}
    if not stop.stopped and not stop.agree_now():  # a signal during the last save stops here, saved
        final = _final_evaluation(stop, runner, state, val, t, writer, step, task, graphdef, splits,
                                  workdir)
    status = "interrupted" if stop.stopped else "completed"
    if stop.stopped and not stopped_in_loop:
        log(f"{stop.describe()} during the {stop.report['phase']} (step {step}, saved): stopping")
    writer.flush()
    writer.close()
    checkpoints.close()
    # `final` keeps every metric; `headline` the task's few figures that say how the run went (task.py).
    summary = {"experiment": experiment or config.task, "config": config.to_dict(), "steps": int(step),
               "wall_time_s": time.time() - start, "final": final, "headline": headline(task, final),
               "status": status, "interruption": stop.report}
    if is_main:
        if t.plots:
            metrics_io.plot_curves(writer.path, workdir)
        metrics_io.write_json(os.path.join(workdir, "summary.json"), summary)
        for line in result_block(summary, os.path.join(workdir, "summary.json")):
            log(line)
        log(f"done: {status} at step {step} (wall {summary['wall_time_s']:.1f}s)")
    return summary
