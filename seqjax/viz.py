"""Attention maps as pictures: per-layer, per-head matrices with token labels, cross-attention alignments, and
ViT attention rollout.

    python -m seqjax.viz --workdir=DIR --input="the big red dog" --out=DIR     # sentiment / char LM / G2P run
    python -m seqjax.viz --workdir=DIR --input="The big red dog barks." --out=DIR  # translation run
    python -m seqjax.viz --workdir=DIR --index=0 --out=DIR                    # ViT run: test image 0
    python -m seqjax.viz --workdir=DIR --image=img.npy --out=DIR              # ViT run: your own image

What is drawn depends on the run's task (read from DIR/config.json; the model is its latest checkpoint):
- sentiment (transformer) and char_lm: ``self_attention.png``, an L x N grid of [T, T] matrices, queries
  down the rows and keys along the columns, labelled with the input's tokens (the course's "The big red dog"
  plot);
- g2p (transformer): the word is decoded greedily, then ``cross_attention.png`` shows, per layer and head,
  which letters each output phoneme attended to (rows: phonemes, columns: letters), and
  ``decoder_self_attention.png`` the phonemes' causal self-attention;
- translation (transformer): the sentence is translated (greedy), then ``alignment.png`` shows each decoder
  layer's head-averaged cross-attention with each target word's hard alignment (the source word, not the
  source's EOS, it attends to most: seqjax.alignment) boxed, and ``cross_attention.png`` every layer and
  head (``python -m seqjax.translate`` draws the same for its best beam);
- image_classification (ViT): ``rollout.png``, the image beside its attention rollout (Abnar & Zuidema 2020):
  the product over layers of the head-averaged attention plus identity, rows renormalised, read off at the
  class token's row over the patches and upsampled to the image.
"""
from __future__ import annotations

import os
import sys

from seqjax import allocator

if __name__ == "__main__":  # before JAX loads: glibc reads malloc tunables at start (may re-execute)
    allocator.tune_cli("python -m seqjax.viz")

import numpy as np  # noqa: E402
from absl import flags

from seqjax import alignment, cli


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
    """An L x N grid of attention matrices weights [L, N, T, S], token labels on both axes, saved as PNG."""
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 4:
        raise ValueError(f"weights: expected [L, N, T, S], got shape {w.shape}")
    L, N, T, S = w.shape
    if len(row_labels) != T or len(col_labels) != S:
        raise ValueError(f"labels: expected {T} row and {S} column labels for weights [L, N, T, S] = "
                         f"{w.shape}, got {len(row_labels)} and {len(col_labels)}")
    plt = _pyplot()
    cell = max(2.2, 0.28 * max(T, S))
    # Constrained layout leaves room for every panel's tick labels (each panel carries both axes' tokens).
    fig, axes = plt.subplots(L, N, figsize=(cell * N + 1.5, cell * L + 1.0), squeeze=False,
                             layout="constrained")
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


