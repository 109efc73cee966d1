"""Input corruption for denoising objectives: BERT's masked-language-model selection (Devlin et al., 2019).

`mlm_corrupt` picks the positions a masked LM must reconstruct and corrupts them with the 80/10/10 rule:
of the selected tokens, 80% become [MASK], 10% a random token, 10% stay as they are (so the model cannot
assume that an unmasked token is always the right one). Selection is an independent Bernoulli(rate) per
eligible position (a valid position whose token is not a special id), not an exact 15% per sequence: short
sentences may have no target, which a loss averaged over the batch's targets absorbs. Equivalent loop:

    for b, t with valid[b, t] and tokens[b, t] not in special_ids:
        if uniform() < rate:
            target[b, t] = True
            u = uniform()
            out[b, t] = mask_id if u < 0.8 else random_non_special_id() if u < 0.9 else tokens[b, t]
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

MASK_FRACTION, RANDOM_FRACTION = 0.8, 0.1  # of the selected tokens; the remaining 0.1 stay unchanged


def mlm_corrupt(key: jax.Array, tokens: jax.Array, valid: jax.Array, *, rate: float = 0.15, mask_id: int,
                vocab_size: int, special_ids: tuple[int, ...] = ()) -> tuple[jax.Array, jax.Array]:
    """tokens int[B, T], valid bool[B, T] -> (corrupted int32[B, T], targets bool[B, T]).

    targets marks the selected positions (the loss is taken there, against the original tokens). Padding
    (valid False) and tokens in `special_ids` are never selected nor changed; random replacements are drawn
    uniformly from the ids in [0, vocab_size) that are not special. mask_id must not be such an id (it may
    lie outside the vocabulary, e.g. mask_id = vocab_size for a model that embeds [MASK] separately).
    """
    if tokens.ndim != 2 or valid.shape != tokens.shape:
        raise ValueError(f"tokens, valid: expected [B, T] and the same shape, got {tuple(tokens.shape)}, "
                         f"{tuple(valid.shape)}")
    if valid.dtype != jnp.bool_:
        raise ValueError(f"valid: expected a bool mask, got dtype {valid.dtype}")
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rate: must lie in (0, 1], got {rate}")
    special = {int(i) for i in special_ids}
    drawable = np.array([i for i in range(int(vocab_size)) if i not in special], np.int32)  # [V']
    if drawable.size == 0:
        raise ValueError(f"special_ids: every id of the vocabulary (V = {vocab_size}) is special; no random "
                         "replacement can be drawn")
    if 0 <= int(mask_id) < vocab_size and int(mask_id) not in special:
        raise ValueError(f"mask_id: {mask_id} is an ordinary token of the vocabulary (V = {vocab_size}); use "
                         "an id outside it or list it in special_ids")
    k_select, k_kind, k_random = jax.random.split(key, 3)
    tokens = tokens.astype(jnp.int32)
    is_special = (jnp.isin(tokens, jnp.asarray(sorted(special), jnp.int32)) if special
                  else jnp.zeros_like(valid))
    targets = valid & ~is_special & jax.random.bernoulli(k_select, rate, tokens.shape)
    u = jax.random.uniform(k_kind, tokens.shape)
    random_ids = jnp.asarray(drawable)[jax.random.randint(k_random, tokens.shape, 0, drawable.size)]
    replaced = jnp.where(u < MASK_FRACTION, jnp.int32(mask_id),
                         jnp.where(u < MASK_FRACTION + RANDOM_FRACTION, random_ids, tokens))
    return jnp.where(targets, replaced, tokens), targets
