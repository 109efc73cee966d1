"""KV-cache decoding vs recomputing the prefix: 256 new tokens from the char GPT (V=65, L=4, N=4, D=128).

  seqjax            GPT.generate: prompt prefill, then one token at a time against the KV cache
                    (decoding.generate: a jitted while_loop, greedy), O(S) attention work per token
  seqjax-recompute  the same model, greedy, but every step runs the full forward pass over a fixed
                    [B, prompt + new] token buffer and reads the logits at the current position (a jitted
                    fori_loop, static shapes; causal attention makes the not-yet-written tail irrelevant)
Reported time is for the whole generation (256 tokens), batch B. Setup checks the two produce the same tokens.
"""
from __future__ import annotations

from common import jax_warmup

CONFIG = {"V": 65, "L": 4, "N": 4, "D": 128, "B": 1, "prompt": 1, "new": 256}
QUICK = {"new": 32}


def _model_and_prompt(config):
    import jax
    from bench_gpt import seqjax_model

    max_len = config["prompt"] + config["new"]
    model = seqjax_model({**config, "T": max_len, "max_len": max_len})
    prompt = jax.random.randint(jax.random.key(2), (config["B"], config["prompt"]), 0, config["V"])
    return model, prompt


def _cached(model, prompt, new):
    return model.generate(prompt, new)  # greedy: key=None


def _recompute_fn(model, prompt_len: int, new: int):
    """A jitted greedy generator that recomputes the whole (fixed-length) prefix for every new token."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    graphdef, state = nnx.split(model)

    @jax.jit
    def generate(state, prompt):
        m = nnx.merge(graphdef, state)
        B = prompt.shape[0]
        buffer = jnp.zeros((B, prompt_len + new), jnp.int32).at[:, :prompt_len].set(prompt)

        def body(i, buffer):
            """Step i writes token i + 1 from the logits at position i (loop over i = prompt_len-1 ...)."""
            logits = m(buffer)  # [B, prompt_len + new, V]: everything, every step
            at_i = jax.lax.dynamic_index_in_dim(logits, i, axis=1, keepdims=False)  # [B, V]
            tok = jnp.argmax(at_i, axis=-1).astype(jnp.int32)
            return jax.lax.dynamic_update_index_in_dim(buffer, tok, i + 1, axis=1)

        # The last token needs no forward pass after it; the buffer holds prompt + new tokens.
        return jax.lax.fori_loop(prompt_len - 1, prompt_len + new - 1, body, buffer)

    return lambda prompt: generate(state, prompt)


def setup_cached(config):
    import jax

    model, prompt = _model_and_prompt(config)
    run = lambda: jax.block_until_ready(_cached(model, prompt, config["new"]))
    jax_warmup(run, 2)
    return run


def setup_recompute(config):
    import jax
    import numpy as np

    model, prompt = _model_and_prompt(config)
    generate = _recompute_fn(model, config["prompt"], config["new"])
    run = lambda: jax.block_until_ready(generate(prompt))
    jax_warmup(run, 2)
    same = np.mean(np.asarray(run()) == np.asarray(_cached(model, prompt, config["new"])))
    if same < 0.99:  # greedy argmax ties could flip a token or two; anything more is a bug
        raise AssertionError(f"recompute and KV-cache decoding disagree on {100 * (1 - same):.1f}% of tokens")
    return run


BENCHMARKS = {
    "kv_decode": {
        "config": CONFIG,
        "quick_config": QUICK,
        "impls": {"seqjax": "bench_decode:setup_cached", "seqjax-recompute": "bench_decode:setup_recompute"},
        "subject": "seqjax",
        "peers": ["seqjax-recompute"],
    },
}
