"""Losses as pure functions, each with an optional weight/mask so padded positions contribute nothing."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _weighted_mean(values: jax.Array, where: jax.Array | None) -> jax.Array:
    if where is None:
        return jnp.mean(values)
    where = where.astype(values.dtype)
    return jnp.sum(values * where) / jnp.maximum(jnp.sum(where), 1.0)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array, where: jax.Array | None = None,
                          label_smoothing: float = 0.0) -> jax.Array:
    """Mean cross-entropy of integer `labels` [...] under `logits` [..., V], over positions where `where`.

    label_smoothing = e: the target puts 1 - e on the label and e spread evenly over all V classes (Szegedy et
    al. 2016), i.e. (1 - e) * (-log p[label]) + e * mean_v(-log p[v]).
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing: expected in [0, 1), got {label_smoothing}")
    logits = logits.astype(jnp.float32)
    logz = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    nll = logz - picked
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll + label_smoothing * (logz - jnp.mean(logits, axis=-1))
    return _weighted_mean(nll, where)


def accuracy(logits: jax.Array, labels: jax.Array, where: jax.Array | None = None) -> jax.Array:
    return _weighted_mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32), where)


def mse(pred: jax.Array, target: jax.Array, where: jax.Array | None = None) -> jax.Array:
    """Mean squared error, in f32 whatever the inputs' dtype (a 16-bit compute policy still sums in f32)."""
    return _weighted_mean(jnp.square(pred.astype(jnp.float32) - target.astype(jnp.float32)), where)


def mae(pred: jax.Array, target: jax.Array, where: jax.Array | None = None) -> jax.Array:
    """Mean absolute error, in f32 whatever the inputs' dtype."""
    return _weighted_mean(jnp.abs(pred.astype(jnp.float32) - target.astype(jnp.float32)), where)
