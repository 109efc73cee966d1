"""Losses as pure functions, each with an optional weight/mask so padded positions contribute nothing."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _weighted_mean(values: jax.Array, where: jax.Array | None) -> jax.Array:
    if where is None:
        return jnp.mean(values)
    where = where.astype(values.dtype)
    return jnp.sum(values * where) / jnp.maximum(jnp.sum(where), 1.0)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, where: jax.Array | None = None) -> jax.Array:
    """Mean cross-entropy of integer `labels` [...] under `logits` [..., V], over positions where `where`."""
    logits = logits.astype(jnp.float32)
    logz = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    return _weighted_mean(logz - picked, where)


def accuracy(logits: jax.Array, labels: jax.Array, where: jax.Array | None = None) -> jax.Array:
    return _weighted_mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32), where)


def mse(pred: jax.Array, target: jax.Array, where: jax.Array | None = None) -> jax.Array:
    return _weighted_mean(jnp.square(pred - target), where)


def mae(pred: jax.Array, target: jax.Array, where: jax.Array | None = None) -> jax.Array:
    return _weighted_mean(jnp.abs(pred - target), where)
