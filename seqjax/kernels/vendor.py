"""Vendor kernels on accelerators, and the pure functions that choose them (`implementation=None` / "auto").

  * GPU: cuDNN flash attention through `jax.nn.dot_product_attention(implementation="cudnn")`; cuDNN LSTM
    through `jax.experimental.rnn.lstm`.
  * TPU: the Pallas splash-attention kernel (`jax.experimental.pallas.ops.tpu.splash_attention`) for long
    sequences.
  * Everywhere else, or when a constraint fails: seqjax's own XLA paths (`kernels.attention`,
    `kernels.blockwise`, `kernels.rnn`), which are also the references the vendor paths are checked against
    (`benchmarks/accelerator_check.py`, on a GPU or TPU).

`attention_kernel` and `rnn_kernel` are pure: backend and input facts in, (choice, reason) out, so every
constraint is unit-tested on a CPU (tests/test_vendor.py). The constraints are those of the installed jax
(0.10.2: `jax/_src/cudnn/fused_attention_stablehlo.py`, `jax/experimental/rnn.py`, the splash kernel's block
sizes); where seqjax's conventions are stricter (a query with no visible key outputs zeros; no dropout draw
can be matched) the choice stays with XLA.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from seqjax.cells import LSTMParams, LSTMState

CUDNN_DTYPES = ("float16", "bfloat16")  # cuDNN flash attention: 16-bit inputs only (fp8 not used here)
CUDNN_MAX_HEAD_DIM = 128  # 256 on compute capability >= 9.0 (Hopper and later)
CUDNN_MAX_HEAD_DIM_HOPPER = 256
SPLASH_BLOCK = 128  # the splash kernel's default q/kv block: T and S must be multiples of it
SPLASH_MIN_SCORES = 1024 * 1024  # T * S from which the splash kernel is chosen ("long sequences")
CUDNN_LSTM_DTYPES = ("float32", "float16")  # jax.experimental.rnn: bf16 not implemented for the LSTM


def attention_kernel(backend: str, *, dtype, T: int, S: int, N: int, M: int, K: int, Kv: int, causal: bool,
                     has_mask: bool, has_bias: bool, dropout: bool, return_weights: bool,
                     compute_capability: tuple[int, int] | None = None) -> tuple[str, str]:
    """("cudnn" | "splash" | "xla", why) for one attention call; "xla" means seqjax's own paths.

    backend: `jax.default_backend()` ("cpu" | "gpu" | "cuda" | "rocm" | "tpu"). dtype: q's dtype (after any
    compute_dtype cast). has_mask: a user mask (the causal flag is separate); dropout: attention dropout
    active. compute_capability: the GPU's (major, minor), None if unknown (then head width <= 128).
    """
    if return_weights:
        return "xla", "the weights are asked for"
    if dropout:
        return "xla", "attention dropout"
    if backend in ("gpu", "cuda"):
        if jnp.dtype(dtype).name not in CUDNN_DTYPES:
            return "xla", f"cuDNN flash attention needs fp16/bf16 inputs, got {jnp.dtype(dtype).name}"
        hopper = compute_capability is not None and tuple(compute_capability) >= (9, 0)
        limit = CUDNN_MAX_HEAD_DIM_HOPPER if hopper else CUDNN_MAX_HEAD_DIM
        if K % 8 or K > limit or Kv != K:
            return "xla", (f"cuDNN flash attention needs a head width that is a multiple of 8 and <= "
                           f"{limit} (the same for values), got K={K}, Kv={Kv}")
        if has_mask:
            return "xla", "a user mask (the cuDNN path takes causal or none: fully masked rows must be 0)"
        if has_bias:
            return "xla", "an attention bias"
        if N % M:
            return "xla", f"M={M} key/value heads must divide N={N}"
        return "cudnn", "GPU, fp16/bf16, head width and mask supported"
    if backend == "tpu":
        if T * S < SPLASH_MIN_SCORES:
            return "xla", f"T*S = {T * S} < {SPLASH_MIN_SCORES}: short sequences stay on XLA"
        if T % SPLASH_BLOCK or S % SPLASH_BLOCK:
            return "xla", f"the splash kernel needs T and S multiples of {SPLASH_BLOCK}, got T={T}, S={S}"
        if has_mask or has_bias:
            return "xla", "a user mask or bias (the splash path takes only causal or none)"
        if M not in (N, 1) or Kv != K:
            return "xla", f"the splash kernel needs M = N or M = 1 and Kv = K, got N={N}, M={M}, K={K}, " \
                          f"Kv={Kv}"
        return "splash", "TPU, long sequence, causal or no mask"
    return "xla", f"backend {backend!r} has no vendor attention kernel here"


def rnn_kernel(backend: str, *, cell_kind: str, dtype, lengths_only: bool, reverse: bool,
               recurrent_dropout: bool, remat: bool, custom_step: bool = False) -> tuple[str, str]:
    """("cudnn" | "xla", why) for one recurrent layer.

    cell_kind: "lstm" | "gru" | "rnn"; lengths_only: the padding is given by `lengths` (right-padded) or there
    is none (a bool mask may have holes cuDNN cannot express); reverse: a backward-in-time layer (cuDNN runs
    reverse directions only inside its bidirectional mode); custom_step: a plain step function, not a Cell.
    """
    if backend not in ("gpu", "cuda"):
        return "xla", f"backend {backend!r} has no vendor RNN kernel here"
    if custom_step or cell_kind != "lstm":
        return "xla", "cuDNN is used for the standard LSTM only (sigmoid/tanh gates, PyTorch gate order)"
    if jnp.dtype(dtype).name not in CUDNN_LSTM_DTYPES:
        return "xla", f"jax.experimental.rnn's LSTM takes f32/fp16, got {jnp.dtype(dtype).name}"
    if not lengths_only:
        return "xla", "padding given as a mask (cuDNN takes right-padded lengths)"
    if reverse:
        return "xla", "a reverse-in-time layer"
    if recurrent_dropout:
        return "xla", "recurrent dropout (cuDNN's dropout is between layers, not on h)"
    if remat:
        return "xla", "remat"
    return "cudnn", "GPU, LSTM, right-padded lengths"


# --------------------------------------------------------------------------------------- the vendor calls


def cudnn_attention(q, k, v, *, causal: bool):
    """q [B, T, N, K], k/v [B, S, M, K] -> [B, T, N, K] by cuDNN flash attention (GPU only)."""
    return jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation="cudnn")


@functools.lru_cache(maxsize=32)
def _splash_kernel(N: int, T: int, S: int, causal: bool, mqa: bool):
    from jax.experimental.pallas.ops.tpu import splash_attention as splash

    one = splash.CausalMask((T, S)) if causal else splash.FullMask((T, S))
    mask = splash.MultiHeadMask([one] * N)
    make = splash.make_splash_mqa_single_device if mqa else splash.make_splash_mha_single_device
    return make(mask)


def splash_attention(q, k, v, *, causal: bool):
    """q [B, T, N, K], k/v [B, S, M, K] (M = N or 1) -> [B, T, N, K] by the Pallas splash kernel (TPU only).

    The kernel takes one sequence with heads first and unscaled scores: q is scaled here, like everywhere
    in seqjax."""
    B, T, N, K = q.shape
    S, M = k.shape[1], k.shape[2]
    kernel = _splash_kernel(N, T, S, bool(causal), M == 1 and N > 1)
    qh = (q * jnp.asarray(1.0 / math.sqrt(K), q.dtype)).transpose(0, 2, 1, 3)  # [B, N, T, K]
    kh, vh = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, M, S, K]
    if M == 1 and N > 1:
        kh, vh = kh[:, 0], vh[:, 0]  # [B, S, K]: the MQA kernel's layout
    out = jax.vmap(kernel)(qh, kh, vh)  # [B, N, T, K]
    return out.transpose(0, 2, 1, 3)


def cudnn_lstm_weights(params: LSTMParams) -> jax.Array:
    """seqjax LSTM params -> cuDNN's flat weight vector for one unidirectional layer.

    Layout (jax.experimental.rnn): W_ih [4H, D], W_hh [4H, H], b_ih [4H], b_hh [4H], flattened and
    concatenated; gates in the order (i, f, g, o), which is seqjax's (and PyTorch's) order. seqjax has one
    bias, so b_hh = 0."""
    return jnp.concatenate([params.w_x.T.reshape(-1), params.w_h.T.reshape(-1), params.b,
                            jnp.zeros_like(params.b)])


def cudnn_lstm(params: LSTMParams, xs, lengths, state: LSTMState):
    """(ys [B, T, H], final LSTMState) of one LSTM layer by cuDNN (GPU only); padded steps output zeros."""
    from jax.experimental import rnn

    B, T, D = xs.shape
    H = params.w_h.shape[0]
    lengths = jnp.full((B,), T, jnp.int32) if lengths is None else lengths.astype(jnp.int32)
    ys, h, c = rnn.lstm(xs, state.h[None], state.c[None], cudnn_lstm_weights(params), lengths,
                        input_size=D, hidden_size=H, num_layers=1, dropout=0.0, bidirectional=False)
    valid = jnp.arange(T)[None, :] < lengths[:, None]  # [B, T]
    return jnp.where(valid[..., None], ys, 0), LSTMState(h[0], c[0])
