"""Transformer-family experiments: each smoke variant end to end through the trainer, and the models their
configs build against slow references (full recomputation for cached sampling and generation, truncation for
padding)."""
import importlib.util
import json
import pathlib

import helpers_train  # noqa: F401  (repository root on sys.path, persistent compilation cache)
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax import configs, models, tasks, train, viz
from seqjax.models import gpt

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str, variant: str):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def run(name, tmp_path):
    config = load_config(name, "smoke")
    summary = train.train_and_evaluate(config, str(tmp_path), experiment=name)
    assert summary["status"] == "completed" and summary["steps"] == config.train.steps
    assert json.loads((tmp_path / "summary.json").read_text())["final"] == pytest.approx(summary["final"])
    assert all(np.isfinite(v) for v in summary["final"].values())
    # The task's headline (summary.json) shows a line for each figure its report has, each with every
    # declared baseline: a typo in a HEADLINE key would silently drop a line or a comparison.
    head = json.loads((tmp_path / "summary.json").read_text())["headline"]
    figures = [f for f in tasks.get(config.task).HEADLINE if f.key in summary["final"] and
               (f.only_if is None or summary["final"][f.only_if[0]] == f.only_if[1])]
    assert figures and len(head["lines"]) == len(figures) == len(head["metrics"])
    for f, m in zip(figures, head["metrics"], strict=True):
        assert m["name"] == f.key and sorted(m["baselines"]) == sorted(k for k, _ in f.baselines)
    return summary["final"]


def test_char_gpt_smoke(tmp_path):
    final = run("char_gpt", tmp_path)
    # A few steps cannot beat the bigram model; the loss is per character and must sit near log(V) or below.
    assert 0.0 < final["val_nats_per_char"] < np.log(80) + 0.5
    assert final["baseline_bigram_nats"] < final["baseline_unigram_nats"] < np.log(80)
    assert (tmp_path / "sample.txt").read_text().startswith("ROMEO:\n")
    assert len((tmp_path / "sample.txt").read_text()) == len("ROMEO:\n") + 20


def test_sentiment_transformer_smoke(tmp_path):
    final = run("sentiment_transformer", tmp_path)
    assert 0.0 <= final["test_accuracy"] <= 1.0 and "test_naive_bayes_accuracy" in final
    paths = viz.render(str(tmp_path), str(tmp_path / "viz"), text="The big red dog")
    assert [pathlib.Path(p).name for p in paths] == ["self_attention.png"]
    assert pathlib.Path(paths[0]).stat().st_size > 1000


def test_g2p_transformer_smoke(tmp_path):
    final = run("g2p_transformer", tmp_path)
    assert 0.0 <= final["test_wer"] <= 1.0 and final["test_per"] >= 0.0 and final["beam_size"] == 2
    assert 0.0 <= final["test_wer_any"] <= final["test_wer"]
    paths = viz.render(str(tmp_path), str(tmp_path / "viz"), text="dog")
    names = sorted(pathlib.Path(p).name for p in paths)
    assert names == ["cross_attention.png", "decoder_self_attention.png"]
    with pytest.raises(ValueError, match=r"--input: 'big dog' has characters outside .*letters: \[' '\]"):
        viz.render(str(tmp_path), str(tmp_path / "viz"), text="big dog")


def test_vit_smoke(tmp_path):
    final = run("vit", tmp_path)
    assert 0.0 <= final["test_accuracy"] <= 1.0
    assert final["dataset_is_fashion_mnist"] in (0.0, 1.0)
    dataset = json.loads((tmp_path / "dataset.json").read_text())["dataset"]
    assert dataset in ("fashion_mnist", "mnist_digits_5k")


# ---------------------------------------------------------------------------------------------------------
# The models the experiments' configs build, against references
# ---------------------------------------------------------------------------------------------------------


def build_model(name: str, data_args: dict, **overrides):
    """The model of experiments/<name>.py's smoke config (`config.model`, with overrides), built as the
    trainer builds it: `configs.construct` with the data arguments a task would supply."""
    config = load_config(name, "smoke")
    for key, value in overrides.items():
        config.model[key] = value
    return configs.construct(models.get(config.model_name), "model", config.model, rngs=nnx.Rngs(0),
                             **data_args)


