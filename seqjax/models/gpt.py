"""GPT: a decoder-only (causal) transformer language model, with KV-cached generation.

    model = GPT(vocab_size=65, d_model=128, num_heads=4, num_layers=4, mlp_dim=512, max_len=128,
                rngs=nnx.Rngs(0))
    logits = model(tokens)                                  # tokens int[B, T] -> [B, T, V]
    out = model.generate(prompt, 100, key=key, temperature=0.8, top_k=40)   # int[B, T0 + 100]
    seqs, scores = model.generate(prompt, 20, beam_size=4)  # int[B, 4, T0 + 20], float32[B, 4] best first
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqjax import decoding, positional
from seqjax.dropout import split_keys
from seqjax.masks import check_token_ids
from seqjax.models._transformer import ARGUMENT_DOCS, TokenEmbedder, block_config, check_cache_room
from seqjax.nn.blocks import Stack
from seqjax.nn.linear import Dense


class GPT(nnx.Module):
    """Causal language model: tokens int[B, T] -> next-token logits [B, T, V].

    Config keys: the keyword arguments. positions: "learned" | "sinusoidal" | "rope"; embed_dropout on the
    token + position embeddings, residual_dropout on each residual branch, attention_dropout on the
    attention weights (all active iff a key is passed); tie_embeddings: the output layer is the embedding
    table transposed; attention_implementation: see `seqjax.attention.dot_product_attention`.
    """

    ARGUMENT_DOCS = ARGUMENT_DOCS  # the common keys' meanings (models/_transformer.py)

    def __init__(self, vocab_size: int, *, d_model: int = 128, num_heads: int = 4, num_layers: int = 4,
                 mlp_dim: int = 512, max_len: int = 128, positions: str = "learned",
                 num_kv_heads: int | None = None, embed_dropout: float = 0.0, residual_dropout: float = 0.0,
                 attention_dropout: float = 0.0, pre_ln: bool = True, activation: str = "gelu",
                 layer_norm_epsilon: float = 1e-6, tie_embeddings: bool = True, remat: bool = False,
                 attention_implementation: str = "auto", rngs: nnx.Rngs):
        cfg = block_config(d_model=d_model, num_heads=num_heads, mlp_dim=mlp_dim, num_kv_heads=num_kv_heads,
                           residual_dropout=residual_dropout, attention_dropout=attention_dropout,
                           pre_ln=pre_ln, positions=positions, activation=activation,
                           layer_norm_epsilon=layer_norm_epsilon,
                           attention_implementation=attention_implementation)
        self.vocab_size, self.max_len = vocab_size, max_len
        self.embedder = TokenEmbedder(vocab_size, cfg, positions=positions, max_len=max_len,
                                      embed_dropout=embed_dropout, rngs=rngs)
        self.stack = Stack(cfg, num_layers, causal=True, cross_attention=False, remat=remat, rngs=rngs)
        self.head = None if tie_embeddings else Dense(d_model, vocab_size, axes=("embed", "vocab"), rngs=rngs)
        self.num_kv_heads = self.stack.layers.blocks.self_attn.num_kv_heads
        self.head_dim = self.stack.layers.blocks.self_attn.head_dim

    def logits(self, h: jax.Array) -> jax.Array:
        """Final hidden states [B, T, D] -> logits [B, T, V]."""
        return self.embedder.embed.attend(h) if self.head is None else self.head(h)

    def __call__(self, tokens: jax.Array, *, key: jax.Array | None = None, return_attention: bool = False):
        """Returns logits [B, T, V], or (logits, weights [L, B, N, T, T]) with return_attention."""
        k_emb, k_stack = split_keys(key, 2)
        out = self.stack(self.embedder(tokens, key=k_emb), key=k_stack, return_attention=return_attention)
        logits = self.logits(out.x)
        return (logits, out.weights["self"]) if return_attention else logits

    def init_cache(self, batch_size: int, max_len: int | None = None, dtype=jnp.float32) -> decoding.KVCache:
        """Stacked empty cache: k, v [L, B, S_max, M, K], index [L]; S_max defaults to the position table."""
        S = self.max_len if max_len is None else max_len
        positional.check_length(S, self.max_len, "max_len")
        one = decoding.init_cache(batch_size, S, self.num_kv_heads, self.head_dim, dtype)
        return self.stack.layers.init_cache(one)

    def decode(self, tokens: jax.Array, cache: decoding.KVCache) -> tuple[jax.Array, decoding.KVCache]:
        """Feed tokens int[B, t] after the cached prefix: (logits [B, t, V], updated cache)."""
        check_cache_room(cache, tokens.shape[1])
        out = self.stack(self.embedder(tokens, offset=cache.index[0]), cache=cache)
        return self.logits(out.x), out.cache

    def generate(self, prompt: jax.Array, max_new_tokens: int, *, key: jax.Array | None = None,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 eos_id: int | None = None, pad_id: int = 0, beam_size: int = 1,
                 length_penalty: float = 0.6):
        """prompt int[B, T0] -> int[B, T0 + max_new_tokens]: greedy when key is None, else sampled
        (decoding.generate). beam_size > 1: beam search (decoding.beam_search), deterministic, ranked by
        log-probability / ((5 + length) / 6) ** length_penalty -> (sequences int[B, W, T0 + max_new_tokens],
        scores float32[B, W]) best first; the sampling arguments are refused there."""
        check_token_ids(prompt, self.vocab_size, "prompt")
        need = prompt.shape[1] + max_new_tokens - 1  # the last token is never fed back
        positional.check_length(need, self.max_len, "prompt + max_new_tokens - 1")
        if int(beam_size) < 1:
            raise ValueError(f"beam_size: expected >= 1, got {beam_size}")
        if beam_size == 1:
            return _generate(self, prompt, key, max_new_tokens=max_new_tokens, temperature=temperature,
                             top_k=top_k, top_p=top_p, eos_id=eos_id, pad_id=pad_id)
        sampling = {"key": key, "top_k": top_k, "top_p": top_p}
        given = [k for k, v in sampling.items() if v is not None] + (["temperature"] if temperature != 1.0
                                                                     else [])
        if given:
            raise ValueError(f"beam_size={beam_size}: beam search is deterministic; {', '.join(given)} "
                             "apply to sampling (beam_size=1) only")
        if beam_size > self.vocab_size:
            raise ValueError(f"beam_size: W = {beam_size} exceeds the vocabulary size V = {self.vocab_size}")
        return _beam_search(self, prompt, max_new_tokens=max_new_tokens, beam_size=int(beam_size),
                            eos_id=eos_id, pad_id=pad_id, alpha=float(length_penalty))


def _step_fn(model: GPT):
    """decoding's step_fn: tokens int[B, t] after the cached prefix -> (last logits [B, V], cache)."""

    def step_fn(tokens, cache):
        logits, cache = model.decode(tokens, cache)
        return logits[:, -1], cache

    return step_fn


