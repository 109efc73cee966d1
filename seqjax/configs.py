"""The base experiment config: every experiment's `get_config(arg)` starts from `base()` and fills it in.

Fields (units and meaning):

- seed: int. Seeds model init, data shuffling and dropout. The dropout key of step s is
  `fold_in(fold_in(PRNGKey(seed), s), micro_batch)`, so a resumed run draws the same numbers.
- task: str. Module under `seqjax.tasks` (or a full dotted path) exposing `build(config) -> Task`.
- data, model: ConfigDicts owned by the task (empty here; experiments add fields).
- optim.name: "adamw" | "adam" | "sgd" (sgd uses `momentum`; 0 gives plain SGD).
- optim.lr: peak learning rate, reached after `warmup_steps` of linear warmup from 0.
- optim.b1, optim.b2, optim.eps: Adam moments and epsilon.
- optim.weight_decay: decoupled decay for adamw, L2 added to the gradient for sgd, ignored by adam;
  applied only to weights of rank >= 2 whose path names no bias or norm scale (see optim.decay_mask).
- optim.momentum: SGD momentum (0 = none); nesterov: bool.
- optim.schedule: "cosine" | "linear" | "constant": decay after warmup, to `lr * end_lr_factor` at the end.
- optim.warmup_steps, optim.end_lr_factor.
- optim.clip_norm: global gradient-norm clip (0 or None = off).
- optim.accum_steps: split each global batch into this many micro-batches, summed by a scan inside one step
  (one optimiser update per train step; see train.py).
- train.steps: optimiser updates. train.batch_size: global batch (over all devices and processes).
- train.length_buckets: 1 = batches of any rows, padded to the split's width. N > 1 = each batch from one of N
  length buckets, cut to that bucket's width (tasks that declare `padded_lengths`; see data/iterators.py).
- train.eval_every / eval_batches: evaluate on `val` every N steps (0 = only at the end) on this many batches
  (0 = the whole split, last batch wrapped around).
- train.log_every: console/metrics line every N steps. train.checkpoint_every: save every N steps (0 = only at
  the end); keep_checkpoints: how many to keep; async_checkpoints: save in a background thread.
- train.parallel: "mesh" (jit over a 1-D device mesh, axis "data"; default), "pmap", or "none" (one device).
- train.mixed_precision: bf16 compute with f32 params and optimiser state.
- train.init_from: path of another run's workdir or checkpoint step dir whose params initialise this run.
- train.plots: write training-curve PNGs at the end.
- train.debug_kill_at_step: test hook: once the checkpoint at this step is on disk, SIGKILL itself (0 = off).
- distributed.coordinator_address / num_processes / process_id: for jax.distributed.initialize; empty/None
  means single process.
"""
from __future__ import annotations

import ml_collections


def base() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = ""
    c.data = ml_collections.ConfigDict()
    c.model = ml_collections.ConfigDict()

    c.optim = o = ml_collections.ConfigDict()
    o.name = "adamw"
    o.lr = 1e-3
    o.b1 = 0.9
    o.b2 = 0.999
    o.eps = 1e-8
    o.weight_decay = 0.0
    o.momentum = 0.9
    o.nesterov = False
    o.schedule = "cosine"
    o.warmup_steps = 0
    o.end_lr_factor = 0.0
    o.clip_norm = 1.0
    o.accum_steps = 1

    c.train = t = ml_collections.ConfigDict()
    t.steps = 1000
    t.batch_size = 32
    t.length_buckets = 1
    t.eval_every = 0
    t.eval_batches = 0
    t.log_every = 50
    t.checkpoint_every = 0
    t.keep_checkpoints = 3
    t.async_checkpoints = True
    t.parallel = "mesh"
    t.mixed_precision = False
    t.init_from = ""
    t.plots = True
    t.debug_kill_at_step = 0

    c.distributed = d = ml_collections.ConfigDict()
    d.coordinator_address = ""
    d.num_processes = 1
    d.process_id = 0
    return c


def smoke_train(c: ml_collections.ConfigDict, *, steps: int, batch_size: int) -> None:
    """The training settings every experiment's `smoke` variant shares: a few steps, no warmup, no evaluation
    or checkpoint before the end, no plots, two log lines, no length buckets. Runs in seconds on a CPU (the
    tests run these)."""
    c.optim.warmup_steps = 0
    c.train.length_buckets = 1  # one batch shape, one compilation (tests/test_buckets.py runs the buckets)
    c.train.steps = steps
    c.train.batch_size = batch_size
    c.train.eval_every = 0
    c.train.log_every = steps // 2
    c.train.checkpoint_every = 0
    c.train.plots = False
