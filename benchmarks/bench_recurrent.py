"""Recurrent training steps: one LSTM / GRU layer, a linear readout of all outputs, MSE, Adam.

Implementations (each in its own worker process):
  seqjax        scan.unroll(implementation="auto"): the fused custom-VJP layer of seqjax.kernels.rnn with
                the native C++ gate kernels where they build (the subject; the fused layer alone otherwise)
  seqjax-fused  the fused layer with its pure-JAX gate arithmetic (implementation="fused")
  seqjax-c4     the pure-JAX fused layer with the backward scan cut into 4 time blocks (backward_chunks=4), so
                each block's weight-gradient matmuls can run beside the rest of the scan (a gain only with
                idle cores)
  seqjax-scan   seqjax.scan.unroll with Cell("lstm") / Cell("gru"), differentiated by JAX's autodiff
  flax          Flax's nnx.OptimizedLSTMCell / nnx.GRUCell driven by nnx.RNN, optax.adam
  torch         torch.nn.LSTM / torch.nn.GRU (eager, fused CPU kernel), torch.optim.Adam
All JAX steps are a single jitted pure function (params, opt_state) -> (params, opt_state), donated buffers.
"""
from __future__ import annotations

from common import jax_train_callable, jax_warmup, rnn_train_flops

CONFIG = {"B": 32, "T": 128, "D": 64, "H": 256}
QUICK = {"B": 8, "T": 32, "D": 16, "H": 64}


def _data(config):
    import jax

    k_x, k_y = jax.random.split(jax.random.key(1))
    x = jax.random.normal(k_x, (config["B"], config["T"], config["D"]))
    target = jax.random.normal(k_y, (config["B"], config["T"], 1))
    return x, target


def _jax_setup(init, apply, config):
    """A jitted Adam step for `apply(params, x) -> ys [B, T, H]`, readout and MSE included."""
    import jax
    import jax.numpy as jnp
    import optax

    H = config["H"]
    k_cell, k_out = jax.random.split(jax.random.key(0))
    w_o = jax.random.normal(k_out, (H, 1)) / jnp.sqrt(H)
    params = {"rnn": init(k_cell), "w_o": w_o, "b_o": jnp.zeros((1,))}
    tx = optax.adam(1e-3)
    x, target = _data(config)

    def loss_fn(params):
        ys = apply(params["rnn"], x)  # [B, T, H]
        pred = jnp.einsum("bth,ho->bto", ys, params["w_o"]) + params["b_o"][None, None, :]
        return jnp.mean(jnp.square(pred - target))

    def step(state, batch):
        params, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    run = jax_train_callable(jax.jit(step, donate_argnums=0), (params, tx.init(params)), None)
    jax_warmup(run, 3)
    return run


def _seqjax(kind, implementation, config):
    from seqjax import cells, scan
    from seqjax.kernels import rnn as rnn_kernels

    cell = cells.Cell(kind)
    unroll = config.get("unroll")
    options = {k: config.get(k) for k in ("backward_unroll", "backward_chunks") if config.get(k)}
    if options:  # kernel-only knobs: call the (pure-JAX) fused layer directly
        layer = rnn_kernels.lstm_layer if kind == "lstm" else rnn_kernels.gru_layer
        apply = lambda p, x: layer(p, x, unroll=unroll, **options)[0]
    else:  # the public path: scan.unroll, as layers.LSTM / layers.GRU call it
        apply = lambda p, x: scan.unroll(cell, p, x, unroll=unroll or 1, implementation=implementation)[0]
    init = lambda key: cell.init(key, config["D"], config["H"])
    return _jax_setup(init, apply, config)


def _flax(kind, config):
    import jax.numpy as jnp
    from flax import nnx

    def init(key):
        rngs = nnx.Rngs(key)
        make = nnx.OptimizedLSTMCell if kind == "lstm" else nnx.GRUCell
        rnn = nnx.RNN(make(config["D"], config["H"], rngs=rngs), unroll=config.get("unroll") or 1)
        graphdef, params, rest = nnx.split(rnn, nnx.Param, ...)  # rest: the RNN's own rng state
        holder.update(graphdef=graphdef, rest=rest)
        return params

    def apply(params, x):
        # An explicit zero carry: nnx.RNN would otherwise draw it from its rng stream inside jit.
        zeros = jnp.zeros((x.shape[0], config["H"]), x.dtype)
        carry = (zeros, zeros) if kind == "lstm" else zeros
        return nnx.merge(holder["graphdef"], params, holder["rest"])(x, initial_carry=carry)

    holder = {}
    return _jax_setup(init, apply, config)


def setup_seqjax_lstm(config):
    return _seqjax("lstm", "auto", config)


def setup_seqjax_fused_lstm(config):
    return _seqjax("lstm", "fused", config)


def setup_seqjax_c4_lstm(config):
    return _seqjax("lstm", "fused", {**config, "backward_chunks": 4})


def setup_seqjax_c4_gru(config):
    return _seqjax("gru", "fused", {**config, "backward_chunks": 4})


def setup_seqjax_scan_lstm(config):
    return _seqjax("lstm", "scan", config)


def setup_flax_lstm(config):
    return _flax("lstm", config)


def setup_seqjax_gru(config):
    return _seqjax("gru", "auto", config)


def setup_seqjax_fused_gru(config):
    return _seqjax("gru", "fused", config)


def setup_seqjax_scan_gru(config):
    return _seqjax("gru", "scan", config)


def setup_flax_gru(config):
    return _flax("gru", config)


def _benchmark(kind: str, gates: int) -> dict:
    return {
        "config": CONFIG,
        "quick_config": QUICK,
        "flops": lambda c: rnn_train_flops(c["B"], c["T"], c["D"], c["H"], gates),
        "impls": {
            "seqjax": f"bench_recurrent:setup_seqjax_{kind}",
            "seqjax-fused": f"bench_recurrent:setup_seqjax_fused_{kind}",
            "seqjax-c4": f"bench_recurrent:setup_seqjax_c4_{kind}",
            "seqjax-scan": f"bench_recurrent:setup_seqjax_scan_{kind}",
            "flax": f"bench_recurrent:setup_flax_{kind}",
            "torch": f"peers.torch_rnn:setup_{kind}",
        },
        "subject": "seqjax",
        "peers": ["torch", "seqjax-fused", "flax", "seqjax-scan", "seqjax-c4"],
    }


BENCHMARKS = {"lstm_train": _benchmark("lstm", 4), "gru_train": _benchmark("gru", 3)}
