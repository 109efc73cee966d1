"""Hand-written kernels: code that computes what a readable core definition computes, only faster or in less
memory, usually through a custom backward pass (`jax.custom_vjp`).

  * `kernels.rnn`: fused LSTM/GRU layers; reference `scan.unroll` over `cells.Cell`. Their optional C++ gate
    kernels: `rnn_gates.cc` (source), `kernels.native` (build, load), `kernels.rnn_ffi` (the FFI calls).
  * `kernels.attention`: the einsum attention path with a hand-written backward and causal query chunks;
    reference `attention.dot_product_attention(..., implementation="xla_autodiff")`.
  * `kernels.blockwise`: memory-linear (flash-style) attention; same reference.
  * `kernels.vendor`: cuDNN attention and LSTM (GPU), Pallas splash attention (TPU), and the pure functions
    that choose them for `implementation=None`/"auto"; checked against the XLA paths by
    benchmarks/accelerator_check.py on an accelerator.

The readable definitions in the core are the references these kernels are tested against. Like the core,
kernels import only jax and numpy (never flax). They may import the lowest core modules (cells, masks,
dropout), never `seqjax.attention` or `seqjax.scan`, which dispatch to them.
"""