def plot_alignment(weights: np.ndarray, row_labels: list[str], col_labels: list[str], path: str,
                   title: str = "", links: list[set[tuple[int, int]]] | None = None,
                   gold: set[tuple[int, int]] | None = None) -> str:
    """One panel per layer of head-averaged cross-attention weights [L, T, S] (target rows, source columns),
    each layer's hard alignment links (source s, target t) boxed in red (None: each row's argmax); `gold`
    links marked by dots."""
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 3:
        raise ValueError(f"weights: expected [L, T, S], got shape {w.shape}")
    L, T, S = w.shape
    if len(row_labels) != T or len(col_labels) != S:
        raise ValueError(f"labels: expected {T} row and {S} column labels for weights [L, T, S] = {w.shape}, "
                         f"got {len(row_labels)} and {len(col_labels)}")
    plt = _pyplot()
    cell = max(2.6, 0.36 * max(T, S))
    fig, axes = plt.subplots(1, L, figsize=(cell * L + 1.5, cell + 1.0), squeeze=False, layout="constrained")
    for l in range(L):
        ax = axes[0][l]
        im = ax.imshow(w[l], cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
        chosen = links[l] if links is not None else set(zip(np.argmax(w[l], axis=1), range(T), strict=True))
        for s, t in sorted(chosen):
            ax.add_patch(plt.Rectangle((s - 0.5, t - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.8))
        for s, t in sorted(gold or ()):
            ax.plot(s, t, "o", color="tab:blue", ms=4)
        ax.set_xticks(range(S), col_labels, rotation=90, fontsize=8)
        ax.set_yticks(range(T), row_labels if l == 0 else [""] * T, fontsize=8)
        ax.set_title(f"layer {l + 1} (heads averaged)", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.6)
    fig.suptitle(title + ("\nred box: argmax (hard alignment)" + ("; blue dot: gold link" if gold else "")))
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


# ---------------------------------------------------------------------------------------------------------
# Per-task rendering from a trained run
# ---------------------------------------------------------------------------------------------------------

TASKS = ("sentiment", "char_lm", "g2p", "translation", "image_classification")


def _show_char(c: str) -> str:
    return {" ": "\u2423", "\n": "\\n", "\t": "\\t"}.get(c, c)


def render_sentiment(task, model, text: str, out: str, max_len: int) -> list[str]:
    from seqjax.data.tokenize import word_split

    if not hasattr(model, "encoder"):
        raise ValueError("--workdir: this sentiment run trained a recurrent model; attention maps need "
                         "a transformer (model_name 'transformer_classifier')")
    words = word_split(text)
    if not words:
        raise ValueError(f"--input: no words in {text!r}")
    ids, lengths = task.tokenizer.encode([text], max_len=max_len)
    words = words[: int(lengths[0])]
    labels = [w if i != task.tokenizer.unk_id else f"{w}?" for w, i in zip(words, ids[0], strict=False)]
    logits, w = model(ids[:, : len(words)], lengths, return_attention=True)  # w [L, 1, N, T', T']
    if w.shape[-1] == len(words) + 1:
        labels = ["[CLS]", *labels]
    p_pos = float(np.exp(logits[0, 1]) / np.exp(logits[0]).sum())
    path = os.path.join(out, "self_attention.png")
    plot_attention_grid(np.asarray(w)[:, 0], labels, labels, path,
                        title=f"{text!r}: P(positive) = {p_pos:.2f}  (? = unknown word)")
    return [path]


def render_char_lm(task, model, text: str, out: str) -> list[str]:
    ids = task.vocab.encode(text, "--input")
    if len(ids) > model.max_len:
        raise ValueError(f"--input: {len(ids)} characters exceed the model's context of {model.max_len}")
    _, w = model(ids[None], return_attention=True)  # w [L, 1, N, T, T]
    labels = [_show_char(c) for c in text]
    path = os.path.join(out, "self_attention.png")
    plot_attention_grid(np.asarray(w)[:, 0], labels, labels, path, title=f"causal self-attention on {text!r}")
    return [path]


def render_g2p(task, model, word: str, out: str) -> list[str]:
    if not hasattr(model, "project_memory"):
        raise ValueError("--workdir: this g2p run trained a recurrent model; attention maps need "
                         "a transformer (model_name 'encoder_decoder')")
    word = word.strip().lower()
    if not word or len(word) > task.S:
        raise ValueError(f"--input: expected one word of 1..{task.S} letters, got {word!r}")
    unknown = sorted(set(word) - set(task.src_vocab.stoi))
    if unknown:
        raise ValueError(f"--input: {word!r} has characters outside the model's letters: {unknown}")
    src, src_lengths = task.src_vocab.encode([word], max_len=task.S)
    tokens = np.asarray(model.translate(src, src_lengths, task.T))  # [1, T]
    phonemes = task.tgt_vocab.decode(tokens, join=" ")[0].split()
    tgt_in, _ = task.tgt_vocab.encode([phonemes], add_bos=True)  # [1, n + 1]
    _, w = model(src[:, : len(word)], src_lengths, tgt_in, return_attention=True)
    rows = [*phonemes, "<eos>"]
    letters = list(word)
    paths = [os.path.join(out, "cross_attention.png"), os.path.join(out, "decoder_self_attention.png")]
    plot_attention_grid(np.asarray(w["cross"])[:, 0], rows, letters, paths[0],
                        title=f"{word} -> {' '.join(phonemes)}: cross-attention", row_name="output phoneme",
                        col_name="letter")
    plot_attention_grid(np.asarray(w["self"])[:, 0], rows, ["<bos>", *phonemes], paths[1],
                        title=f"{word} -> {' '.join(phonemes)}: decoder self-attention",
                        row_name="output phoneme", col_name="decoder input")
    return paths


def render_translation(task, model, text: str, out: str, target_ids=None) -> list[str]:
    """Translate `text` (greedy, unless `target_ids` gives the output, BOS dropped), then draw the
    cross-attention of the teacher-forced pass over that output: alignment.png and cross_attention.png."""
    if not hasattr(model, "project_memory"):
        raise ValueError("--workdir: this translation run trained a recurrent model; attention maps need "
                         "a transformer (model_name 'encoder_decoder')")
    src, src_lengths, src_labels = task.encode_source(text)
    if target_ids is None:
        target_ids = np.asarray(model.translate(src, src_lengths, task.T))[0]
    hyp, tgt_labels = task.decode_target(target_ids)
    ids = np.asarray(target_ids)[: len(tgt_labels)]
    tgt_in = np.array([[model.bos_id, *ids]], np.int32)  # [1, n + 1]
    _, w = model(src, src_lengths, tgt_in, return_attention=True)
    cross = np.asarray(w["cross"])[:, 0]  # [L, N, n + 1, S]
    rows = [*tgt_labels, "<eos>"]
    # Each output word's link: the source word (not the source's EOS) it attends to most.
    n, words = len(tgt_labels), [*range(len(src_labels) - 1), -1]
    links = [alignment.hard_alignment(a[:n], src_words=words) for a in cross.mean(axis=1)]
    paths = [os.path.join(out, "alignment.png"), os.path.join(out, "cross_attention.png")]
    plot_alignment(cross.mean(axis=1), rows, src_labels, paths[0], title=f"{text} -> {hyp}", links=links)
    plot_attention_grid(cross, rows, src_labels, paths[1], title=f"{text} -> {hyp}: cross-attention",
                        row_name="output token", col_name="source token")
    return paths


def load_image(path: str, shape: tuple[int, int]) -> np.ndarray:
    """Image [H, W] with pixel values 0..255 from a .npy (stored as 0..255) or an image file (PNG read by
    matplotlib as 0..1 and rescaled); colour is averaged to grey; its size must be `shape`."""
    if path.endswith(".npy"):
        img = np.load(path)
    else:
        import matplotlib.image

        img = matplotlib.image.imread(path)
        if img.dtype != np.uint8 and img.max() <= 1.0:
            img = img * 255.0
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 3:  # colour or a trailing channel axis: average to grey
        img = img[..., :3].mean(axis=-1)
    if img.shape != tuple(shape):
        raise ValueError(f"--image: expected a {shape[0]} x {shape[1]} grey-scale image (the model's input), "
                         f"got shape {img.shape} from {path}")
    return img


def render_vit(task, model, out: str, index: int | None = None, image_path: str | None = None) -> list[str]:
    H, W, _ = task.image_shape
    if image_path:
        raw = load_image(image_path, (H, W))
        x = task.normalizer(raw[None])  # pixel values 0..255, standardised like the training images
        label = None
        name = os.path.basename(image_path)
    else:
        test = task.data()["test"]
        index = 0 if index is None else index
        if not 0 <= index < len(test["label"]):
            raise ValueError(f"--index: expected 0 <= index < {len(test['label'])}, got {index}")
        x = test["image"][index: index + 1]
        label = int(test["label"][index])
        name = f"test image {index}"
    logits, w = model(x, return_attention=True)  # w [L, 1, N, 1 + P, 1 + P]
    roll = attention_rollout(np.asarray(w))[0]  # [1 + P, 1 + P]
    gh, gw = H // model.patch_size[0], W // model.patch_size[1]
    heat = roll[0, 1:].reshape(gh, gw)  # the class token's row over the patches
    pred = int(np.argmax(np.asarray(logits)[0]))
    names = task.class_names
    title = f"{name}: predicted {names[pred]}" + ("" if label is None else f", true {names[label]}")
    path = os.path.join(out, "rollout.png")
    plot_rollout(np.asarray(x[0, :, :, 0]), heat, path, title=title)
    return [path]


def render(workdir: str, out: str, text: str | None = None, index: int | None = None,
           image: str | None = None) -> list[str]:
    """Render the attention pictures of the run in `workdir` into `out`; returns the PNG paths."""
    from seqjax.task import load_run

    config, task, model = load_run(workdir, TASKS)
    os.makedirs(out, exist_ok=True)
    if config.task == "image_classification":
        return render_vit(task, model, out, index=index, image_path=image)
    if text is None:
        raise ValueError(f"--input: required for a {config.task} run")
    if config.task == "sentiment":
        return render_sentiment(task, model, text, out, int(config.data.max_len))
    if config.task == "char_lm":
        return render_char_lm(task, model, text, out)
    if config.task == "translation":
        return render_translation(task, model, text, out)
    return render_g2p(task, model, text, out)


PROG = "python -m seqjax.viz"
FLAGS = cli.new_flags()
flags.DEFINE_string("workdir", None, "A training run's workdir.", flag_values=FLAGS)
flags.DEFINE_string("out", None, "Folder for the PNGs.", flag_values=FLAGS)
flags.DEFINE_string("input", None, "Text (sentiment, char_lm, translation) or a word (g2p).",
                    flag_values=FLAGS)
flags.DEFINE_integer("index", None, "ViT: index of a test image.", flag_values=FLAGS)
flags.DEFINE_string("image", None, "ViT: an image file (.npy with 0..255 pixels, or .png) of the model's "
                    "input size.", flag_values=FLAGS)


def main(argv: list[str] | None = None) -> int:
    """argv without the program name (None: sys.argv[1:]); returns the exit status."""
    try:
        if not cli.parse(FLAGS, sys.argv[1:] if argv is None else argv, PROG, __doc__):
            return 0
        for name in ("workdir", "out"):
            if not FLAGS[name].value:
                raise cli.UsageError(f"--{name} is required")
        paths = render(FLAGS.workdir, FLAGS.out, text=FLAGS.input, index=FLAGS.index, image=FLAGS.image)
    except (cli.UsageError, ValueError, FileNotFoundError) as e:
        return cli.fail(PROG, str(e))
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