@nnx.jit(static_argnames=("max_new_tokens", "temperature", "top_k", "top_p", "eos_id", "pad_id"))
def _generate(model: GPT, prompt, key, *, max_new_tokens, temperature, top_k, top_p, eos_id, pad_id):
    cache = model.init_cache(prompt.shape[0], prompt.shape[1] + max_new_tokens - 1)
    return decoding.generate(_step_fn(model), prompt, cache, max_new_tokens, key=key, temperature=temperature,
                             top_k=top_k, top_p=top_p, eos_id=eos_id, pad_id=pad_id)


@nnx.jit(static_argnames=("max_new_tokens", "beam_size", "eos_id", "pad_id", "alpha"))
def _beam_search(model: GPT, prompt, *, max_new_tokens, beam_size, eos_id, pad_id, alpha):
    """(sequences int[B, W, T0 + max_new_tokens], scores float32[B, W]); any W >= 1 (W = 1 is greedy)."""
    B, W = prompt.shape[0], beam_size
    # The cache holds B * W rows, beam-major within each batch entry; its leaves are [L, B * W, ...].
    cache = model.init_cache(B * W, prompt.shape[1] + max_new_tokens - 1)
    return decoding.beam_search(_step_fn(model), prompt, cache, max_new_tokens, beam_size=W, eos_id=eos_id,
                                pad_id=pad_id, alpha=alpha, cache_batch_axis=1)


def generate_long(model: GPT, prompt_ids, length: int, *, key: jax.Array | None = None,
                  temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None) -> np.ndarray:
    """`length` new token ids int32[length] continuing prompt_ids int[T0], past the position table.

    The position table holds max_len tokens, so text longer than that is generated in windows: each window
    re-reads (prefills) the last max_len // 2 tokens as context and generates up to max_len + 1 - context new
    ones with the cache. Window shapes repeat, so decoding compiles at most twice. Equivalent loop:

        for i in range(length): ids.append(sample(model(ids[-max_len:])[-1]))   # up to the window restarts
    """
    ids = [int(i) for i in np.asarray(prompt_ids).reshape(-1)]
    if not ids:
        raise ValueError("prompt_ids: need at least one token to condition on")
    if length < 0:
        raise ValueError(f"length: must be >= 0, got {length}")
    T = model.max_len
    keep = max(1, T // 2)
    out: list[int] = []
    window = 0
    while len(out) < length:
        context = (ids + out)[-keep:] if (window > 0 or len(ids) > T) else ids
        n_new = T + 1 - len(context)  # fills the cache: len(context) + n_new - 1 == T
        chunk_key = None if key is None else jax.random.fold_in(key, window)
        tokens = model.generate(jnp.asarray([context], jnp.int32), n_new, key=chunk_key,
                                temperature=temperature, top_k=top_k, top_p=top_p)
        out.extend(int(t) for t in np.asarray(tokens)[0, len(context):])
        window += 1
    return np.asarray(out[:length], dtype=np.int32)
