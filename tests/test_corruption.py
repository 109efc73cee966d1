"""BERT's masked-LM corruption (seqjax.corruption.mlm_corrupt): the 80/10/10 rule in statistics over a large
sample (tolerances of 4-5 standard deviations, which a wrong fraction would break), and exact behaviour on
padding and special tokens."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqjax.corruption import mlm_corrupt

V, PAD, UNK, MASK = 10, 0, 1, 10  # MASK outside the vocabulary, as MaskedLM embeds it
# One compilation per argument set instead of one per eager op.
corrupt = jax.jit(mlm_corrupt, static_argnames=("rate", "mask_id", "vocab_size", "special_ids"))


def _sample(B=512, T=64, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, V, size=(B, T)).astype(np.int32)
    lengths = rng.integers(T // 4, T + 1, size=B)
    valid = np.arange(T)[None, :] < lengths[:, None]
    tokens[~valid] = PAD
    return tokens, valid


def test_mlm_selection_follows_the_80_10_10_rule():
    tokens, valid = _sample()
    out, targets = map(np.asarray, corrupt(jax.random.key(0), jnp.asarray(tokens), jnp.asarray(valid),
                                           rate=0.15, mask_id=MASK, vocab_size=V, special_ids=(PAD, UNK)))
    eligible = valid & (tokens != PAD) & (tokens != UNK)
    n_elig, n_sel = eligible.sum(), targets.sum()
    # selected / eligible ~ Binomial(n_elig, 0.15)
    assert abs(n_sel / n_elig - 0.15) < 4.5 * np.sqrt(0.15 * 0.85 / n_elig)
    sel_out, sel_in = out[targets], tokens[targets]
    # A random replacement is uniform over the 8 non-special ids, so 1 in 8 equals the original token.
    p = {"mask": 0.8, "random, changed": 0.1 * 7 / 8, "unchanged": 0.1 + 0.1 / 8}
    got = {"mask": np.mean(sel_out == MASK), "unchanged": np.mean(sel_out == sel_in),
           "random, changed": np.mean((sel_out != MASK) & (sel_out != sel_in))}
    for k in p:
        assert abs(got[k] - p[k]) < 4.5 * np.sqrt(p[k] * (1 - p[k]) / n_sel), (k, got[k], p[k])
    # Random replacements are never special and cover the drawable ids evenly (chi-square, 7 dof; the 0.1%
    # critical value is 24.3).
    random_ids = sel_out[(sel_out != MASK) & (sel_out != sel_in)]
    assert not np.isin(random_ids, [PAD, UNK]).any()
    drawn = np.bincount(random_ids, minlength=V)[2:]
    expected = drawn.sum() / 8
    assert np.sum((drawn - expected) ** 2 / expected) < 24.3
    # Outside the targets nothing changes.
    np.testing.assert_array_equal(out[~targets], tokens[~targets])


def test_mlm_never_touches_padding_or_special_tokens():
    tokens = jnp.array([[5, UNK, 7, 3, 0, 0, 0, 0], [UNK, 2, 9, 9, 4, 6, 8, 2]], jnp.int32)
    valid = jnp.array([[1, 1, 1, 1, 0, 0, 0, 0], [1] * 8], bool)
    for seed in range(3):  # rate 1: every eligible position is a target, and only those
        out, targets = corrupt(jax.random.key(seed), tokens, valid, rate=1.0, mask_id=MASK, vocab_size=V,
                                   special_ids=(PAD, UNK))
        want = np.asarray(valid) & (np.asarray(tokens) != UNK)
        np.testing.assert_array_equal(np.asarray(targets), want)
        np.testing.assert_array_equal(np.asarray(out)[~want], np.asarray(tokens)[~want])
    # Padding is never selected even where its id is an ordinary token (7 here).
    tok7 = jnp.full((2, 8), 7, jnp.int32)
    _, targets = corrupt(jax.random.key(0), tok7, valid, rate=1.0, mask_id=MASK, vocab_size=V,
                         special_ids=(PAD, UNK))
    np.testing.assert_array_equal(np.asarray(targets), np.asarray(valid))
    # The same key gives the same corruption; another key another one (one compilation for all calls).
    a, b, c = (np.asarray(corrupt(jax.random.key(k), tokens, valid, rate=1.0, mask_id=MASK, vocab_size=V,
                                  special_ids=(PAD, UNK))[0]) for k in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kwargs, match", [
    (dict(rate=0.0), "rate: must lie in"),
    (dict(mask_id=4), "mask_id: 4 is an ordinary token"),
    (dict(special_ids=tuple(range(V))), "every id of the vocabulary"),
    (dict(valid=jnp.ones((2, 8), jnp.int32)), "valid: expected a bool mask"),
    (dict(valid=jnp.ones((2, 7), bool)), "expected \\[B, T\\] and the same shape"),
])
def test_mlm_bad_arguments_raise(kwargs, match):
    args = dict(rate=0.15, mask_id=MASK, vocab_size=V, special_ids=(PAD,), valid=jnp.ones((2, 8), bool))
    args.update(kwargs)
    valid = args.pop("valid")
    with pytest.raises(ValueError, match=match):
        mlm_corrupt(jax.random.key(0), jnp.zeros((2, 8), jnp.int32), valid, **args)
