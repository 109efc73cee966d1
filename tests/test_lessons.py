"""Every lesson in lessons/ runs (in-process, each in a fresh namespace, so JAX is imported once) and prints
the numbers the course shows; a few of them are checked here. Figures go to a temporary folder."""
import contextlib
import io
import pathlib
import re
import runpy

import helpers_train  # noqa: F401  (repository root on sys.path, persistent compilation cache)
import numpy as np
import pytest

LESSONS = pathlib.Path(__file__).resolve().parents[1] / "lessons"
FILES = sorted(LESSONS.glob("[0-9][0-9]_*.py"))


def run_lesson(name: str, tmp_path, monkeypatch) -> tuple[str, dict]:
    monkeypatch.setenv("SEQJAX_LESSON_FIGURES", str(tmp_path))
    (path,) = [f for f in FILES if f.name.startswith(name)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        namespace = runpy.run_path(str(path), run_name="__main__")
    return out.getvalue(), namespace


def value(text: str, label: str) -> float:
    """The number printed after `label =` (the first match)."""
    match = re.search(re.escape(label) + r"\s*=\s*([-+0-9.eE]+|nan)", text)
    assert match, f"{label!r} not printed in:\n{text}"
    return float(match.group(1))


def test_every_lesson_is_listed_in_order():
    assert [f.name[:2] for f in FILES] == [f"{i:02d}" for i in range(1, 14)]
    readme = (LESSONS / "README.md").read_text()
    for f in FILES:
        assert f.name in readme


def test_01_time_series(tmp_path, monkeypatch):
    text, ns = run_lesson("01", tmp_path, monkeypatch)
    assert ns["table"].shape == (4, 5) and ns["returns"].shape == (4, 4)
    np.testing.assert_allclose(ns["returns"], np.log(ns["table"][:, 1:] / ns["table"][:, :-1]))
    assert "model input xs [B, T, D] = (4, 4, 1)" in text
    assert (tmp_path / "01_time_series.png").exists()


def test_02_words_as_vectors(tmp_path, monkeypatch):
    text, ns = run_lesson("02", tmp_path, monkeypatch)
    assert "tokens = ['i', 'am', 'learning', '.']" in text
    assert value(text, "max |one_hot @ table - lookup|") == 0.0
    assert ns["ids"][1, 3] == ns["tok"].unk_id  # the unseen word


def test_03_recurrent_neuron(tmp_path, monkeypatch):
    text, _ = run_lesson("03", tmp_path, monkeypatch)
    assert value(text, "max |loop - scan|") < 1e-6
    assert "h_4 =" in text and "final state equals the last output: True" in text


def test_04_rnn_patterns(tmp_path, monkeypatch):
    text, _ = run_lesson("04", tmp_path, monkeypatch)
    for line in ("one-to-one:              in (2, 3) -> out (2, 4)",
                 "one-to-many:             in (2, 3) -> out (2, 5, 4)",
                 "many-to-one:             in (2, 5, 3) -> out (2, 4)",
                 "many-to-many (aligned):  in (2, 5, 3) -> out (2, 5, 4)",
                 "encoder-decoder:         in (2, 6) + (2, 4) -> out (2, 4, 13)"):
        assert line in text


def test_05_gates(tmp_path, monkeypatch):
    text, ns = run_lesson("05", tmp_path, monkeypatch)
    assert value(text, "LSTM max |hand - seqjax.cells|") < 1e-6
    assert value(text, "GRU max |hand - seqjax.cells|") < 1e-6
    for gate in ("i", "f", "o", "r", "z"):
        assert 0.0 < float(ns[gate].min()) and float(ns[gate].max()) < 1.0


def test_06_sentiment(tmp_path, monkeypatch):
    text, ns = run_lesson("06", tmp_path, monkeypatch)
    assert ns["last_loss"] < ns["first_loss"]
    np.testing.assert_allclose(ns["probs"].sum(axis=1), 1.0, rtol=1e-5)
    assert text.count("P(neg), P(pos) =") == 3


def test_07_embedding_space(tmp_path, monkeypatch):
    text, ns = run_lesson("07", tmp_path, monkeypatch)
    np.testing.assert_allclose(np.diag(ns["cosine"]), 1.0, rtol=1e-5)
    np.testing.assert_allclose(ns["cosine"], ns["cosine"].T, atol=1e-6)
    assert ns["coords"].shape == (8, 2)
    assert value(text, "cos(good, great)") > value(text, "cos(good, bad)")


def test_08_transformer_block(tmp_path, monkeypatch):
    text, _ = run_lesson("08", tmp_path, monkeypatch)
    assert value(text, "max |by hand - block(x)|") < 1e-5
    assert "MLP hidden (after GELU)    (1, 4, 32)" in text and "stack output [B, T, D] = (1, 4, 8)" in text


def test_09_attention_qkv(tmp_path, monkeypatch):
    text, ns = run_lesson("09", tmp_path, monkeypatch)
    assert value(text, "max |hand out - library out|") < 1e-6
    assert value(text, "max |hand weights - library weights|") < 1e-6
    assert "'dog' attends most to: big" in text
    np.testing.assert_allclose(ns["weights"].sum(axis=1), 1.0)


def test_10_multi_head_attention(tmp_path, monkeypatch):
    text, _ = run_lesson("10", tmp_path, monkeypatch)
    assert value(text, "max |by hand - multi_head_attention|") < 1e-5
    assert "concatenated heads [T, N * K] = (3, 8)" in text


def test_11_causal_masks(tmp_path, monkeypatch):
    text, ns = run_lesson("11", tmp_path, monkeypatch)
    assert value(text, "above the diagonal max") == 0.0
    assert value(text, "causal output change before the last token") == 0.0
    assert float(ns["enc_change"].min()) > 0.0  # bidirectional: every position sees the last token
    np.testing.assert_array_equal(np.asarray(ns["causal"][0, 0]), np.tril(np.ones((4, 4), bool)))


def test_12_transformer_types(tmp_path, monkeypatch):
    _, ns = run_lesson("12", tmp_path, monkeypatch)
    assert list(ns["shapes"].values()) == [(2, 2), (2, 5, 50), (2, 5, 50)]
    assert all(n > 0 for n in ns["params"].values())


def test_13_vit_patches(tmp_path, monkeypatch):
    text, _ = run_lesson("13", tmp_path, monkeypatch)
    assert "patches [B, P, ph * pw * C] = (1, 16, 49)" in text
    assert "round trip exact: True" in text
    assert "ViT logits [B, classes] = (1, 10)" in text


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_lessons_are_percent_format(path):
    text = path.read_text()
    assert text.startswith("# %% [markdown]\n# # ")
    assert "\n# %%\n" in text
