"""Decoding against Python-loop references on a toy recurrent 'model' whose next-token logits depend on the
whole history through a per-row hash kept in the cache (so cache reordering mistakes change the result)."""
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax import decoding

V, HASH = 6, 13
TABLE = np.asarray(jax.random.normal(jax.random.key(0), (HASH, V))) * 2.0


class ToyCache(NamedTuple):
    h: jax.Array  # int32[R]: hash of the history of each row
    calls: jax.Array  # int32[]: has no batch axis, must survive reordering untouched


def toy_step(tokens, cache):
    h = cache.h
    for t in range(tokens.shape[1]):
        h = (h * 7 + tokens[:, t] + 1) % HASH
    return jnp.asarray(TABLE, jnp.float32)[h], ToyCache(h, cache.calls + 1)


def toy_cache(R):
    return ToyCache(jnp.zeros((R,), jnp.int32), jnp.zeros((), jnp.int32))


def _hash(h, tok):
    return (h * 7 + tok + 1) % HASH


def _log_softmax(x):
    x = x - x.max()
    return x - np.log(np.exp(x).sum())


def ref_greedy(prompt, max_new, eos_id, pad_id):
    out = []
    for row in np.asarray(prompt):
        h = 0
        for tok in row:
            h = _hash(h, tok)
        gen, done = [], False
        for _ in range(max_new):
            tok = pad_id if done else int(np.argmax(TABLE[h]))
            gen.append(tok)
            done = done or tok == eos_id
            h = _hash(h, tok)
        out.append(list(row) + gen)
    return np.array(out)


def ref_beam(prompt, W, max_new, eos_id, pad_id, alpha):
    """Beam search written out with Python lists, same ranking rule as decoding.beam_search."""
    lp_fn = lambda n: ((5 + n) / 6) ** alpha
    all_seqs, all_scores = [], []
    for row in np.asarray(prompt):
        h = 0
        for tok in row:
            h = _hash(h, tok)
        beams = [dict(toks=[], logp=0.0 if w == 0 else -1e9, n=0, done=False, h=h) for w in range(W)]
        for _ in range(max_new):
            cands = []
            for w, b in enumerate(beams):
                lp = _log_softmax(TABLE[b["h"]])
                for v in range(V):
                    if b["done"]:
                        c, n = b["logp"] + (0.0 if v == pad_id else -1e9), b["n"]
                    else:
                        c, n = b["logp"] + lp[v], b["n"] + 1
                    cands.append((-c / lp_fn(n), w * V + v, w, v, c, n))
            cands.sort()
            new = []
            for _, _, w, v, c, n in cands[:W]:
                b = beams[w]
                new.append(dict(toks=b["toks"] + [v], logp=c, n=n, done=b["done"] or v == eos_id,
                                h=_hash(b["h"], v)))
            beams = new
            if all(b["done"] for b in beams):
                break
        scored = sorted(beams, key=lambda b: -b["logp"] / lp_fn(b["n"]))
        all_seqs.append([list(row) + b["toks"] + [pad_id] * (max_new - len(b["toks"])) for b in scored])
        all_scores.append([b["logp"] / lp_fn(b["n"]) for b in scored])
    return np.array(all_seqs), np.array(all_scores)


PROMPT = jnp.array([[1, 2], [3, 0], [5, 5]], jnp.int32)


@pytest.mark.parametrize("eos_id", [None, 2, 4])
def test_greedy_generate_matches_python_loop(eos_id):
    fn = jax.jit(lambda p, c: decoding.generate(toy_step, p, c, 7, eos_id=eos_id, pad_id=0))
    got = fn(PROMPT, toy_cache(3))
    np.testing.assert_array_equal(np.asarray(got), ref_greedy(PROMPT, 7, eos_id, 0))


def test_eos_rows_emit_pad_afterwards():
    eos = int(np.argmax(TABLE[_hash(_hash(0, 1), 2)]))  # row 0 emits EOS at once
    got = np.asarray(decoding.generate(toy_step, PROMPT, toy_cache(3), 5, eos_id=eos, pad_id=0))
    assert got[0, 2] == eos and np.all(got[0, 3:] == 0)


def test_top_k_one_sampling_equals_greedy():
    greedy = decoding.generate(toy_step, PROMPT, toy_cache(3), 6, eos_id=3)
    sampled = decoding.generate(toy_step, PROMPT, toy_cache(3), 6, key=jax.random.key(1), temperature=1.5,
                                top_k=1, eos_id=3)
    np.testing.assert_array_equal(np.asarray(sampled), np.asarray(greedy))


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
@pytest.mark.parametrize("eos_id", [None, 1])
def test_beam_search_matches_python_reference(alpha, eos_id):
    W = 3
    fn = jax.jit(lambda p, c: decoding.beam_search(toy_step, p, c, 5, beam_size=W, eos_id=eos_id,
                                                   alpha=alpha))
    seqs, scores = fn(PROMPT, toy_cache(3 * W))
    ref_seqs, ref_scores = ref_beam(PROMPT, W, 5, eos_id, 0, alpha)
    np.testing.assert_array_equal(np.asarray(seqs), ref_seqs)
    np.testing.assert_allclose(np.asarray(scores), ref_scores, rtol=1e-5)


