"""Transformer modules: causality by Jacobian, padding invariance, KV-cache decoding against full
recomputation, the scanned layer stack against a Python loop, Flax's MultiHeadAttention, parameter counts and
roles (weight decay), the attention kernel chosen at construction, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax import attention, masks, optim
from seqjax.kernels import blockwise
from seqjax.models import gpt as gpt_lib
from seqjax.models import variants, vit
from seqjax.models.encoder import Encoder, TransformerClassifier
from seqjax.models.encoder_decoder import EncoderDecoder
from seqjax.models.gpt import GPT
from seqjax.nn import Bias, ClassToken, Kernel, Norm, Position, count_params
from seqjax.nn.attention import MultiHeadAttention

D, N, F, V = 16, 4, 32, 11
PAD, BOS, EOS = 0, 1, 2


def _lm(**kw):
    args = dict(d_model=D, num_heads=N, num_layers=2, mlp_dim=F, max_len=8)
    return GPT(V, **{**args, **kw}, rngs=nnx.Rngs(0))


def _s2s(**kw):
    args = dict(d_model=D, num_heads=N, num_encoder_layers=2, num_decoder_layers=2, mlp_dim=F, max_src_len=6,
                max_tgt_len=8)
    return EncoderDecoder(7, V, PAD, BOS, EOS, **{**args, **kw}, rngs=nnx.Rngs(1))


def _enc(num_layers=2, seed=2, **kw):
    return Encoder(V, d_model=D, num_heads=N, num_layers=num_layers, mlp_dim=F, max_len=8, **kw,
                   rngs=nnx.Rngs(seed))


def _mha(d_model=D, num_heads=N, **kw):
    args = dict(num_kv_heads=None, context_dim=None, attention_dropout=0.0, rope=False, implementation="auto")
    return MultiHeadAttention(d_model, num_heads, **{**args, **kw}, rngs=nnx.Rngs(0))


def _transform(model: GPT, x):
    """Token vectors x [B, T, D] -> logits [B, T, V] (the old DecoderOnly.transform)."""
    return model.logits(model.stack(model.embedder.add_positions(x)).x)


TOKENS = jnp.array([[1, 2, 3, 4, 5, 6], [3, 3, 10, 1, 0, 2]], jnp.int32)

# Eager calls would re-trace the layer scan every time; jitted wrappers compile once per model structure.
fwd = nnx.jit(lambda m, *a: m(*a))
fwd_key = nnx.jit(lambda m, x, k: m(x, key=k))
fwd_attn = nnx.jit(lambda m, x: m(x, return_attention=True))
lm_decode = nnx.jit(lambda m, t, c: m.decode(t, c))
s2s_decode = nnx.jit(lambda m, t, mem, v, c: m.decode(t, mem, v, c))


def _jacobian_blocks(f, x):
    """|d f(x)[b, t, :] / d x[b, s, :]| summed over features: [B, T, S] (batch rows are independent)."""
    jac = jax.jit(jax.jacrev(f))(x)  # [B, T, O, B, S, D]; reverse mode: the attention VJP is hand-written
    jac = jnp.einsum("btobsd->btsod", jac)  # diagonal in the batch: row b only sees row b
    return np.asarray(jnp.sum(jnp.abs(jac), axis=(3, 4)))


@pytest.mark.parametrize("kw", [dict(), dict(pre_ln=False), dict(positions="rope", num_kv_heads=2)])
def test_decoder_is_causal_by_jacobian(kw):
    model = _lm(**kw)
    x = model.embedder.embed(TOKENS)
    dep = _jacobian_blocks(jax.jit(lambda x: _transform(model, x)), x)
    T = x.shape[1]
    upper = np.triu(np.ones((T, T), bool), k=1)  # s > t
    assert np.all(dep[:, upper] == 0.0)
    assert np.all(dep[:, ~upper] > 0.0)


def test_encoder_sees_all_valid_positions_and_no_padding():
    model = _enc()
    lengths = jnp.array([6, 4])
    x = model.embedder.embed(TOKENS)
    valid = masks.lengths_to_mask(lengths, 6)
    dep = _jacobian_blocks(jax.jit(lambda x: model.encode_embeddings(x, valid)[0]), x)
    for b, n in enumerate([6, 4]):
        assert np.all(dep[b, :, :n] > 0.0)  # every output depends on every valid input
        assert np.all(dep[b, :n, n:] == 0.0)  # valid outputs ignore padded inputs


def test_padding_invariance_of_encoder_classifier_and_seq2seq():
    lengths = jnp.array([6, 3])
    garbage = TOKENS.at[1, 3:].set(jnp.array([9, 8, 7]))
    enc = _enc(seed=3)
    np.testing.assert_allclose(np.asarray(fwd(enc, TOKENS, lengths))[1, :3],
                               np.asarray(fwd(enc, garbage, lengths))[1, :3], atol=1e-6)
    # a padding mask describes the same batch as the lengths
    by_mask = nnx.jit(lambda m, x, v: m(x, mask=v))(enc, garbage, masks.lengths_to_mask(lengths, 6))
    np.testing.assert_allclose(np.asarray(by_mask)[1, :3], np.asarray(fwd(enc, TOKENS, lengths))[1, :3],
                               atol=1e-6)
    for pooling in ("cls", "mean"):
        clf = TransformerClassifier(V, 3, pooling=pooling, d_model=D, num_heads=N, num_layers=2, mlp_dim=F,
                                    max_len=8, rngs=nnx.Rngs(4))
        padded = np.asarray(fwd(clf, TOKENS, lengths))
        np.testing.assert_allclose(padded, np.asarray(fwd(clf, garbage, lengths)), atol=1e-6)
        # and the padded batch equals the sequence run alone, truncated
        np.testing.assert_allclose(padded[1], np.asarray(fwd(clf, TOKENS[1:, :3]))[0], atol=1e-5)
    s2s = _s2s()
    src = TOKENS % 7
    src_garbage = src.at[1, 3:].set(jnp.array([6, 5, 4]))
    np.testing.assert_allclose(np.asarray(fwd(s2s, src, lengths, TOKENS)),
                               np.asarray(fwd(s2s, src_garbage, lengths, TOKENS)), atol=1e-6)


@pytest.mark.parametrize("kw", [dict(), dict(positions="rope", num_kv_heads=2, tie_embeddings=False),
                                dict(positions="sinusoidal", num_kv_heads=1)])
def test_kv_cache_decoding_equals_full_forward(kw):
    model = _lm(**kw)
    full = np.asarray(fwd(model, TOKENS))  # [B, T, V]
    cache = model.init_cache(2, 8)
    logits, cache = lm_decode(model, TOKENS[:, :3], cache)  # multi-token prefill
    np.testing.assert_allclose(np.asarray(logits), full[:, :3], atol=1e-5)
    for t in range(3, 6):
        logits, cache = lm_decode(model, TOKENS[:, t:t + 1], cache)
        np.testing.assert_allclose(np.asarray(logits)[:, 0], full[:, t], atol=1e-5)
    assert np.all(np.asarray(cache.index) == 6)


@pytest.mark.parametrize("projected", [False, True], ids=["memory", "projected_memory"])
def test_seq2seq_cached_decoding_equals_teacher_forcing(projected):
    model = _s2s(num_kv_heads=2)
    src, lengths = TOKENS % 7, jnp.array([6, 2])
    full = np.asarray(fwd(model, src, lengths, TOKENS))
    memory, valid, _ = nnx.jit(lambda m, s, n: m.encode(s, n))(model, src, lengths)
    if projected:  # cross-attention keys/values computed once, as generate does
        memory = nnx.jit(lambda m, x: m.project_memory(x))(model, memory)
        L, M, K = model.decoder.layers.num_layers, model.num_kv_heads, model.head_dim
        assert memory.k.shape == memory.v.shape == (L, *src.shape, M, K)
    cache = model.init_cache(2, 8)
    logits, cache = s2s_decode(model, TOKENS[:, :2], memory, valid, cache)
    np.testing.assert_allclose(np.asarray(logits), full[:, :2], atol=1e-5)
    for t in range(2, 6):
        logits, cache = s2s_decode(model, TOKENS[:, t:t + 1], memory, valid, cache)
        np.testing.assert_allclose(np.asarray(logits)[:, 0], full[:, t], atol=1e-5)


def test_generate_matches_argmax_of_full_recomputation():
    model = _lm()
    prompt = TOKENS[:, :2]
    out = np.asarray(model.generate(prompt, 5))
    seq = np.zeros((2, 7), np.int32)
    seq[:, :2] = np.asarray(prompt)
    for t in range(2, 7):  # slow reference: a full forward pass per step (zeros beyond t are causally unseen)
        seq[:, t] = np.argmax(np.asarray(fwd(model, jnp.asarray(seq)))[:, t - 1], axis=-1)
    np.testing.assert_array_equal(out, seq)
    sampled = model.generate(prompt, 5, key=jax.random.key(0), temperature=2.0, top_k=1)
    np.testing.assert_array_equal(np.asarray(sampled), seq)


def test_seq2seq_beam_search_scores_match_teacher_forcing():
    # BOS/EOS ids and the length penalty are the model's own (constructor arguments); a non-default alpha
    # checks that length_penalty reaches the beam search.
    alpha = 0.8
    model = _s2s(length_penalty=alpha)
    src, lengths = TOKENS % 7, jnp.array([6, 3])
    seqs, scores = model.generate(src, lengths, max_new_tokens=5, beam_size=3)
    seqs, scores = np.asarray(seqs), np.asarray(scores)
    assert seqs.shape == (2, 3, 6) and np.all(seqs[:, :, 0] == BOS)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    # Rescore every beam by teacher forcing: a wrong cache reordering would make the scores disagree.
    for w in range(3):
        logp = jax.nn.log_softmax(fwd(model, src, lengths, jnp.asarray(seqs[:, w, :-1])), axis=-1)
        for b in range(2):
            total, n = 0.0, 0
            for t in range(1, 6):
                total += float(logp[b, t - 1, seqs[b, w, t]])
                n += 1
                if seqs[b, w, t] == EOS:
                    break
            assert scores[b, w] == pytest.approx(total / ((5 + n) / 6) ** alpha, abs=1e-4)
    # translate: the best beam without BOS; greedy is generate's greedy output without BOS
    np.testing.assert_array_equal(np.asarray(model.translate(src, lengths, 5, beam_size=3)), seqs[:, 0, 1:])
    greedy = np.asarray(model.generate(src, lengths, max_new_tokens=5))
    assert greedy.shape == (2, 6) and np.all(greedy[:, 0] == BOS)
    np.testing.assert_array_equal(np.asarray(model.translate(src, lengths, 5)), greedy[:, 1:])


def _lm_logp(model, seqs):
    """log p(seqs[:, t] | seqs[:, :t]) [B, T-1] by one full forward pass (no cache)."""
    logp = np.asarray(jax.nn.log_softmax(fwd(model, jnp.asarray(seqs[:, :-1])), axis=-1))
    return np.take_along_axis(logp, np.asarray(seqs)[:, 1:, None], axis=-1)[..., 0]


def _score(token_logp, new_tokens, eos, alpha):
    """Beam score of one continuation: summed log-probabilities up to and including EOS / length penalty."""
    total, n = 0.0, 0
    for lp, tok in zip(token_logp, new_tokens, strict=True):
        total, n = total + float(lp), n + 1
        if tok == eos:
            break
    return total / ((5 + n) / 6) ** alpha


def test_gpt_beam_search_scores_match_teacher_forcing():
    # A wrong cache reordering (batch axis 1 of the stacked [L, B * W, ...] cache) would make the rescored
    # log-probabilities disagree with the beam scores.
    alpha, T0, n_new, eos_id = 0.8, 2, 5, EOS
    model = _lm()
    seqs, scores = model.generate(TOKENS[:, :T0], n_new, beam_size=3, eos_id=eos_id, length_penalty=alpha)
    seqs, scores = np.asarray(seqs), np.asarray(scores)
    assert seqs.shape == (2, 3, T0 + n_new) and np.all(seqs[:, :, :T0] == np.asarray(TOKENS[:, None, :T0]))
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    for w in range(3):
        token_logp = _lm_logp(model, seqs[:, w])[:, T0 - 1:]  # [B, n_new]
        for b in range(2):
            want = _score(token_logp[b], seqs[b, w, T0:], eos_id, alpha)
            assert scores[b, w] == pytest.approx(want, abs=1e-4)


def test_gpt_beam_search_is_exhaustive_over_two_steps_of_a_tiny_vocabulary():
    # V = W = 4: the first step keeps every token, so after the second the W beams are exactly the W best of
    # all V + V^2 continuations (a finished one [EOS] stands for itself), scored by full recomputation.
    Vt, T0, alpha, eos_id = 4, 2, 0.6, 3
    model = GPT(Vt, d_model=D, num_heads=N, num_layers=2, mlp_dim=F, max_len=8, rngs=nnx.Rngs(3))
    prompt = np.array([[1, 2], [3, 0]], np.int32)
    seqs, scores = model.generate(jnp.asarray(prompt), 2, beam_size=Vt, eos_id=eos_id, length_penalty=alpha)
    seqs, scores = np.asarray(seqs), np.asarray(scores)
    for b in range(2):
        conts = [(a, c) for a in range(Vt) for c in range(Vt) if a != eos_id]
        conts += [(eos_id, 0)]  # after EOS only pad (id 0) follows
        full = np.array([[*prompt[b], a, c] for a, c in conts], np.int32)
        token_logp = _lm_logp(model, full)[:, T0 - 1:]
        exhaustive = sorted(((_score(token_logp[i], full[i, T0:], eos_id, alpha), tuple(full[i]))
                             for i in range(len(full))), reverse=True)[:Vt]
        assert [tuple(s) for s in seqs[b]] == [s for _, s in exhaustive]
        np.testing.assert_allclose(scores[b], [sc for sc, _ in exhaustive], atol=1e-4)


def test_gpt_beam_width_one_is_greedy_and_sampling_arguments_are_refused():
    model = _lm()
    prompt = TOKENS[:, :2]
    greedy = np.asarray(model.generate(prompt, 5, eos_id=EOS))
    seqs, _ = gpt_lib._beam_search(model, prompt, max_new_tokens=5, beam_size=1, eos_id=EOS, pad_id=0,
                                   alpha=0.6)
    np.testing.assert_array_equal(np.asarray(seqs)[:, 0], greedy)
    for bad, match in [(dict(key=jax.random.key(0)), "key"), (dict(top_k=2), "top_k"),
                       (dict(temperature=0.5), "temperature"), (dict(beam_size=V + 1), "exceeds the vocab"),
                       (dict(beam_size=0), "beam_size: expected >= 1")]:
        with pytest.raises(ValueError, match=match):
            model.generate(prompt, 3, **{"beam_size": 2, **bad})


def test_layer_stack_scan_equals_python_loop_over_layers():
    model = _lm(num_layers=3)
    x = model.embedder(TOKENS)
    graphdef, state = nnx.split(model.stack.layers.blocks)
    h = x
    for layer in range(3):
        block = nnx.merge(graphdef, jax.tree.map(lambda a, i=layer: a[i], state))
        h = block(h).x
    scanned = nnx.jit(lambda s, x: s(x).x)(model.stack.layers, x)
    np.testing.assert_allclose(np.asarray(scanned), np.asarray(h), atol=1e-5)
    # Stack = LayerStack + the final LayerNorm
    stacked = nnx.jit(lambda s, x: s(x).x)(model.stack, x)
    np.testing.assert_allclose(np.asarray(stacked), np.asarray(model.stack.ln_f(h)), atol=1e-5)


def test_remat_and_return_attention_do_not_change_results():
    plain, remat = _lm(), _lm(remat=True)
    loss = lambda m: jnp.sum(m(TOKENS, key=jax.random.key(5)) ** 2)
    grad = nnx.jit(nnx.value_and_grad(loss))
    (l1, g1), (l2, g2) = grad(plain), grad(remat)
    np.testing.assert_allclose(float(l1), float(l2), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
    logits, weights = fwd_attn(plain, TOKENS)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(fwd(plain, TOKENS)), atol=1e-6)
    w = np.asarray(weights)
    assert w.shape == (2, 2, N, 6, 6)  # [L, B, N, T, S]
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    assert np.all(w[..., np.triu(np.ones((6, 6), bool), k=1)] == 0.0)
    # layer 0's map equals attention recomputed by hand from the block's own projections
    graphdef, state = nnx.split(plain.stack.layers.blocks)
    block0 = nnx.merge(graphdef, jax.tree.map(lambda a: a[0], state))
    h = block0.ln1(plain.embedder(TOKENS))
    p = block0.self_attn.params.get()
    assert isinstance(p, attention.MultiHeadParams)
    _, ref = attention.multi_head_attention(p, h, causal=True, return_weights=True)
    np.testing.assert_allclose(w[0], np.asarray(ref), atol=1e-5)


def test_dropout_active_iff_key():
    model = _lm(embed_dropout=0.3, residual_dropout=0.3, attention_dropout=0.3)
    a, b = fwd(model, TOKENS), fwd(model, TOKENS)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    c, d = fwd_key(model, TOKENS, jax.random.key(0)), fwd_key(model, TOKENS, jax.random.key(1))
    assert not np.allclose(np.asarray(a), np.asarray(c)) and not np.allclose(np.asarray(c), np.asarray(d))
    np.testing.assert_array_equal(np.asarray(c), np.asarray(fwd_key(model, TOKENS, jax.random.key(0))))
    # each rate alone is active with a key (three separate constructor arguments; same init, so `a` is the
    # output without dropout)
    for name in ("embed_dropout", "residual_dropout", "attention_dropout"):
        one = _lm(**{name: 0.3})
        assert not np.allclose(np.asarray(fwd_key(one, TOKENS, jax.random.key(0))), np.asarray(a)), name


def test_vit_patchify_round_trip_and_layout():
    images = jax.random.normal(jax.random.key(13), (2, 8, 12, 3))
    patches = vit.patchify(images, 4)
    assert patches.shape == (2, 6, 48)
    # patch p = (row i, col j) in row-major order holds image[i*4:(i+1)*4, j*4:(j+1)*4] flattened (h, w, c)
    img = np.asarray(images)
    for p in range(6):
        i, j = divmod(p, 3)
        block = img[:, i * 4:i * 4 + 4, j * 4:j * 4 + 4].reshape(2, -1)
        np.testing.assert_array_equal(np.asarray(patches)[:, p], block)
    np.testing.assert_array_equal(np.asarray(vit.unpatchify(patches, 4, 8, 12)), img)
    model = vit.ViT(5, (8, 12), 3, patch_size=4, d_model=D, num_heads=N, num_layers=2, mlp_dim=F,
                    positions="sincos2d", rngs=nnx.Rngs(14))
    logits, w = fwd_attn(model, images)
    assert logits.shape == (2, 5) and w.shape == (2, 2, N, 7, 7)


# --------------------------------------------------------------------------------------------------------
# the attention kernel: a constructor argument that reaches every attention call
# --------------------------------------------------------------------------------------------------------


def _record_blockwise(monkeypatch) -> list[tuple[int, int]]:
    """Make seqjax.kernels.blockwise.blockwise_attention record the (T, S) of every call (at trace time)."""
    calls = []
    real = blockwise.blockwise_attention

    def recording(q, k, v, *args, **kwargs):
        calls.append((q.shape[1], k.shape[1]))
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(blockwise, "blockwise_attention", recording)
    return calls


def test_attention_implementation_set_at_construction_reaches_the_attention_call(monkeypatch):
    calls = _record_blockwise(monkeypatch)
    run = nnx.jit(lambda m, x: m(x))  # a fresh wrapper: every model below is traced here, under the patch
    xla, blk = _lm(attention_implementation="xla"), _lm(attention_implementation="blockwise")
    assert xla.stack.layers.blocks.self_attn.implementation == "xla"
    assert blk.stack.layers.blocks.self_attn.implementation == "blockwise"
    out_xla = np.asarray(run(xla, TOKENS))
    assert calls == []
    out_blk = np.asarray(run(blk, TOKENS))
    assert set(calls) == {(6, 6)}
    np.testing.assert_allclose(out_blk, out_xla, atol=1e-5)
    with pytest.raises(ValueError, match="return_weights: not available with implementation='blockwise'"):
        blk(TOKENS, return_attention=True)
    # cached decoding (queries over the S_max-long cache) runs the same kernel
    calls.clear()
    logits, _ = nnx.jit(lambda m, t, c: m.decode(t, c))(blk, TOKENS[:, :3], blk.init_cache(2, 8))
    assert set(calls) == {(3, 8)}
    np.testing.assert_allclose(np.asarray(logits), out_xla[:, :3], atol=1e-5)
    # "auto" picks by the size of the scores; an explicit "xla" stays on the einsum path where auto would not
    monkeypatch.setattr(attention, "BLOCKWISE_MIN_SCORES", 1)
    calls.clear()
    run(_lm(attention_implementation="auto"), TOKENS)
    assert calls
    calls.clear()
    run(_lm(attention_implementation="xla", num_layers=1), TOKENS)  # another structure: traced afresh
    assert calls == []


def test_attention_implementation_reaches_encoder_decoder_cross_attention_and_every_model(monkeypatch):
    calls = _record_blockwise(monkeypatch)
    ref, blk = _s2s(attention_implementation="xla"), _s2s(attention_implementation="blockwise")
    src, lengths, tgt = TOKENS % 7, jnp.array([6, 3]), TOKENS[:, :5]
    run = nnx.jit(lambda m, s, n, t: m(s, n, t))
    expected = np.asarray(run(ref, src, lengths, tgt))
    assert calls == []
    got = np.asarray(run(blk, src, lengths, tgt))
    # encoder self-attention [S, S], decoder self-attention [T, T], cross-attention [T, S]
    assert set(calls) == {(6, 6), (5, 5), (5, 6)}
    np.testing.assert_allclose(got, expected, atol=1e-5)
    common = dict(d_model=D, num_heads=N, num_layers=1, mlp_dim=F, attention_implementation="blockwise")
    images = jnp.zeros((2, 8, 8, 1))
    for model, args in [(_enc(num_layers=1, attention_implementation="blockwise"), (TOKENS,)),
                        (TransformerClassifier(V, 3, max_len=8, **common, rngs=nnx.Rngs(0)), (TOKENS,)),
                        (vit.ViT(3, 8, 1, patch_size=4, **common, rngs=nnx.Rngs(0)), (images,)),
                        (blk, (src, lengths, tgt))]:
        with pytest.raises(ValueError, match="return_weights: not available with implementation='blockwise'"):
            model(*args, return_attention=True)


# --------------------------------------------------------------------------------------------------------
# parameter counts, from the formulas written out by hand
# --------------------------------------------------------------------------------------------------------


def _attn(d, n, m, k):
    return d * n * k + 2 * d * m * k + n * k * d + n * k + 2 * m * k + d


def _enc_block(d, n, f, m=None):
    m = n if m is None else m
    return _attn(d, n, m, d // n) + 2 * (2 * d) + (d * f + f + f * d + d)


def _dec_block_cross(d, n, f):
    return 2 * _attn(d, n, n, d // n) + 3 * (2 * d) + (d * f + f + f * d + d)


EXPECTED = {
    # V*D embeddings + T*D positions + L blocks + final LayerNorm (tied output)
    "gpt-char": 65 * 128 + 128 * 128 + 4 * _enc_block(128, 4, 512) + 2 * 128,
    # RoPE: no position table; GQA with M = 2
    "gpt-mini": 8192 * 256 + 6 * _enc_block(256, 8, 1024, m=2) + 2 * 256,
    # + CLS vector + linear head
    "bert-tiny": 30522 * 128 + 512 * 128 + 2 * _enc_block(128, 2, 512) + 2 * 128 + 128 + 128 * 2 + 2,
    "encoder-small": 8192 * 256 + 256 * 256 + 4 * _enc_block(256, 4, 1024) + 2 * 256,
    "seq2seq-small": (8000 * 256 + 128 * 256 + 3 * _enc_block(256, 4, 1024) + 2 * 256)
    + (8000 * 256 + 128 * 256 + 3 * _dec_block_cross(256, 4, 1024) + 2 * 256),
    # patch embedding + CLS + learned positions (1 + P) + blocks + final LN + head
    "vit-tiny": (16 * 16 * 3 * 192 + 192) + 192 + 197 * 192 + 12 * _enc_block(192, 3, 768) + 2 * 192
    + 192 * 1000 + 1000,
    "vit-cifar": (4 * 4 * 3 * 192 + 192) + 192 + 6 * _enc_block(192, 3, 768) + 2 * 192 + 192 * 10 + 10,
    "vit-mnist": (7 * 7 * 1 * 64 + 64) + 64 + 17 * 64 + 4 * _enc_block(64, 4, 128) + 2 * 64 + 64 * 10 + 10,
}


def test_parameter_count_of_every_named_variant():
    assert set(EXPECTED) == set(variants.VARIANTS)
    for name, expected in EXPECTED.items():
        abstract = nnx.eval_shape(lambda name=name: variants.build(name, rngs=nnx.Rngs(0)))
        assert count_params(abstract) == expected, name
    assert 5.0e6 < EXPECTED["vit-tiny"] < 6.0e6  # ViT-Ti/16 has about 5.7M parameters
    with pytest.raises(ValueError, match="unknown variant 'gpt-huge'"):
        variants.build("gpt-huge", rngs=nnx.Rngs(0))


# --------------------------------------------------------------------------------------------------------
# parameter roles and weight decay
# --------------------------------------------------------------------------------------------------------

ROLES = (Kernel, Bias, Norm, Position, ClassToken)

# Each variant at toy size: the same model class and options (RoPE, GQA, pooling, sincos2d), tiny widths.
_TINY = {
    "gpt": dict(vocab_size=V, d_model=D, num_heads=N, num_layers=1, mlp_dim=F, max_len=8),
    "transformer_classifier": dict(vocab_size=V, d_model=D, num_heads=N, num_layers=1, mlp_dim=F, max_len=8),
    "encoder": dict(vocab_size=V, d_model=D, num_heads=N, num_layers=1, mlp_dim=F, max_len=8),
    "encoder_decoder": dict(src_vocab_size=7, tgt_vocab_size=V, d_model=D, num_heads=N, num_encoder_layers=1,
                            num_decoder_layers=1, mlp_dim=F, max_src_len=8, max_tgt_len=8),
    "vit": dict(num_classes=3, image_size=8, patch_size=4, d_model=D, num_heads=N, num_layers=1, mlp_dim=F),
}


def _flat_params(model) -> dict[str, nnx.Variable]:
    return {"/".join(map(str, path)): v for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def _decayed(model) -> list[str]:
    mask = optim.decay_mask(nnx.state(model, nnx.Param))
    return sorted("/".join(str(getattr(k, "key", k)) for k in path)
                  for path, decay in jax.tree_util.tree_flatten_with_path(mask)[0] if decay)


@pytest.mark.parametrize("name", sorted(variants.VARIANTS))
def test_every_parameter_of_every_variant_has_a_role_and_only_kernels_decay(name):
    variant = variants.VARIANTS[name]
    model = variants.build(name, rngs=nnx.Rngs(0), **_TINY[variant.model_name])
    params = _flat_params(model)
    assert params
    roles = {path: type(v) for path, v in params.items()}
    plain = sorted(path for path, role in roles.items() if role not in ROLES)
    assert plain == [], f"{name}: parameters without a declared role: {plain}"
    assert _decayed(model) == sorted(path for path, role in roles.items() if role is Kernel), name
    by_role = {role: sorted(p for p, r in roles.items() if r is role) for role in ROLES}
    assert by_role[ClassToken] == (["cls"] if variant.model_name in ("transformer_classifier", "vit") else [])
    has_table = variant.arguments.get("positions", "learned") == "learned"
    assert bool(by_role[Position]) == has_table, name  # no table for RoPE or sincos2d


def test_decay_mask_of_a_small_gpt_is_exactly_its_kernels():
    block = "stack/layers/blocks/"
    decayed = ["embedder/embed/table",  # the token embedding (also the tied output layer)
               block + "self_attn/params/wq", block + "self_attn/params/wk", block + "self_attn/params/wv",
               block + "self_attn/params/wo", block + "mlp/fc1/kernel", block + "mlp/fc2/kernel"]
    kept = ["embedder/pos/table",  # the learned position table
            block + "self_attn/params/bq", block + "self_attn/params/bk", block + "self_attn/params/bv",
            block + "self_attn/params/bo", block + "mlp/fc1/bias", block + "mlp/fc2/bias",
            block + "ln1/scale", block + "ln1/bias", block + "ln2/scale", block + "ln2/bias",
            "stack/ln_f/scale", "stack/ln_f/bias"]
    model = _lm(num_layers=1)
    print("decayed:", _decayed(model))
    assert _decayed(model) == sorted(decayed)
    assert sorted(_flat_params(model)) == sorted(decayed + kept)
    untied = _lm(num_layers=1, tie_embeddings=False)  # + an output layer: its kernel decays, its bias not
    assert _decayed(untied) == sorted([*decayed, "head/kernel"])
    assert sorted(_flat_params(untied)) == sorted(decayed + kept + ["head/kernel", "head/bias"])


# --------------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------------


def test_bad_inputs_raise():
    model = _lm()
    with pytest.raises(ValueError, match=r"tokens: token ids must lie in \[0, V\) = \[0, 11\)"):
        model(TOKENS.at[0, 0].set(11))
    with pytest.raises(ValueError, match="prompt: token ids"):
        model.generate(TOKENS.at[0, 0].set(-1), 2)
    with pytest.raises(ValueError, match="T = 9 exceeds the maximum length 8"):
        model(jnp.zeros((1, 9), jnp.int32))
    with pytest.raises(ValueError, match="exceeds the maximum length 8"):
        model.generate(TOKENS, 4)
    cache = model.init_cache(2, 4)
    _, cache = model.decode(TOKENS[:, :3], cache)
    with pytest.raises(ValueError, match="exceeds the cache length S_max = 4"):
        model.decode(TOKENS[:, 3:5], cache)
    with pytest.raises(ValueError, match="exceeds the maximum length"):
        model.init_cache(2, 9)
    mha = _mha()
    with pytest.raises(ValueError, match="mask: expected a rank-4 array broadcastable"):
        mha(jnp.zeros((2, 5, D)), mask=jnp.ones((2, 1, 5, 4), bool))
    kv = mha.project_context(jnp.zeros((3, 5, D)))  # [B=3, S=5, M, K]
    with pytest.raises(ValueError, match=r"context: projected keys must be \[B, S, M, K\] = \[2, S, 4, 4\]"):
        mha(jnp.zeros((2, 5, D)), kv)
    with pytest.raises(ValueError, match=r"per_layer\['context'\]: expected arrays stacked \[L = 2"):
        _s2s().decode(TOKENS[:, :1], kv, jnp.ones((2, 5), bool), _s2s().init_cache(2, 4))  # not [L, ...]
    with pytest.raises(ValueError, match="num_heads: N = 3 must divide the width D = 16"):
        _mha(num_heads=3)
    with pytest.raises(ValueError, match="num_heads: N = 5 must divide"):
        _lm(num_heads=5)
    with pytest.raises(ValueError, match="attention_implementation: expected one of"):
        _lm(attention_implementation="cuda")
    with pytest.raises(ValueError, match="image_size: 30 x 30 must be divisible by the patch size 16 x 16"):
        vit.ViT(10, 30, 3, d_model=D, num_heads=N, num_layers=1, mlp_dim=F, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="must be divisible by the patch size"):
        vit.patchify(jnp.zeros((1, 10, 8, 1)), 4)
    enc = _enc(num_layers=1, seed=0)
    with pytest.raises(ValueError, match=r"lengths: every length must lie in \[0, T\]"):
        enc(TOKENS, jnp.array([7, 2]))
    with pytest.raises(ValueError, match="lengths: expected shape"):
        enc(TOKENS, jnp.array([6, 2, 1]))
    with pytest.raises(ValueError, match="lengths, mask: give either lengths or mask, not both"):
        enc(TOKENS, jnp.array([6, 2]), mask=jnp.ones((2, 6), bool))
    with pytest.raises(ValueError, match=r"src_lengths: every length must lie in \[0, T\]"):
        _s2s().generate(TOKENS % 7, jnp.array([7, 2]), max_new_tokens=2)


# --------------------------------------------------------------------------------------------------------
# bad values under jit, where checks cannot raise: the result is NaN instead of silently wrong
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", [-1, V])
def test_out_of_range_token_under_jit_gives_nan_logits(bad_id):
    model = _lm()
    normal = np.asarray(fwd(model, TOKENS))
    got = np.asarray(fwd(model, TOKENS.at[0, 2].set(bad_id)))  # fwd is jitted: the id cannot be checked
    assert np.isnan(got[0, 2:]).all()  # the bad position and every later one that attends to it
    np.testing.assert_allclose(got[1], normal[1], atol=1e-6)  # the other sequence is untouched


def test_decode_past_the_cache_under_jit_gives_nan_logits():
    """Eagerly this raises (test_bad_inputs_raise); under jit the cache index is traced, and a write past
    S_max would otherwise be clamped onto the last cached positions with finite logits. The shapes are those
    of the cached-decoding tests above (compiled once); rotary positions have no table to run past, so the
    GPT's NaNs come from the cache alone."""
    lm = _lm(positions="rope", num_kv_heads=2, tie_embeddings=False)
    s2s = _s2s(num_kv_heads=2)
    memory, valid = jax.random.normal(jax.random.key(0), (2, 6, D)), jnp.ones((2, 6), bool)
    for model, decode, extra, prefill in ((lm, lm_decode, (), 3), (s2s, s2s_decode, (memory, valid), 2)):
        _, cache = decode(model, TOKENS[:, :prefill], *extra, model.init_cache(2, 8))
        for t in range(prefill, 8):  # up to index 8 = S_max: every write fits
            logits, cache = decode(model, TOKENS[:, t % 6:t % 6 + 1], *extra, cache)
            assert np.isfinite(np.asarray(logits)).all()
        for _ in range(2):  # index 8 + 1 > S_max, and it stays loud
            logits, cache = decode(model, TOKENS[:, :1], *extra, cache)
            assert np.isnan(np.asarray(logits)).all()


