"""The translation task's final report (`TranslationTask.evaluate`): decoding, scores, alignments, baselines.

For val and test:
- greedy and beam decoding (`model.translate`, the shared `decoding.beam_search` for the transformer),
  detokenised, scored with sacrebleu: `<split>_bleu`, `<split>_chrf` (beam), `<split>_bleu_greedy`,
  `<split>_chrf_greedy`; pyrealb also `<split>_exact_match` (the whole sentence right, word for word);
- per-sentence BLEU/chrF of the beam output in `<split>_sentences.jsonl` (translation_metrics);
- baselines: `<split>_copy_bleu` (the source as its translation) and `<split>_ibm1_bleu` (IBM Model 1 word by
  word, fitted on the training pairs' words), with chrF and, on pyrealb, exact match and the Viterbi AER;
- pyrealb: the AER of each decoder layer's cross-attention under teacher forcing (each target word linked to
  its argmax source word, seqjax.alignment), head-averaged (`<split>_aer_layer<l>`) and its best head
  (`<split>_aer_layer<l>_best_head`), the best of each over layers, figures `aer_by_layer.png` and (from the
  periodic val evaluations in metrics.jsonl) `aer_over_steps.png`.
"""
from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np

from seqjax import alignment, metrics_io
from seqjax.task import predict


def run_model(task, model, splits: dict, names: list[str], batch_size: int = 128) -> dict[str, dict]:
    """Every row of the named splits in one jitted pass (one compilation): {name: {"greedy", "beam": [(text,
    tokens)], "cross": teacher-forced cross-attention [N, L, N_heads, T, S] (transformers only)}}."""
    W, attends = task.beam_size, hasattr(model, "project_memory")

    def fn(m, b):
        out = {"greedy": m.translate(b["src"], b["src_lengths"], task.T)}
        if W > 1:
            out["beam"] = m.translate(b["src"], b["src_lengths"], task.T, beam_size=W)
        if attends:
            _, w = m(b["src"], b["src_lengths"], b["tgt_in"], return_attention=True)
            out["cross"] = jnp.moveaxis(w["cross"], 0, 1)  # [L, B, N, T, S] -> [B, L, N, T, S]
        return out

    keys = ("src", "src_lengths", "tgt_in")
    got = predict(fn, model, {k: np.concatenate([splits[n][k] for n in names]) for k in keys}, batch_size)
    result, start = {}, 0
    for n in names:
        rows = slice(start, start + len(splits[n]["src"]))
        start = rows.stop
        greedy = [task.decode_target(r) for r in got["greedy"][rows]]
        result[n] = {"greedy": greedy,
                     "beam": [task.decode_target(r) for r in got["beam"][rows]] if W > 1 else greedy}
        if attends:
            result[n]["cross"] = got["cross"][rows]
    return result


def attention_aer(weights: np.ndarray, split: dict) -> dict[str, float]:
    """Corpus AER of weights [N, L, N_heads, T, S] against the split's gold links, per layer (head-averaged)
    and per layer's best head, plus the best of each."""
    T, S = weights.shape[-2:]
    words = np.arange(T)[None] < (split["tgt_lengths"] - 1)[:, None]  # [N, T]: EOS and padding unaligned
    src_words = np.arange(S)[None] < (split["src_lengths"] - 1)[:, None]  # [N, S]: the source EOS neither

    def aer(w):
        return float(alignment.aer_from_counts(*np.asarray(
            alignment.aer_counts(w, split["sure"], split["possible"], words, src_words))))

    out = {}
    for layer in range(weights.shape[1]):
        out[f"aer_layer{layer}"] = aer(weights[:, layer].mean(axis=1))
        out[f"aer_layer{layer}_best_head"] = min(aer(weights[:, layer, n]) for n in range(weights.shape[2]))
    out["aer_best_layer"] = min(v for k, v in out.items() if not k.endswith("head"))
    out["aer_best_head"] = min(v for k, v in out.items() if k.endswith("best_head"))
    return out


def _ibm1(task):
    from seqjax.data.tokenize import split_words
    from seqjax.translation_baselines import IBMModel1

    if task.tokenizers:
        pairs = [(split_words(p.en), split_words(p.fr)) for p in task.pairs["train"]]
    else:
        pairs = [(list(p.en), list(p.fr)) for p in task.pairs["train"]]
    return IBMModel1().fit(pairs, iterations=10)


def _ibm1_outputs(task, ibm, name: str) -> tuple[list[str], list[list[str]]]:
    from seqjax.data.tokenize import join_words, split_words

    if task.tokenizers:
        words = [ibm.translate_words(split_words(s)) for s in task.sources[name]]
        return [join_words(w) for w in words], words
    from seqjax.data.pyrealb_corpus import detokenize

    words = [ibm.translate_words(list(p.en)) for p in task.pairs[name]]
    return [detokenize(w) for w in words], words


