"""Transformer blocks and the scanned layer stack.

A model builds one frozen `BlockConfig` from its constructor arguments and passes it down the stack (as Flax's
lm1b example passes its TransformerConfig), so a rate or a kernel choice is set once, where the model is
built, and never threaded through calls. Depth is a `jax.lax.scan` over a `LayerStack` whose parameters carry
a leading [L] axis, so compile time does not grow with the number of layers.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax import attention as attn_lib
from seqjax import decoding
from seqjax.dropout import dropout, split_keys
from seqjax.nn.attention import MultiHeadAttention
from seqjax.nn.linear import MLP, LayerNorm
from seqjax.nn.params import axes_of

# What a scanned layer keeps for its backward pass: matmul outputs, and the attention weights and output
# that the hand-written attention backward reads (recomputing them would rerun the attention forward).
_policies = jax.checkpoint_policies
_LAYER_POLICY = _policies.save_from_both_policies(
    _policies.dots_saveable, _policies.save_only_these_names(attn_lib.RESIDUAL_NAME))


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    """Everything a transformer block needs, fixed when the model is built.

    Dropout: `attention_dropout` on the attention weights, `residual_dropout` on each residual branch's
    output. pre_ln: x + f(LN(x)) (GPT-2, ViT) instead of LN(x + f(x)) (the original Transformer, BERT).
    """
    d_model: int  # D
    num_heads: int  # N
    mlp_dim: int  # F
    num_kv_heads: int | None  # M (None: M = N)
    residual_dropout: float
    attention_dropout: float
    pre_ln: bool
    rope: bool
    activation: str
    layer_norm_epsilon: float
    attention_implementation: str

    def attention(self, rngs: nnx.Rngs, *, rope: bool) -> MultiHeadAttention:
        return MultiHeadAttention(self.d_model, self.num_heads, num_kv_heads=self.num_kv_heads,
                                  context_dim=None, attention_dropout=self.attention_dropout, rope=rope,
                                  implementation=self.attention_implementation, rngs=rngs)

    def layer_norm(self, rngs: nnx.Rngs) -> LayerNorm:
        return LayerNorm(self.d_model, epsilon=self.layer_norm_epsilon, rngs=rngs)


class BlockOutput(NamedTuple):
    x: jax.Array  # [B, T, D]
    cache: decoding.KVCache | None
    weights: dict[str, jax.Array]  # "self" [B, N, T, T or S_max], "cross" [B, N, T, S]; empty by default


class TransformerBlock(nnx.Module):
    """Self-attention (causal or not), optional cross-attention over an encoder output, and an MLP, each a
    residual branch."""

    def __init__(self, cfg: BlockConfig, *, causal: bool, cross_attention: bool, rngs: nnx.Rngs):
        self.cfg, self.causal = cfg, causal
        self.self_attn = cfg.attention(rngs, rope=cfg.rope)
        self.ln1 = cfg.layer_norm(rngs)
        self.cross_attn = cfg.attention(rngs, rope=False) if cross_attention else None
        self.ln_cross = cfg.layer_norm(rngs) if cross_attention else None
        self.mlp = MLP(cfg.d_model, cfg.mlp_dim, activation_name=cfg.activation, rngs=rngs)
        self.ln2 = cfg.layer_norm(rngs)

    def _residual(self, x, ln, f, key):
        """Pre-LN: x + drop(f(LN(x))); post-LN: LN(x + drop(f(x)))."""
        rate = self.cfg.residual_dropout
        if self.cfg.pre_ln:
            y, aux = f(ln(x))
            return x + dropout(y, rate, key), aux
        y, aux = f(x)
        return ln(x + dropout(y, rate, key)), aux

    def __call__(self, x: jax.Array, mask: jax.Array | None = None, *,
                 context: jax.Array | decoding.CrossKV | None = None, context_mask: jax.Array | None = None,
                 cache: decoding.KVCache | None = None, key: jax.Array | None = None,
                 return_attention: bool = False) -> BlockOutput:
        """x [B, T, D]; mask broadcastable to [B, N, T, T]; context [B, S, D] (or its projected keys/values),
        context_mask broadcastable to [B, N, T, S]."""
        k_attn, k_res1, k_cross, k_res2, k_res3 = split_keys(key, 5)
        weights = {}

        def self_branch(h):
            r = self.self_attn(h, None, mask, causal=self.causal, cache=cache, key=k_attn,
                               return_weights=return_attention)
            return r.out, r

        x, r = self._residual(x, self.ln1, self_branch, k_res1)
        new_cache = r.cache
        if return_attention:
            weights["self"] = r.weights
        if self.cross_attn is not None:
            if context is None:
                raise ValueError("context: this block has cross-attention and needs the encoder output")

            def cross_branch(h):
                r = self.cross_attn(h, context, context_mask, key=k_cross, return_weights=return_attention)
                return r.out, r

            x, r = self._residual(x, self.ln_cross, cross_branch, k_res2)
            if return_attention:
                weights["cross"] = r.weights
        x, _ = self._residual(x, self.ln2, lambda h: (self.mlp(h), None), k_res3)
        return BlockOutput(x, new_cache, weights)


def _with_layers_axis(variable):
    """A stacked variable [L, ...] with "layers" prepended to its logical axis names (seqjax.nn.params)."""
    axes = axes_of(variable)
    return variable if axes is None else variable.replace(out_sharding=("layers", *axes))


class LayerStack(nnx.Module):
    """L blocks of identical structure with parameters stacked on a leading [L] axis, run by jax.lax.scan.

    `make_block(rngs)` builds one block; it is called once per layer and the parameters are stacked, so every
    parameter gets shape [L, ...] and the logical axis name "layers" first. remat=True rematerialises each
    layer in the backward pass.
    """

    def __init__(self, make_block: Callable[[nnx.Rngs], nnx.Module], num_layers: int, *, remat: bool,
                 rngs: nnx.Rngs):
        if num_layers < 1:
            raise ValueError(f"num_layers: must be >= 1, got {num_layers}")
        # Blocks are built one by one (eager initialiser ops are cached across layers and models, where a
        # vmapped or jitted initialiser would compile afresh for every stack) and their states stacked.
        keys = jax.random.split(rngs.params(), num_layers)
        blocks = [nnx.split(make_block(nnx.Rngs(params=k))) for k in keys]
        states = jax.tree.map(lambda *leaves: jnp.stack(leaves), *(state for _, state in blocks))
        states = jax.tree.map(_with_layers_axis, states, is_leaf=lambda x: isinstance(x, nnx.Variable))
        self.blocks = nnx.merge(blocks[0][0], states)
        self.num_layers, self.remat = num_layers, remat

    def init_cache(self, one: decoding.KVCache) -> decoding.KVCache:
        """One layer's empty cache -> the stack's: k, v [L, B, S_max, M, K], index [L]."""
        return jax.tree.map(lambda a: jnp.broadcast_to(a, (self.num_layers, *a.shape)), one)

    def __call__(self, x: jax.Array, *, cache: decoding.KVCache | None = None, key: jax.Array | None = None,
                 per_layer: dict[str, Any] | None = None, **block_kwargs) -> BlockOutput:
        """Apply the L blocks in order; cache (if any) is stacked [L, ...]; weights come back as [L, ...].

        per_layer: block arguments that differ by layer, each stacked [L, ...] (e.g. the decoder's projected
        cross-attention keys/values); block_kwargs go to every layer as they are. Equivalent to:
            for l in range(L):
                x, cache[l], weights[l] = block[l](x, cache=cache[l], key=keys[l],
                                                   **{k: a[l] for k, a in per_layer.items()}, **block_kwargs)
        """
        graphdef, state = nnx.split(self.blocks)
        keys = None if key is None else jax.random.split(key, self.num_layers)
        per_layer = per_layer or {}
        for name, tree in per_layer.items():
            if name in block_kwargs or any(a.shape[0] != self.num_layers for a in jax.tree.leaves(tree)):
                raise ValueError(f"per_layer[{name!r}]: expected arrays stacked [L = {self.num_layers}, ...] "
                                 "and a name not also given to every layer")

        def body(x, xs):
            layer_state, layer_key, layer_cache, layer_args = xs
            out = nnx.merge(graphdef, layer_state)(x, cache=layer_cache, key=layer_key, **layer_args,
                                                   **block_kwargs)
            return out.x, (out.cache, out.weights)

        if self.remat:
            body = jax.checkpoint(body)
        else:
            # Keep only matmul outputs (and attention's residuals) per layer: the elementwise intermediates
            # (GELU, LayerNorm) are recomputed in the backward pass rather than stacked [L, ...] in memory,
            # which made the scanned train step ~30% slower than an unrolled loop on CPU.
            body = jax.checkpoint(body, policy=_LAYER_POLICY)
        x, (cache, weights) = jax.lax.scan(body, x, (state, keys, cache, per_layer))
        return BlockOutput(x, cache, weights)


class Stack(nnx.Module):
    """L blocks over x [B, T, D] and, with pre-LN, the final LayerNorm: the body of every transformer."""

    def __init__(self, cfg: BlockConfig, num_layers: int, *, causal: bool, cross_attention: bool, remat: bool,
                 rngs: nnx.Rngs):
        self.layers = LayerStack(
            lambda r: TransformerBlock(cfg, causal=causal, cross_attention=cross_attention, rngs=r),
            num_layers, remat=remat, rngs=rngs)
        self.ln_f = cfg.layer_norm(rngs) if cfg.pre_ln else None

    def __call__(self, x: jax.Array, mask: jax.Array | None = None, **kwargs) -> BlockOutput:
        out = self.layers(x, mask=mask, **kwargs)
        return out._replace(x=out.x if self.ln_f is None else self.ln_f(out.x))