def test_generate_long_matches_full_recomputation():
    model = build_model("char_gpt", {"vocab_size": 11}, num_layers=2, max_len=8)
    assert isinstance(model, gpt.GPT) and model.max_len == 8
    prompt = [3, 1, 4]
    got = gpt.generate_long(model, prompt, 13)  # greedy: key=None
    # Reference: the same windows (first the prompt, then the last max_len // 2 tokens), each new token the
    # argmax of a full forward pass over the window's context plus what it generated so far. The pass runs on
    # the sequence right-padded to max_len (one compiled shape); causality makes the padding irrelevant.
    forward = nnx.jit(lambda m, x: m(x))
    ids, out, window = list(prompt), [], 0
    while len(out) < 13:
        context = ids if window == 0 else (ids + out)[-4:]
        new = []
        for _ in range(8 + 1 - len(context)):
            seq = context + new
            logits = forward(model, jnp.asarray([seq + [0] * (8 - len(seq))], jnp.int32))
            new.append(int(jnp.argmax(logits[0, len(seq) - 1])))
        out += new
        window += 1
    np.testing.assert_array_equal(got, np.array(out[:13]))
    # A prompt longer than the position table starts from its last max_len // 2 tokens.
    long = gpt.generate_long(model, list(range(10)), 3)
    ref = gpt.generate_long(model, list(range(6, 10)), 3)
    np.testing.assert_array_equal(long, ref)
    sampled = gpt.generate_long(model, prompt, 13, key=jax.random.PRNGKey(1), temperature=1.0, top_k=3)
    assert sampled.shape == (13,) and sampled.min() >= 0 and sampled.max() < 11
    with pytest.raises(ValueError, match="prompt_ids: need at least one token"):
        gpt.generate_long(model, [], 3)


def test_g2p_translate_matches_greedy_loop():
    # The G2P task uses the EncoderDecoder directly: (src, src_lengths, tgt_in) teacher forcing and translate;
    # pad/bos/eos ids come from the task's data (tokenize.CharVocab: pad 0, bos 1, eos 2).
    data_args = {"src_vocab_size": 9, "tgt_vocab_size": 7, "pad_id": 0, "bos_id": 1, "eos_id": 2}
    model = build_model("g2p_transformer", data_args, num_encoder_layers=1, num_decoder_layers=2,
                        max_src_len=8, max_tgt_len=8)
    src = jnp.array([[3, 4, 5, 6, 0], [7, 8, 0, 0, 0]], jnp.int32)
    lengths = jnp.array([4, 2], jnp.int32)
    got = np.asarray(model.translate(src, lengths, 5))
    assert got.shape == (2, 5)
    forward = nnx.jit(lambda m, s, n, t: m(s, n, t))
    for b in range(2):
        tgt = [1]  # BOS; the decoder is causal, so right-padding the target to 5 changes no earlier logits
        for _ in range(5):
            padded = jnp.asarray([tgt + [0] * (5 - len(tgt))], jnp.int32)
            logits = forward(model, src[b:b + 1], lengths[b:b + 1], padded)
            tgt.append(int(jnp.argmax(logits[0, len(tgt) - 1])))
        ref = np.array(tgt[1:])
        if 2 in ref:  # after EOS (id 2) generation emits padding (id 0)
            first = int(np.argmax(ref == 2))
            ref[first + 1:] = 0
        np.testing.assert_array_equal(got[b], ref)
    beam1 = np.asarray(model.translate(src, lengths, 5, beam_size=1))
    np.testing.assert_array_equal(beam1, got)
    assert np.asarray(model.translate(src, lengths, 5, beam_size=3)).shape == (2, 5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_sentiment_classifier_ignores_padding(pooling):
    # The task also offers unk_id, which the classifier does not take (configs.construct passes only its own).
    data_args = {"vocab_size": 20, "num_classes": 2, "unk_id": 1}
    model = build_model("sentiment_transformer", data_args, num_layers=2, max_len=16, pooling=pooling)
    tokens = jnp.array([[5, 6, 7, 0, 0, 0], [8, 9, 10, 11, 12, 13]], jnp.int32)
    lengths = jnp.array([3, 6], jnp.int32)
    forward = nnx.jit(lambda m, x, n: m(x, n))
    logits = forward(model, tokens, lengths)
    assert logits.shape == (2, 2)
    changed = tokens.at[0, 3:].set(19)  # different tokens under the padding
    np.testing.assert_allclose(forward(model, changed, lengths), logits, atol=1e-5)
    truncated = forward(model, tokens[:1, :3], lengths[:1])  # the first row alone, without its padding
    np.testing.assert_allclose(truncated, logits[:1], atol=1e-5)


def test_vit_checks_image_size():
    model = build_model("vit", {"num_classes": 10, "image_size": (28, 28), "channels": 1})
    assert model(jnp.zeros((2, 28, 28, 1))).shape == (2, 10)
    with pytest.raises(ValueError, match=r"images: expected \[B, 28, 28, 1\], got \(2, 32, 32, 1\)"):
        model(jnp.zeros((2, 32, 32, 1)))
