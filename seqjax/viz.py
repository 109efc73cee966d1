"""Attention maps as pictures: per-layer, per-head matrices with token labels, cross-attention alignments, and
ViT attention rollout.

    python -m seqjax.viz --workdir=DIR --input="the big red dog" --out=DIR     # sentiment / char LM / G2P run
    python -m seqjax.viz --workdir=DIR --index=0 --out=DIR                    # ViT run: test image 0
    python -m seqjax.viz --workdir=DIR --image=img.npy --out=DIR              # ViT run: your own image

What is drawn depends on the run's task (read from DIR/config.json; the model comes from its latest checkpoint):
- sentiment (transformer) and char_lm: ``self_attention.png``, an L x N grid of [T, T] matrices, queries down
  the rows and keys along the columns, each labelled with the input's tokens (the course's "The big red dog" plot);
- g2p (transformer): the word is decoded greedily, then ``cross_attention.png`` shows, per layer and head, which
  letters each output phoneme attended to (rows: phonemes, columns: letters), plus the decoder self-attention;
- image_classification (ViT): ``rollout.png``, the image beside its attention rollout (Abnar & Zuidema 2020):
  the product over layers of the head-averaged attention plus identity, rows renormalised, read off at the class
  token's row over the patches and upsampled to the image.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def attention_rollout(weights: np.ndarray, residual: bool = True) -> np.ndarray:
    """Rollout [B, T, T] from per-layer attention weights [L, B, N, T, T].

    Equivalent loop: R = I; for l in range(L): A = mean_n(W[l]) (+ I); A /= A.sum(-1); R = A @ R.
    Row t of the result says how much of token t's final representation flows from each input token.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 5 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"weights: expected [L, B, N, T, T] self-attention, got shape {w.shape}")
    L, B, _, T, _ = w.shape
    rollout = np.broadcast_to(np.eye(T), (B, T, T)).copy()
    for layer in range(L):
        a = w[layer].mean(axis=1)  # [B, T, T]
        if residual:
            a = a + np.eye(T)[None]
        a = a / a.sum(axis=-1, keepdims=True)
        rollout = np.einsum("bts,bsu->btu", a, rollout)
    return rollout


def plot_attention_grid(weights: np.ndarray, row_labels: list[str], col_labels: list[str], path: str,
                        title: str = "", row_name: str = "query", col_name: str = "key") -> str:
    """An L x N grid of attention matrices weights [L, N, T, S] with token labels on both axes; saves a PNG."""
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 4:
        raise ValueError(f"weights: expected [L, N, T, S], got shape {w.shape}")
    L, N, T, S = w.shape
    if len(row_labels) != T or len(col_labels) != S:
        raise ValueError(f"labels: expected {T} row and {S} column labels for weights [L, N, T, S] = {w.shape}, "
                         f"got {len(row_labels)} and {len(col_labels)}")
    plt = _pyplot()
    cell = max(2.2, 0.28 * max(T, S))
    fig, axes = plt.subplots(L, N, figsize=(cell * N + 1.0, cell * L + 0.8), squeeze=False)
    for l in range(L):
        for n in range(N):
            ax = axes[l][n]
            im = ax.imshow(w[l, n], cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
            ax.set_xticks(range(S))
            ax.set_yticks(range(T))
            fontsize = 8 if max(T, S) <= 24 else 5
            ax.set_xticklabels(col_labels, rotation=90, fontsize=fontsize)
            ax.set_yticklabels(row_labels, fontsize=fontsize)
            if T * S <= 64:  # small matrices get their numbers, as in the course's worked example
                for t in range(T):
                    for s in range(S):
                        ax.text(s, t, f"{w[l, n, t, s]:.2f}", ha="center", va="center", fontsize=7,
                                color="white" if w[l, n, t, s] < 0.5 else "black")
            ax.set_title(f"layer {l + 1}, head {n + 1}", fontsize=9)
            if n == 0:
                ax.set_ylabel(row_name, fontsize=8)
            if l == L - 1:
                ax.set_xlabel(col_name, fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_rollout(image: np.ndarray, heat: np.ndarray, path: str, title: str = "") -> str:
    """The image [H, W] beside its rollout map [h, w] (nearest-upsampled to H x W) and their overlay."""
    image = np.asarray(image, dtype=np.float32)
    heat = np.asarray(heat, dtype=np.float32)
    H, W = image.shape
    h, w = heat.shape
    if H % h or W % w:
        raise ValueError(f"heat: shape {heat.shape} must tile the image {image.shape}")
    up = np.kron(heat, np.ones((H // h, W // w), np.float32))
    up = (up - up.min()) / max(float(up.max() - up.min()), 1e-12)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("input")
    axes[1].imshow(heat, cmap="inferno")
    axes[1].set_title("rollout (CLS -> patches)")
    axes[2].imshow(image, cmap="gray")
    axes[2].imshow(up, cmap="inferno", alpha=0.55)
    axes[2].set_title("overlay")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
