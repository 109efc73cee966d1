"""Patterns against Python loops and NumPy formulas."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import masks, patterns
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
    w = masks.masked_softmax(scores, mask)
    e = np.exp(np.asarray(scores[0, :2]))
    np.testing.assert_allclose(w[0, :2], e / e.sum(), **TOL)
    np.testing.assert_array_equal(w[0, 2:], 0.0)
    np.testing.assert_array_equal(w[2], 0.0)
    assert np.isfinite(np.asarray(w)).all()


# ----------------------------------------------------------------------------------------------- seq2seq

V_SRC, V_TGT, E, S, BOS = 7, 9, 4, 5, 1
SRC_LENGTHS = np.array([5, 2, 3, 1])


def make(attention, cell="gru", bidirectional=False, **rates):
    spec = Seq2SeqSpec(Cell(cell), attention, bidirectional=bidirectional, **rates)
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
    toks = [[] for _ in range(B)]
    for _ in range(max_len):
        state, logits, _ = step_jit(spec, params, enc, state, token)
        token = jnp.argmax(logits, -1)
        for b in range(B):
            if not toks[b] or toks[b][-1] != eos:
                toks[b].append(int(token[b]))
    return toks


@pytest.mark.parametrize("attention, bidirectional", [(None, False), ("dot", False), ("general", True),
                                                      ("bahdanau", False), ("bahdanau", True)])
def test_greedy_translate_equals_python_loop(attention, bidirectional):
    spec, params, src = make(attention, cell="lstm" if attention == "general" else "gru",
                             bidirectional=bidirectional)
    max_len = 6
    free = reference_greedy(spec, params, src, max_len, eos=-1)
    # Pick as EOS a token some sequence first emits part-way, so that stopping early is exercised.
    firsts = [(p, b, toks[p]) for b, toks in enumerate(free) for p in range(max_len - 1)
              if toks[p] not in toks[:p]]
    p, b, eos = max(firsts)  # latest first occurrence: the sequence stops part-way, not at max_len
    ref = reference_greedy(spec, params, src, max_len, eos)
    decode = jax.jit(lambda p, s, n: patterns.translate(spec, p, s, n, max_len=max_len, bos_id=BOS,
                                                        eos_id=eos, pad_id=0))
    tokens = np.asarray(decode(params, src, jnp.asarray(SRC_LENGTHS)))
    assert tokens.shape == (B, max_len) and tokens.dtype == np.int32
    for row, toks in enumerate(ref):
        np.testing.assert_array_equal(tokens[row, :len(toks)], toks)
        np.testing.assert_array_equal(tokens[row, len(toks):], 0)
    assert len(ref[b]) == p + 1 < max_len
    with pytest.raises(ValueError, match="beam_size"):
        patterns.translate(spec, params, src, SRC_LENGTHS, max_len=3, bos_id=BOS, eos_id=eos, beam_size=0)


@pytest.mark.parametrize("attention, bidirectional, cell", [(None, False, "gru"), ("bahdanau", False, "gru"),
                                                            ("dot", False, "gru"), ("general", True, "lstm"),
                                                            (None, True, "gru")])
def test_teacher_forcing_equals_stepwise_decoder(attention, bidirectional, cell):
    spec, params, src = make(attention, cell=cell, bidirectional=bidirectional)
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


def test_bidirectional_encoder_against_numpy():
    """Memory = tanh([fwd; bwd] W_m + b_m) at valid steps (0 at padding); the decoder starts from the bridge
    tanh([h_fwd; h_bwd] W_s + b_s), split into (h, c) for an LSTM."""
    from seqjax.scan import unroll
    spec, params, src = make("general", cell="lstm", bidirectional=True)
    enc = patterns.encode(spec, params, src, jnp.asarray(SRC_LENGTHS))
    x = np.asarray(params.src_embed)[np.asarray(src)]
    ys_f, s_f = unroll(spec.cell, params.encoder.forward, jnp.asarray(x), lengths=SRC_LENGTHS)
    ys_b, s_b = unroll(spec.cell, params.encoder.backward, jnp.asarray(x), lengths=SRC_LENGTHS, reverse=True)
    mem, bridge = jax.tree.map(np.asarray, (params.memory, params.bridge))
    memory = np.tanh(np.concatenate([ys_f, ys_b], -1) @ mem.w + mem.b)
    memory = np.where((np.arange(S)[None] < SRC_LENGTHS[:, None])[:, :, None], memory, 0.0)
    np.testing.assert_allclose(enc.outputs, memory, **TOL)
    np.testing.assert_allclose(enc.keys, memory @ np.asarray(params.attention.w).T, **TOL)
    s = np.tanh(np.concatenate([s_f.h, s_b.h], -1) @ bridge.w + bridge.b)
    np.testing.assert_allclose(enc.state.h, s[:, :H], **TOL)
    np.testing.assert_allclose(enc.state.c, s[:, H:], **TOL)
    assert params.bridge.w.shape == (2 * H, 2 * H) and params.memory.w.shape == (2 * H, H)


def test_dropout_only_with_a_key():
    spec, params, src = make("general", bidirectional=True, embed_dropout=0.5, memory_dropout=0.5)
    plain_spec = Seq2SeqSpec(spec.cell, spec.attention, bidirectional=True)
    tgt_in = jax.random.randint(jax.random.key(5), (B, 3), 0, V_TGT)
    run = lambda sp, key=None: patterns.teacher_forcing(sp, params, src, SRC_LENGTHS, tgt_in, key=key)
    np.testing.assert_array_equal(run(spec), run(plain_spec))  # key=None: no dropout whatever the rates
    k = jax.random.key(3)
    np.testing.assert_array_equal(run(spec, k), run(spec, k))
    assert np.abs(np.asarray(run(spec, k)) - np.asarray(run(spec))).max() > 1e-3
    np.testing.assert_array_equal(run(plain_spec, k), run(plain_spec))  # zero rates: a key changes nothing
    enc = patterns.encode(spec, params, src, SRC_LENGTHS, key=k)
    np.testing.assert_array_equal(np.where(np.arange(S)[None, :, None] >= SRC_LENGTHS[:, None, None],
                                           enc.outputs, 0.0), 0.0)  # dropped memory stays 0 at padding
    with pytest.raises(ValueError, match="memory_dropout"):
        Seq2SeqSpec(Cell("gru"), "dot", memory_dropout=1.0)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_padded_source_equals_truncated_source(bidirectional):
    """Source padding changes nothing: the padded batch decodes like each source alone, unpadded."""
    spec, params, src = make("bahdanau", bidirectional=bidirectional)
    tgt_in = jax.random.randint(jax.random.key(5), (B, 3), 0, V_TGT)
    logits = patterns.teacher_forcing(spec, params, src, jnp.asarray(SRC_LENGTHS), tgt_in)
    for b in (1, 2):
        n = int(SRC_LENGTHS[b])
        alone = patterns.teacher_forcing(spec, params, src[b:b + 1, :n], jnp.asarray([n]), tgt_in[b:b + 1])
        np.testing.assert_allclose(logits[b], alone[0], **TOL)


def test_unidirectional_init_keeps_its_key_layout():
    """The unidirectional encoder's cell is drawn from the third of seven keys (the layout the pattern models'
    numerics rest on); a bidirectional encoder splits that key and leaves every other draw unchanged."""
    key = jax.random.key(0)
    uni = patterns.init_seq2seq(key, Seq2SeqSpec(Cell("gru"), "dot"), V_SRC, V_TGT, E, H)
    bi = patterns.init_seq2seq(key, Seq2SeqSpec(Cell("gru"), "dot", bidirectional=True), V_SRC, V_TGT, E, H)
    k_enc = jax.random.split(key, 7)[2]
    np.testing.assert_array_equal(uni.encoder.w_x, Cell("gru").init(k_enc, E, H).w_x)
    assert uni.memory is None and uni.bridge is None
    for field in ("src_embed", "tgt_embed", "decoder", "w_c", "w_out", "b_out"):
        pairs = zip(jax.tree.leaves(getattr(uni, field)), jax.tree.leaves(getattr(bi, field)), strict=True)
        for a, b in pairs:
            np.testing.assert_array_equal(a, b)


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