def test_generate_validates_on_the_host_before_the_jitted_loop(monkeypatch):
    from seqjax.models import encoder_decoder, gpt

    def never(*args, **kwargs):
        raise AssertionError("the jitted generate was reached with bad input")

    monkeypatch.setattr(gpt, "_generate", never)
    monkeypatch.setattr(encoder_decoder, "_generate", never)
    model, s2s = _lm(), _s2s()
    for bad in (-1, V):
        with pytest.raises(ValueError, match=r"prompt: token ids must lie in \[0, V\) = \[0, 11\)"):
            model.generate(TOKENS.at[1, 1].set(bad), 2)
    with pytest.raises(ValueError, match="prompt \\+ max_new_tokens - 1: sequence length T = 9"):
        model.generate(TOKENS, 4)
    with pytest.raises(ValueError, match=r"src: token ids must lie in \[0, V\) = \[0, 7\)"):
        s2s.generate(TOKENS, max_new_tokens=2)
    for lengths in ([7, 2], [-1, 2]):
        with pytest.raises(ValueError, match=r"src_lengths: every length must lie in \[0, T\] = \[0, 6\]"):
            s2s.generate(TOKENS % 7, jnp.array(lengths), max_new_tokens=2)
    with pytest.raises(ValueError, match="src_lengths: expected shape"):
        s2s.generate(TOKENS % 7, jnp.array([6]), max_new_tokens=2)
    with pytest.raises(ValueError, match="max_new_tokens: sequence length T = 9 exceeds"):
        s2s.generate(TOKENS % 7, max_new_tokens=9)