def test_beam_width_one_equals_greedy():
    for eos_id in (None, 2):
        seqs, _ = decoding.beam_search(toy_step, PROMPT, toy_cache(3), 6, beam_size=1, eos_id=eos_id)
        greedy = decoding.generate(toy_step, PROMPT, toy_cache(3), 6, eos_id=eos_id)
        np.testing.assert_array_equal(np.asarray(seqs)[:, 0], np.asarray(greedy))


def test_beam_search_best_beats_greedy_in_log_probability():
    seqs, _ = decoding.beam_search(toy_step, PROMPT, toy_cache(12), 4, beam_size=4, alpha=0.0)
    greedy = np.asarray(decoding.generate(toy_step, PROMPT, toy_cache(3), 4))

    def logp(seq):
        h, total = 0, 0.0
        for tok in seq[:2]:
            h = _hash(h, tok)
        for tok in seq[2:]:
            total += _log_softmax(TABLE[h])[tok]
            h = _hash(h, tok)
        return total

    for b in range(3):
        assert logp(np.asarray(seqs)[b, 0]) >= logp(greedy[b]) - 1e-5


def test_filter_logits_top_k_and_top_p():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]))
    low = float(jnp.finfo(jnp.float32).min)
    kept = lambda x: np.asarray(x) > low / 2
    np.testing.assert_array_equal(kept(decoding.filter_logits(logits, top_k=2)),
                                  [[1, 1, 0, 0], [0, 0, 1, 1]])
    np.testing.assert_array_equal(kept(decoding.filter_logits(logits, top_p=0.75)),
                                  [[1, 1, 0, 0], [0, 0, 1, 1]])
    np.testing.assert_array_equal(kept(decoding.filter_logits(logits, top_p=0.85)),
                                  [[1, 1, 1, 0], [0, 1, 1, 1]])
    np.testing.assert_array_equal(kept(decoding.filter_logits(logits, top_p=0.1)),
                                  [[1, 0, 0, 0], [0, 0, 0, 1]])
    # top_k above V = 4 is clamped to V: every token is kept and the logits are unchanged (a sampler set up
    # with top_k=40 must work on a 4-token vocabulary).
    for top_k in (4, 5, 40):
        np.testing.assert_array_equal(np.asarray(decoding.filter_logits(logits, top_k=top_k)),
                                      np.asarray(logits))
    draws = decoding.sample_logits(jax.random.key(0), logits, temperature=0.8, top_k=40)
    assert draws.shape == (2,) and np.all((np.asarray(draws) >= 0) & (np.asarray(draws) < 4))
    for top_k in (0, -1):
        with pytest.raises(ValueError, match="top_k: must be >= 1"):
            decoding.filter_logits(logits, top_k=top_k)
    with pytest.raises(ValueError, match="top_p"):
        decoding.filter_logits(logits, top_p=0.0)


def test_sampling_frequencies_follow_tempered_softmax():
    logits = jnp.array([[1.0, 0.0, -1.0, 0.5]])
    T = 2.0
    keys = jax.random.split(jax.random.key(3), 4000)
    draws = jax.vmap(lambda k: decoding.sample_logits(k, logits, temperature=T))(keys)[:, 0]
    freq = np.bincount(np.asarray(draws), minlength=4) / 4000
    p = np.exp(np.asarray(logits[0]) / T)
    np.testing.assert_allclose(freq, p / p.sum(), atol=0.03)


def test_kv_cache_update_and_mask():
    cache = decoding.init_cache(2, 5, 1, 2)
    k1 = jnp.ones((2, 3, 1, 2))
    cache = decoding.cache_update(cache, k1, 2 * k1)
    cache = jax.jit(decoding.cache_update)(cache, 3 * k1[:, :1], 4 * k1[:, :1])
    assert int(cache.index) == 4
    np.testing.assert_array_equal(np.asarray(cache.k)[0, :, 0, 0], [1, 1, 1, 3, 0])
    np.testing.assert_array_equal(np.asarray(cache.v)[1, :, 0, 1], [2, 2, 2, 4, 0])
    mask = np.asarray(decoding.cache_attention_mask(jnp.int32(3), 2, 5))[0, 0]
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    with pytest.raises(ValueError, match="exceeds the cache length S_max = 5"):
        decoding.cache_update(cache, k1[:, :2], k1[:, :2])
    with pytest.raises(ValueError, match="exceed the cache length"):
        decoding.cache_update(decoding.init_cache(2, 2, 1, 2), k1, k1)


def test_length_penalty_formula():
    got = decoding.length_penalty(jnp.array([1, 7]), 0.6)
    np.testing.assert_allclose(np.asarray(got), [1.0, math.pow(2.0, 0.6)], rtol=1e-6)
