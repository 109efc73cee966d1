"""kernels.vendor: which vendor kernel `implementation=None`/"auto" picks for a backend and inputs (pure, on a
CPU), every constraint's violation, and cuDNN's LSTM weight layout against jax's own reference LSTM."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import cells, scan
from seqjax.kernels import vendor

GOOD = dict(dtype=jnp.bfloat16, T=512, S=512, N=8, M=8, K=64, Kv=64, causal=True, has_mask=False,
            has_bias=False, dropout=False, return_weights=False)
LONG = {**GOOD, "T": 2048, "S": 2048}


def test_gpu_picks_cudnn_attention_when_every_constraint_holds():
    for backend in ("gpu", "cuda"):
        assert vendor.attention_kernel(backend, **GOOD)[0] == "cudnn"
    fp16_gqa = {**GOOD, "dtype": jnp.float16, "causal": False, "M": 2}
    assert vendor.attention_kernel("gpu", **fp16_gqa)[0] == "cudnn"
    wide = {**GOOD, "K": 256, "Kv": 256}
    assert vendor.attention_kernel("gpu", **wide, compute_capability=(9, 0))[0] == "cudnn"  # Hopper: 256


@pytest.mark.parametrize("change, why", [
    ({"dtype": jnp.float32}, "fp16/bf16"),
    ({"K": 60, "Kv": 60}, "multiple of 8"),
    ({"K": 256, "Kv": 256}, "<= 128"),  # not Hopper: 128 at most
    ({"Kv": 32}, "the same for values"),
    ({"has_mask": True}, "user mask"),
    ({"has_bias": True}, "bias"),
    ({"dropout": True}, "dropout"),
    ({"return_weights": True}, "weights"),
])
def test_each_cudnn_attention_constraint_falls_back_to_xla(change, why):
    choice, reason = vendor.attention_kernel("gpu", **{**GOOD, **change}, compute_capability=(8, 0))
    assert choice == "xla" and why in reason


def test_tpu_picks_splash_for_long_sequences_only():
    assert vendor.attention_kernel("tpu", **LONG)[0] == "splash"
    assert vendor.attention_kernel("tpu", **{**LONG, "M": 1, "dtype": jnp.float32})[0] == "splash"
    for change, why in (({"T": 512, "S": 512}, "short sequences"), ({"T": 2000}, "multiples of 128"),
                        ({"has_mask": True}, "mask"), ({"has_bias": True}, "bias"), ({"M": 2}, "M = N"),
                        ({"dropout": True}, "dropout"), ({"return_weights": True}, "weights")):
        choice, reason = vendor.attention_kernel("tpu", **{**LONG, **change})
        assert choice == "xla" and why in reason, (change, reason)


def test_cpu_stays_on_xla_and_auto_equals_the_xla_path():
    assert vendor.attention_kernel("cpu", **LONG)[0] == "xla"
    assert vendor.rnn_kernel("cpu", cell_kind="lstm", dtype=jnp.float32, lengths_only=True, reverse=False,
                             recurrent_dropout=False, remat=False)[0] == "xla"
    q, k, v = (jax.random.normal(key, (2, 4, 2, 8)) for key in jax.random.split(jax.random.PRNGKey(0), 3))
    from seqjax import attention

    np.testing.assert_array_equal(np.asarray(attention.dot_product_attention(q, k, v, causal=True)),
                                  np.asarray(attention.dot_product_attention(q, k, v, causal=True,
                                                                             implementation="xla")))
    with pytest.raises(ValueError, match="supports no weights, dropout, mask or bias"):
        attention.dot_product_attention(q, k, v, jnp.ones((2, 1, 4, 4), bool), implementation="cudnn")


RNN_GOOD = dict(cell_kind="lstm", dtype=jnp.float32, lengths_only=True, reverse=False,
                recurrent_dropout=False, remat=False)


def test_rnn_selection_and_each_constraint():
    assert vendor.rnn_kernel("gpu", **RNN_GOOD)[0] == "cudnn"
    assert vendor.rnn_kernel("gpu", **{**RNN_GOOD, "dtype": jnp.float16})[0] == "cudnn"
    for change, why in (({"cell_kind": "gru"}, "standard LSTM"), ({"custom_step": True}, "standard LSTM"),
                        ({"dtype": jnp.bfloat16}, "f32/fp16"), ({"lengths_only": False}, "mask"),
                        ({"reverse": True}, "reverse"), ({"recurrent_dropout": True}, "recurrent dropout"),
                        ({"remat": True}, "remat")):
        choice, reason = vendor.rnn_kernel("gpu", **{**RNN_GOOD, **change})
        assert choice == "xla" and why in reason, (change, reason)
    assert vendor.rnn_kernel("tpu", **RNN_GOOD)[0] == "xla"


def test_cudnn_lstm_weight_layout_matches_jax_reference_lstm():
    """The packed weights, unpacked by jax.experimental.rnn and run by its reference LSTM (the cuDNN layout
    and gate order), give seqjax's LSTM: the part of the cuDNN path a CPU can check."""
    from jax.experimental import rnn

    B, T, D, H = 2, 5, 3, 4
    cell = cells.Cell("lstm")
    params = cell.init(jax.random.PRNGKey(1), D, H)
    params = params._replace(b=jax.random.normal(jax.random.PRNGKey(2), params.b.shape))
    xs = jax.random.normal(jax.random.PRNGKey(3), (B, T, D))
    ys, state = scan.unroll(cell, params, xs, implementation="scan")
    W_ih, W_hh, b_ih, b_hh = rnn.unpack_lstm_weights(vendor.cudnn_lstm_weights(params), D, H, 1, False)
    zeros = jnp.zeros((1, B, H))
    y_ref, h_ref, c_ref = rnn.lstm_ref(xs, zeros, zeros, W_ih, W_hh, b_ih, b_hh, jnp.full((B,), T, jnp.int32),
                                       D, H, 1, 0.0, False)
    np.testing.assert_allclose(np.asarray(ys), np.asarray(y_ref), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(state.h), np.asarray(h_ref[0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(state.c), np.asarray(c_ref[0]), rtol=1e-5, atol=1e-6)
