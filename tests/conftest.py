"""Strict JAX for every test: rank promotion raises, and 4 simulated CPU devices exist
(SEQJAX_TEST_CPU_DEVICES sets another count: tests/test_sharding.py runs tests/test_mesh8.py with 8 in a
subprocess).

The device count must be set before any JAX backend starts, so this runs at import time of the test session.
"""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", int(os.environ.get("SEQJAX_TEST_CPU_DEVICES", "4")))
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_enable_checks", False)
