"""Strict JAX for every test: rank promotion raises, and 4 simulated CPU devices exist.

The device count must be set before any JAX backend starts, so this runs at import time of the test session.
"""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_enable_checks", False)
