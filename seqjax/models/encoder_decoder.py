"""The encoder-decoder transformer (translation-style): source tokens -> encoder; target tokens attend to
their own past and, through cross-attention, to the encoder output."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from seqjax import decoding, masks, positional
from seqjax.dropout import split_keys
from seqjax.masks import check_token_ids
from seqjax.models._transformer import (
    ARGUMENT_DOCS,
    TokenEmbedder,
    block_config,
    check_cache_room,
    valid_or_all,
)
from seqjax.models.encoder import Encoder
from seqjax.nn.blocks import Stack
from seqjax.nn.linear import Dense


class EncoderDecoder(nnx.Module):
    """src int[B, S] (+ src_lengths) and decoder inputs tgt_in int[B, T] -> logits [B, T, V_tgt].

    Data arguments: the vocabulary sizes and the target's special ids (pad, bos, eos). Config keys: the
    keyword arguments (as for `seqjax.models.gpt.GPT`, plus the two depths and lengths); length_penalty is
    the alpha of beam search's length normalisation in `translate`.
    """

    ARGUMENT_DOCS = ARGUMENT_DOCS  # the common keys' meanings (models/_transformer.py)

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, pad_id: int, bos_id: int, eos_id: int, *,
                 d_model: int = 128, num_heads: int = 4, num_encoder_layers: int = 3,
                 num_decoder_layers: int = 3, mlp_dim: int = 512, max_src_len: int = 128,
                 max_tgt_len: int = 128, positions: str = "learned", num_kv_heads: int | None = None,
                 embed_dropout: float = 0.0, residual_dropout: float = 0.0, attention_dropout: float = 0.0,
                 pre_ln: bool = True, activation: str = "gelu", layer_norm_epsilon: float = 1e-6,
                 tie_embeddings: bool = True, remat: bool = False, attention_implementation: str = "auto",
                 length_penalty: float = 0.6, rngs: nnx.Rngs):
        """The config keys (arguments without a default come from the data).

        Args:
            length_penalty: alpha of beam search's length normalisation ((5 + length) / 6) ** alpha in
                `translate`.
        """
        self.encoder = Encoder(src_vocab_size, d_model=d_model, num_heads=num_heads,
                               num_layers=num_encoder_layers, mlp_dim=mlp_dim, max_len=max_src_len,
                               positions=positions, num_kv_heads=num_kv_heads, embed_dropout=embed_dropout,
                               residual_dropout=residual_dropout, attention_dropout=attention_dropout,
                               pre_ln=pre_ln, activation=activation, layer_norm_epsilon=layer_norm_epsilon,
                               remat=remat, attention_implementation=attention_implementation, rngs=rngs)
        cfg = block_config(d_model=d_model, num_heads=num_heads, mlp_dim=mlp_dim, num_kv_heads=num_kv_heads,
                           residual_dropout=residual_dropout, attention_dropout=attention_dropout,
                           pre_ln=pre_ln, positions=positions, activation=activation,
                           layer_norm_epsilon=layer_norm_epsilon,
                           attention_implementation=attention_implementation)
        self.tgt_vocab_size, self.max_tgt_len = tgt_vocab_size, max_tgt_len
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.length_penalty = length_penalty
        self.embedder = TokenEmbedder(tgt_vocab_size, cfg, positions=positions, max_len=max_tgt_len,
                                      embed_dropout=embed_dropout, rngs=rngs)
        self.decoder = Stack(cfg, num_decoder_layers, causal=True, cross_attention=True, remat=remat,
                             rngs=rngs)
        self.head = None if tie_embeddings else Dense(d_model, tgt_vocab_size, axes=("embed", "vocab"),
                                                            rngs=rngs)
        attn = self.decoder.layers.blocks.self_attn
        self.num_kv_heads, self.head_dim = attn.num_kv_heads, attn.head_dim

    def encode(self, src: jax.Array, src_lengths: jax.Array | None = None, *, key=None,
               return_attention=False) -> tuple[jax.Array, jax.Array, jax.Array | None]:
        """-> (memory [B, S, D], source validity bool[B, S], encoder weights [L, B, N, S, S] or None)."""
        valid = valid_or_all(src_lengths, None, *src.shape, "src_lengths")
        memory, w = self.encoder.encode_embeddings(self.encoder.embedder.embed(src), valid, key=key,
                                                   return_attention=return_attention)
        return memory, valid, w

    def project_memory(self, memory: jax.Array) -> decoding.CrossKV:
        """Encoder output [B, S, D] -> every decoder layer's cross-attention keys/values [L, B, S, M, K].

        Decoding passes these in place of `memory`, so they are projected once per source, not per token.
        """
        graphdef, state = nnx.split(self.decoder.layers.blocks)
        # [L]-stacked block parameters: vmap projects the same memory with each layer's weights.
        return jax.vmap(lambda layer: nnx.merge(graphdef, layer).cross_attn.project_context(memory))(state)

    def decode_embeddings(self, y: jax.Array, memory: jax.Array | decoding.CrossKV, src_valid: jax.Array, *,
                          offset=0, cache=None, key=None, return_attention=False):
        """Target token vectors y [B, T, D] -> (logits [B, T, V], cache, {"self", "cross"} weights or {}).

        memory: the encoder output [B, S, D], or `project_memory(memory)`.
        """
        k_emb, k_stack = split_keys(key, 2)
        y = self.embedder.add_positions(y, offset=offset, key=k_emb)
        context = ({"per_layer": {"context": memory}} if isinstance(memory, decoding.CrossKV)
                   else {"context": memory})
        out = self.decoder(y, cache=cache, key=k_stack, **context,
                           context_mask=masks.cross_attention_mask(src_valid),
                           return_attention=return_attention)
        logits = self.embedder.embed.attend(out.x) if self.head is None else self.head(out.x)
        return logits, out.cache, out.weights

    def __call__(self, src: jax.Array, src_lengths: jax.Array | None, tgt_in: jax.Array, *,
                 key: jax.Array | None = None, return_attention: bool = False):
        """Teacher forcing: src int[B, S], src_lengths int[B] (None: all valid), tgt_in int[B, T] (BOS first)
        -> logits [B, T, V_tgt]; with return_attention (logits, {"encoder": [L, B, N, S, S], "self":
        [L, B, N, T, T], "cross": [L, B, N, T, S]})."""
        k_enc, k_dec = split_keys(key, 2)
        memory, valid, w_enc = self.encode(src, src_lengths, key=k_enc, return_attention=return_attention)
        logits, _, w = self.decode_embeddings(self.embedder.embed(tgt_in), memory, valid, key=k_dec,
                                              return_attention=return_attention)
        return (logits, {"encoder": w_enc, **w}) if return_attention else logits

    def init_cache(self, batch_size: int, max_len: int | None = None, dtype=jnp.float32) -> decoding.KVCache:
        """Stacked empty decoder self-attention cache: k, v [L, B, S_max, M, K], index [L]."""
        S = self.max_tgt_len if max_len is None else max_len
        positional.check_length(S, self.max_tgt_len, "max_len")
        one = decoding.init_cache(batch_size, S, self.num_kv_heads, self.head_dim, dtype)
        return self.decoder.layers.init_cache(one)

    def decode(self, tokens: jax.Array, memory: jax.Array | decoding.CrossKV, src_valid: jax.Array,
               cache: decoding.KVCache):
        """Feed target tokens int[B, t] after the cached prefix: (logits [B, t, V], updated cache).

        memory: the encoder output [B, S, D], or (cheaper when decoding many steps) `project_memory(memory)`.
        """
        check_cache_room(cache, tokens.shape[1])
        logits, cache, _ = self.decode_embeddings(self.embedder.embed(tokens), memory, src_valid,
                                                  offset=cache.index[0], cache=cache)
        return logits, cache

    def generate(self, src: jax.Array, src_lengths: jax.Array | None = None, *, max_new_tokens: int,
                 beam_size: int = 1, key: jax.Array | None = None, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None):
        """Decode src int[B, S]. beam_size=1: greedy (key None) or sampled tokens int[B, 1 + max_new] (BOS
        first); beam_size>1: (sequences int[B, W, 1 + max_new], scores float32[B, W]) best first."""
        check_token_ids(src, self.encoder.vocab_size, "src")
        positional.check_length(max_new_tokens, self.max_tgt_len, "max_new_tokens")
        if src_lengths is not None:
            masks.check_lengths(src_lengths, *src.shape, "src_lengths")
        return _generate(self, src, src_lengths, key, max_new_tokens=max_new_tokens, beam_size=beam_size,
                         temperature=temperature, top_k=top_k, top_p=top_p)

    def translate(self, src: jax.Array, src_lengths: jax.Array, max_len: int,
                  beam_size: int = 1) -> jax.Array:
        """Decoded target ids int32[B, max_len] (BOS dropped; pad after EOS): greedy, or the best beam."""
        out = self.generate(src, src_lengths, max_new_tokens=max_len, beam_size=beam_size)
        return out[0][:, 0, 1:] if beam_size > 1 else out[:, 1:]


@nnx.jit(static_argnames=("max_new_tokens", "beam_size", "temperature", "top_k", "top_p"))
def _generate(model: EncoderDecoder, src, src_lengths, key, *, max_new_tokens, beam_size, temperature, top_k,
              top_p):
    memory, valid, _ = model.encode(src, src_lengths)
    cross = model.project_memory(memory)  # [L, B, S, M, K]
    B, W = src.shape[0], beam_size
    if W > 1:  # every beam row b * W + w attends to source b
        cross = jax.tree.map(lambda a: jnp.repeat(a, W, axis=1), cross)
        valid = jnp.repeat(valid, W, axis=0)
    cache = model.init_cache(B * W, max_new_tokens)

    def step_fn(tokens, cache):
        logits, cache = model.decode(tokens, cross, valid, cache)
        return logits[:, -1], cache

    prompt = jnp.full((B, 1), model.bos_id, jnp.int32)
    if W == 1:
        return decoding.generate(step_fn, prompt, cache, max_new_tokens, key=key, temperature=temperature,
                                 top_k=top_k, top_p=top_p, eos_id=model.eos_id, pad_id=model.pad_id)
    return decoding.beam_search(step_fn, prompt, cache, max_new_tokens, beam_size=W, eos_id=model.eos_id,
                                pad_id=model.pad_id, alpha=model.length_penalty, cache_batch_axis=1)
