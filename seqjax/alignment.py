"""Word alignments: the alignment error rate (AER) and hard alignments read off attention weights.

A link is a pair (s, t): source word s is aligned with target word t. Gold alignments have sure links S and
possible links P (S is a subset of P: `possible` below is taken together with `sure`). For predicted links A,
Och & Ney (2003):

    AER(A; S, P) = 1 - (|A & S| + |A & P|) / (|A| + |S|)

0 when A contains every sure link and nothing outside P. Over a corpus the four counts are summed over the
sentences before the ratio, as the standard evaluation does. For links given as Python sets the function is
`seqjax.translation_metrics.alignment_error_rate`; this module holds the array side: hard alignments read off
attention weights, and the four counts computed in-graph over a batch (`aer_counts`, `aer_from_counts`), so
the periodic evaluation of a training run can measure the AER of its cross-attention.

Hard alignments from attention: the cross-attention row of target position t (the query that predicts target
token t, i.e. decoder input t = the token before it under teacher forcing) is a distribution over the source
positions; each target word is linked to the source word it attends to most (argmax over S). When tokens are
subwords, `word_attention` first maps token positions to words: a target word's row is the mean of its
tokens' rows and a source word's column the sum of its tokens' columns (the attention mass it receives).

    links = hard_alignment(weights)                       # weights [T, S] -> {(s, t)}
    counts = aer_counts(weights[None], sure[None], possible[None], tgt_valid[None])   # in-graph, batched
"""
from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

Link = tuple[int, int]  # (source position, target position)


def aer_from_counts(a_and_s, a_and_p, a, s):
    """1 - (|A & S| + |A & P|) / (|A| + |S|) from the four counts (floats or arrays, e.g. `aer_counts`)."""
    if isinstance(a, int | float | np.number) and a + s == 0:
        raise ValueError("aer: no predicted and no sure links: AER is undefined")
    return 1.0 - (a_and_s + a_and_p) / (a + s)


def word_attention(weights: np.ndarray, tgt_words: Sequence[int] | None = None,
                   src_words: Sequence[int] | None = None) -> np.ndarray:
    """Token attention [T, S] -> word attention [T_words, S_words].

    tgt_words[t] / src_words[s]: the word index of token t / s (non-decreasing from 0; -1 drops a token,
    e.g. EOS). A word's row is the mean of its tokens' rows; a word's column the sum of its tokens' columns.
    None: tokens are words.
    """
    w = np.asarray(weights, np.float64)
    if w.ndim != 2:
        raise ValueError(f"weights: expected [T, S], got shape {w.shape}")
    for name, words, size in (("tgt_words", tgt_words, w.shape[0]), ("src_words", src_words, w.shape[1])):
        if words is not None and len(words) != size:
            raise ValueError(f"{name}: expected one word index per token ({size}), got {len(words)}")
    if src_words is not None:
        idx = np.asarray(src_words)
        w = np.stack([w[:, idx == j].sum(1) for j in range(idx.max() + 1)], axis=1)
    if tgt_words is not None:
        idx = np.asarray(tgt_words)
        w = np.stack([w[idx == i].mean(0) for i in range(idx.max() + 1)], axis=0)
    return w


def hard_alignment(weights: np.ndarray, tgt_words: Sequence[int] | None = None,
                   src_words: Sequence[int] | None = None) -> set[Link]:
    """Attention [T, S] -> links {(s, t)}: each target word to the source word it attends to most."""
    w = word_attention(weights, tgt_words, src_words)
    return {(int(s), t) for t, s in enumerate(np.argmax(w, axis=1))}


def aer_counts(weights: jnp.ndarray, sure: jnp.ndarray, possible: jnp.ndarray, tgt_valid: jnp.ndarray,
               src_valid: jnp.ndarray | None = None) -> jnp.ndarray:
    """In-graph AER counts of argmax alignments, tokens = words: weights [B, T, S], sure and possible
    bool[B, T, S] (possible is united with sure), tgt_valid bool[B, T] (the target words to align: padding
    and EOS excluded), src_valid bool[B, S] (the source words the argmax may pick: None = all)
    -> float32[4] = (|A & S|, |A & P|, |A|, |S|) summed over the batch."""
    B, T, S = weights.shape
    if sure.shape != (B, T, S) or possible.shape != (B, T, S) or tgt_valid.shape != (B, T) or (
            src_valid is not None and src_valid.shape != (B, S)):
        raise ValueError(f"aer_counts: expected weights, sure, possible [B, T, S] = {(B, T, S)}, tgt_valid "
                         f"[B, T] and src_valid [B, S], got {sure.shape}, {possible.shape}, "
                         f"{tgt_valid.shape}, {None if src_valid is None else src_valid.shape}")
    if src_valid is not None:
        weights = jnp.where(src_valid[:, None, :], weights, -jnp.inf)
    links = (jnp.argmax(weights, axis=-1)[..., None] == jnp.arange(S)[None, None]) & tgt_valid[..., None]
    sure = sure & tgt_valid[..., None]
    possible = (possible | sure) & tgt_valid[..., None]
    return jnp.stack([jnp.sum(links & sure), jnp.sum(links & possible), jnp.sum(links),
                      jnp.sum(sure)]).astype(jnp.float32)
