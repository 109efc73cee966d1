"""Character-level GPT training step: V=65, L=4, N=4, D=128 (MLP 4D), T=128, B=32, AdamW, f32.

Implementations (each in its own worker process):
  seqjax            seqjax.models.gpt.GPT (layers scanned, attention_implementation="auto": einsum at this T)
                    + optax.adamw
  seqjax-blockwise  the same model built with attention_implementation="blockwise" (seqjax.kernels.blockwise)
  flax              a GPT of the same shape built from Flax's own nnx.MultiHeadAttention, nnx.LayerNorm,
                    nnx.Linear, nnx.Embed (a Python loop over layers, as in the Flax examples) + optax.adamw
  torch             a minimal nanoGPT-style model (benchmarks/peers/torch_gpt.py), eager, SDPA, AdamW
Every model: pre-LN blocks, learned positions, tied output embedding, no dropout; every JAX step is one
jitted pure function (params, opt_state) -> (params, opt_state) with donated buffers.
"""
from __future__ import annotations

from common import jax_train_callable, jax_warmup

CONFIG = {"V": 65, "L": 4, "N": 4, "D": 128, "T": 128, "B": 32}
QUICK = {"L": 2, "T": 64, "B": 8}
LEARNING_RATE, WEIGHT_DECAY = 3e-4, 0.1


def gpt_train_flops(config) -> float:
    """Matmul FLOPs of a training step (backward = 2x forward): per token and layer the q/k/v/out projections
    (4 D^2), the MLP (2 D F) and attention (T D for q k^T, T D for p v); plus the tied output layer (V D)."""
    B, T, D, L, V = config["B"], config["T"], config["D"], config["L"], config["V"]
    F = config.get("F", 4 * D)
    per_token = L * (2 * 4 * D * D + 2 * 2 * D * F + 2 * 2 * T * D) + 2 * D * V
    return 3 * B * T * per_token


def batch(config):
    import jax

    tokens = jax.random.randint(jax.random.key(1), (config["B"], config["T"] + 1), 0, config["V"])
    return tokens[:, :-1], tokens[:, 1:]


def seqjax_model(config, seed: int = 0, attention_implementation: str = "auto"):
    from flax import nnx

    from seqjax.models.gpt import GPT

    D = config["D"]
    return GPT(config["V"], d_model=D, num_heads=config["N"], num_layers=config["L"],
               mlp_dim=config.get("F", 4 * D), max_len=config.get("max_len", config["T"]),
               attention_implementation=attention_implementation, rngs=nnx.Rngs(seed))


def flax_model(config, seed: int = 0):
    """A GPT from Flax's own layers (nnx.MultiHeadAttention), written the way the Flax examples write it."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    class Block(nnx.Module):
        def __init__(self, D, N, F, rngs):
            self.ln1, self.ln2 = nnx.LayerNorm(D, rngs=rngs), nnx.LayerNorm(D, rngs=rngs)
            self.attn = nnx.MultiHeadAttention(N, D, decode=False, rngs=rngs)
            self.fc1, self.fc2 = nnx.Linear(D, F, rngs=rngs), nnx.Linear(F, D, rngs=rngs)

        def __call__(self, x, mask):
            x = x + self.attn(self.ln1(x), mask=mask, deterministic=True)
            return x + self.fc2(jax.nn.gelu(self.fc1(self.ln2(x))))

    class GPT(nnx.Module):
        def __init__(self, V, D, N, L, F, T_max, rngs):
            self.embed = nnx.Embed(V, D, embedding_init=nnx.initializers.normal(0.02), rngs=rngs)
            self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (T_max, D)))
            self.blocks = nnx.List([Block(D, N, F, rngs) for _ in range(L)])
            self.ln_f = nnx.LayerNorm(D, rngs=rngs)

        def __call__(self, tokens):
            T = tokens.shape[1]
            x = self.embed(tokens) + self.pos[...][None, :T]
            mask = nnx.make_causal_mask(jnp.ones(tokens.shape, jnp.int32))  # [B, 1, T, T]
            for block in self.blocks:
                x = block(x, mask)
            return self.embed.attend(self.ln_f(x))  # [B, T, V]

    D = config["D"]
    return GPT(config["V"], D, config["N"], config["L"], config.get("F", 4 * D), config["T"], nnx.Rngs(seed))


def make_train_step(model):
    """(a fresh jittable step function, initial state) for next-token cross-entropy + AdamW."""
    import jax
    import optax
    from flax import nnx

    from seqjax import losses

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY)

    def loss_fn(params, inputs, targets):
        logits = nnx.merge(graphdef, params, rest)(inputs)  # [B, T, V]
        return losses.softmax_cross_entropy(logits, targets)

    def step(state, batch):
        params, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    return step, (params, tx.init(params))


def _setup_train(model, config):
    import jax

    step, state = make_train_step(model)
    run = jax_train_callable(jax.jit(step, donate_argnums=0), state, batch(config))
    jax_warmup(run, 3)
    return run


def setup_seqjax(config):
    return _setup_train(seqjax_model(config), config)


def setup_seqjax_blockwise(config):
    return _setup_train(seqjax_model(config, attention_implementation="blockwise"), config)


def setup_flax(config):
    return _setup_train(flax_model(config), config)


BENCHMARKS = {
    "gpt_train": {
        "config": CONFIG,
        "quick_config": QUICK,
        "flops": gpt_train_flops,
        "impls": {
            "seqjax": "bench_gpt:setup_seqjax",
            "seqjax-blockwise": "bench_gpt:setup_seqjax_blockwise",
            "flax": "bench_gpt:setup_flax",
            "torch": "peers.torch_gpt:setup_train",
        },
        "subject": "seqjax",
        "peers": ["torch", "flax", "seqjax-blockwise"],
    },
}
