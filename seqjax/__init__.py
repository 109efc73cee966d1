"""seqjax: sequence models in JAX, pure functions first, thin Flax NNX modules on top."""

__version__ = "0.1.0"
