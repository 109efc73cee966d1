"""Patterns against Python loops and NumPy formulas."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import patterns
from seqjax.cells import Cell
from seqjax.patterns import Seq2SeqSpec

B, T, D, H = 4, 6, 3, 5
LENGTHS = np.array([6, 3, 0, 1])
TOL = dict(rtol=1e-5, atol=1e-5)


def test_pooling_against_numpy():
    ys = np.asarray(jax.random.normal(jax.random.key(0), (B, T, H)))
    mask = np.arange(T)[None] < LENGTHS[:, None]
    last = patterns.pool(jnp.asarray(ys), lengths=LENGTHS, method="last")
    mean = patterns.pool(jnp.asarray(ys), lengths=LENGTHS, method="mean")
    mx = patterns.pool(jnp.asarray(ys), mask=mask, method="max")
    for b in range(B):
        n = LENGTHS[b]
        if n == 0:
            for out in (last, mean, mx):
                np.testing.assert_array_equal(out[b], np.zeros(H))
            continue
        np.testing.assert_allclose(last[b], ys[b, n - 1], **TOL)
        np.testing.assert_allclose(mean[b], ys[b, :n].mean(0), **TOL)
        np.testing.assert_allclose(mx[b], ys[b, :n].max(0), **TOL)
    np.testing.assert_allclose(patterns.pool(jnp.asarray(ys), method="mean"), ys.mean(1), **TOL)
    with pytest.raises(ValueError, match="method"):
        patterns.pool(jnp.asarray(ys), method="median")


def test_many_to_one_is_final_hidden_state():
    from seqjax.scan import unroll
    cell = Cell("lstm")
    params = cell.init(jax.random.key(0), D, H)
    xs = jax.random.normal(jax.random.key(1), (B, T, D))
    h = patterns.many_to_one(cell, params, xs, lengths=LENGTHS)
    _, final = unroll(cell, params, xs, lengths=LENGTHS)
    np.testing.assert_allclose(h, final.h, **TOL)
    ys, mask = patterns.many_to_many(cell, params, xs, lengths=LENGTHS)
    assert ys.shape == (B, T, H)
    np.testing.assert_array_equal(mask, np.arange(T)[None] < LENGTHS[:, None])


@pytest.mark.parametrize("feedback", ["output", "fixed"])
def test_one_to_many_equals_python_loop(feedback):
    cell = Cell("gru")
    params = cell.init(jax.random.key(0), D, H)
    w = jax.random.normal(jax.random.key(1), (H, D))
    readout = lambda y: jnp.tanh(y @ w)
    x0 = jax.random.normal(jax.random.key(2), (B, D))
    outs, final = jax.jit(lambda p, x: patterns.one_to_many(cell, p, x, T, readout=readout,
                                                            feedback=feedback))(params, x0)
    state, x, ref = cell.zero_state(params, B), x0, []
    for _ in range(T):
        state, y = cell(params, state, x)
        ref.append(readout(y))
        x = ref[-1] if feedback == "output" else x0
    np.testing.assert_allclose(outs, np.stack(ref, 1), **TOL)
    np.testing.assert_allclose(final.h, state.h, **TOL)
    with pytest.raises(ValueError, match="readout: feedback='output' needs outputs shaped like x0"):
        patterns.one_to_many(cell, params, x0, T)  # identity readout gives H=5 != D=3


def test_masked_softmax_zero_on_padding_and_empty_rows():
    scores = jax.random.normal(jax.random.key(0), (3, 5))
    mask = jnp.asarray([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], bool)
    w = patterns.masked_softmax(scores, mask)
    e = np.exp(np.asarray(scores[0, :2]))
    np.testing.assert_allclose(w[0, :2], e / e.sum(), **TOL)
    np.testing.assert_array_equal(w[0, 2:], 0.0)
    np.testing.assert_array_equal(w[2], 0.0)
    assert np.isfinite(np.asarray(w)).all()


# ----------------------------------------------------------------------------------------------- seq2seq

V_SRC, V_TGT, E, S, BOS = 7, 9, 4, 5, 1
SRC_LENGTHS = np.array([5, 2, 3, 1])


def make(attention, cell="gru"):
    spec = Seq2SeqSpec(Cell(cell), attention)
    params = patterns.init_seq2seq(jax.random.key(0), spec, V_SRC, V_TGT, E, H)
    # Sharper weights than the init so greedy outputs vary from step to step (an untrained model repeats).
    params = params._replace(tgt_embed=params.tgt_embed * 4.0, w_out=params.w_out * 4.0,
                             b_out=jax.random.normal(jax.random.key(9), (V_TGT,)))
    src = np.asarray(jax.random.randint(jax.random.key(1), (B, S), 0, V_SRC))
    src = np.where(np.arange(S)[None] < SRC_LENGTHS[:, None], src, 0)
    return spec, params, jnp.asarray(src)


step_jit = jax.jit(patterns.decoder_step, static_argnums=0)
encode_jit = jax.jit(patterns.encode, static_argnums=0)


def reference_greedy(spec, params, src, max_len, eos):
    """Python loop over steps with per-sequence EOS bookkeeping in Python (rows are independent)."""
    enc = encode_jit(spec, params, src, jnp.asarray(SRC_LENGTHS))
    state, token = enc.state, jnp.full((B,), BOS)
    toks, ws = [[] for _ in range(B)], [[] for _ in range(B)]
    for _ in range(max_len):
        state, logits, w = step_jit(spec, params, enc, state, token)
        token = jnp.argmax(logits, -1)
        for b in range(B):
            if not toks[b] or toks[b][-1] != eos:
                toks[b].append(int(token[b]))
                ws[b].append(None if w is None else np.asarray(w[b]))
    return list(zip(toks, ws, strict=True))


@pytest.mark.parametrize("attention", [None, "dot", "general", "bahdanau"])
def test_greedy_decode_equals_python_loop(attention):
    spec, params, src = make(attention, cell="lstm" if attention == "general" else "gru")
    max_len = 6
    free = reference_greedy(spec, params, src, max_len, eos=-1)
    # Pick as EOS a token some sequence first emits part-way, so that stopping early is exercised.
    firsts = [(p, b, toks[p]) for b, (toks, _) in enumerate(free) for p in range(max_len - 1)
              if toks[p] not in toks[:p]]
    p, b, eos = max(firsts)  # latest first occurrence: the sequence stops part-way, not at max_len
    stop = (b, p + 1)
    ref = reference_greedy(spec, params, src, max_len, eos)
    decode = jax.jit(lambda p, s, n: patterns.greedy_decode(spec, p, s, n, max_len=max_len, bos_id=BOS,
                                                            eos_id=eos, pad_id=0, return_attention=True))
    tokens, lengths, weights = decode(params, src, jnp.asarray(SRC_LENGTHS))
    assert tokens.shape == (B, max_len) and weights.shape == (B, max_len, S)
    for b, (toks, ws) in enumerate(ref):
        assert int(lengths[b]) == len(toks)
        np.testing.assert_array_equal(tokens[b, :len(toks)], toks)
        np.testing.assert_array_equal(tokens[b, len(toks):], 0)
        if attention is not None:
            n = SRC_LENGTHS[b]
            for t, w in enumerate(ws):
                np.testing.assert_allclose(weights[b, t], w, **TOL)
            np.testing.assert_array_equal(weights[b, :, n:], 0.0)  # source padding gets no attention
            np.testing.assert_allclose(weights[b, :len(toks)].sum(-1), 1.0, **TOL)
            np.testing.assert_array_equal(weights[b, len(toks):], 0.0)
    assert int(lengths[stop[0]]) == stop[1] < max_len


@pytest.mark.parametrize("attention", [None, "bahdanau", "dot"])
def test_teacher_forcing_equals_stepwise_decoder(attention):
    spec, params, src = make(attention)
    tgt_in = jax.random.randint(jax.random.key(5), (B, 4), 0, V_TGT)
    logits, weights = patterns.teacher_forcing(spec, params, src, jnp.asarray(SRC_LENGTHS), tgt_in,
                                               return_attention=True)
    assert logits.shape == (B, 4, V_TGT) and weights.shape == (B, 4, S)
    enc = encode_jit(spec, params, src, jnp.asarray(SRC_LENGTHS))
    state = enc.state
    for t in range(4):
        state, lg, w = step_jit(spec, params, enc, state, tgt_in[:, t])
        np.testing.assert_allclose(logits[:, t], lg, **TOL)
        if w is not None:
            np.testing.assert_allclose(weights[:, t], w, **TOL)
    if attention is not None:
        np.testing.assert_allclose(weights.sum(-1), 1.0, **TOL)
        np.testing.assert_array_equal(np.where(np.arange(S)[None, None] >= SRC_LENGTHS[:, None, None],
                                               weights, 0.0), 0.0)
    if attention == "bahdanau":
        loss = lambda p: jnp.sum(patterns.teacher_forcing(spec, p, src, SRC_LENGTHS, tgt_in))
        grads = jax.grad(loss)(params)
        assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


def test_padded_source_equals_truncated_source():
    """Source padding changes nothing: the padded batch decodes like each source alone, unpadded."""
    spec, params, src = make("bahdanau")
    tgt_in = jax.random.randint(jax.random.key(5), (B, 3), 0, V_TGT)
    logits = patterns.teacher_forcing(spec, params, src, jnp.asarray(SRC_LENGTHS), tgt_in)
    b, n = 2, int(SRC_LENGTHS[2])
    alone = patterns.teacher_forcing(spec, params, src[b:b + 1, :n], jnp.asarray([n]), tgt_in[b:b + 1])
    np.testing.assert_allclose(logits[b], alone[0], **TOL)


def test_seq2seq_bad_inputs():
    spec, params, src = make("dot")
    with pytest.raises(ValueError, match=r"src: token ids must lie in \[0, V\) = \[0, 7\)"):
        patterns.encode(spec, params, src.at[0, 0].set(V_SRC), jnp.asarray(SRC_LENGTHS))
    with pytest.raises(ValueError, match=r"src_lengths: every length must lie in \[0, T\] = \[0, 5\]"):
        patterns.encode(spec, params, src, jnp.asarray([6, 1, 1, 1]))
    with pytest.raises(ValueError, match="src: expected token ids"):
        patterns.encode(spec, params, src[0], jnp.asarray(SRC_LENGTHS))
    with pytest.raises(ValueError, match="tgt_in: token ids"):
        patterns.teacher_forcing(spec, params, src, SRC_LENGTHS, jnp.full((B, 2), -1))
    with pytest.raises(ValueError, match="attention"):
        Seq2SeqSpec(Cell("gru"), "multihead")