def evaluate(task, model, splits, workdir: str) -> dict[str, float]:
    from seqjax.translation_baselines import copy_source
    from seqjax.translation_metrics import alignment_error_rate, corpus_scores, write_sentence_scores

    os.makedirs(workdir, exist_ok=True)
    pyrealb = task.corpus == "pyrealb"
    ibm = _ibm1(task)
    out, examples = {"beam_size": float(task.beam_size)}, {}
    names = [n for n in ("val", "test") if n in splits]
    decoded = run_model(task, model, splits, names)
    for name in names:
        refs, srcs = task.references[name], task.sources[name]
        greedy, beam = decoded[name]["greedy"], decoded[name]["beam"]
        hyps = [h for h, _ in beam]
        for suffix, outputs in (("", beam), ("_greedy", greedy)):
            scores = corpus_scores([h for h, _ in outputs], refs)
            out[f"{name}_bleu{suffix}"], out[f"{name}_chrf{suffix}"] = scores.bleu, scores.chrf
        write_sentence_scores(os.path.join(workdir, f"{name}_sentences.jsonl"), srcs, hyps, refs)
        copy = corpus_scores(copy_source(srcs), refs)
        out[f"{name}_copy_bleu"], out[f"{name}_copy_chrf"] = copy.bleu, copy.chrf
        ibm_text, ibm_words = _ibm1_outputs(task, ibm, name)
        scores = corpus_scores(ibm_text, refs)
        out[f"{name}_ibm1_bleu"], out[f"{name}_ibm1_chrf"] = scores.bleu, scores.chrf
        if pyrealb:
            gold = [list(p.fr) for p in task.pairs[name]]
            for suffix, outputs in (("", beam), ("_greedy", greedy)):
                out[f"{name}_exact_match{suffix}"] = float(np.mean([w == g for (_, w), g in
                                                                     zip(outputs, gold, strict=True)]))
            out[f"{name}_ibm1_exact_match"] = float(np.mean([w == g for w, g in
                                                              zip(ibm_words, gold, strict=True)]))
            out[f"{name}_ibm1_aer"] = alignment_error_rate([ibm.align(p.en, p.fr) for p in task.pairs[name]],
                                                           [p.align for p in task.pairs[name]],
                                                           [p.possible for p in task.pairs[name]])
            if "cross" in decoded[name]:  # a transformer: its cross-attention per layer and head
                aer = attention_aer(decoded[name]["cross"], splits[name])
                out.update({f"{name}_{k}": v for k, v in aer.items()})
        examples[name] = [{"source": s, "reference": r, "hypothesis": h, "greedy": g}
                          for s, r, h, (g, _) in list(zip(srcs, refs, hyps, greedy, strict=True))[:30]]
    metrics_io.write_json(os.path.join(workdir, "translation_examples.json"),
                          {"metrics": out, "examples": examples})
    if pyrealb and "test_aer_layer0" in out:
        plot_aer_by_layer(out, os.path.join(workdir, "aer_by_layer.png"))
        plot_aer_over_steps(os.path.join(workdir, "metrics.jsonl"),
                            os.path.join(workdir, "aer_over_steps.png"))
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_aer_by_layer(final: dict[str, float], path: str, split: str = "test") -> str:
    """Bars of each layer's head-averaged and best-head AER, with IBM Model 1's as a line."""
    L = sum(1 for k in final if k.startswith(f"{split}_aer_layer") and not k.endswith("head"))
    avg = [100 * final[f"{split}_aer_layer{l}"] for l in range(L)]
    best = [100 * final[f"{split}_aer_layer{l}_best_head"] for l in range(L)]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * L + 3, 3.2))
    x = np.arange(L)
    ax.bar(x - 0.2, avg, 0.4, label="heads averaged")
    ax.bar(x + 0.2, best, 0.4, label="best head")
    if f"{split}_ibm1_aer" in final:
        ax.axhline(100 * final[f"{split}_ibm1_aer"], color="k", ls="--", lw=1, label="IBM Model 1")
    ax.set_xticks(x, [f"layer {l + 1}" for l in range(L)])
    ax.set_ylabel("AER (%)")
    ax.set_title(f"cross-attention AER per decoder layer ({split})")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_aer_over_steps(metrics_path: str, path: str) -> str | None:
    """Each layer's head-averaged val AER at the periodic evaluations (None if none was logged)."""
    if not os.path.exists(metrics_path):
        return None
    series = metrics_io.read_series(metrics_path)
    layers = sorted((k for k in series if k.startswith("aer_layer") and "val" in series[k]),
                    key=lambda k: int(k[len("aer_layer"):]))
    if not layers:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for k in layers:
        steps, values = series[k]["val"]
        ax.plot(steps, 100 * values, marker="o", ms=3, label=f"layer {int(k[len('aer_layer'):]) + 1}")
    ax.set_xlabel("step")
    ax.set_ylabel("val AER (%)")
    ax.set_title("when alignment emerges: head-averaged cross-attention AER")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path

