"""Translation experiments: each smoke variant end to end (trainer, evaluation, baselines, AER, files), the
translate CLI on a trained run, and the subword models kept in the workdir."""
import json
import pathlib

import helpers_train  # noqa: F401  (repository root on sys.path, persistent compilation cache)
import numpy as np
import pytest
from test_experiments_transformer import load_config, run

from seqjax import translate
from seqjax.task import build_task, load_run

pytest.importorskip("pyrealb")


def test_translate_pyrealb_smoke_and_cli(tmp_path, capsys):
    final = run("translate_pyrealb", tmp_path)
    layers = load_config("translate_pyrealb", "smoke").model.num_decoder_layers
    for split in ("val", "test"):
        assert 0.0 <= final[f"{split}_exact_match"] <= 1.0 and 0.0 <= final[f"{split}_bleu"] <= 100.0
        aer = [final[f"{split}_aer_layer{l}"] for l in range(layers)]
        assert all(0.0 <= a <= 1.0 for a in aer) and final[f"{split}_aer_best_layer"] == min(aer)
        heads = [final[f"{split}_aer_layer{l}_best_head"] for l in range(layers)]
        assert final[f"{split}_aer_best_head"] == min(heads)  # a head may align worse than the average
        assert final[f"{split}_copy_bleu"] < 100.0 and 0.0 <= final[f"{split}_ibm1_aer"] <= 1.0
    rows = [json.loads(line) for line in (tmp_path / "test_sentences.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {"source", "hypothesis", "reference", "bleu", "chrf"} <= set(rows[0])
    for name in ("aer_by_layer.png", "aer_over_steps.png"):
        assert (tmp_path / name).stat().st_size > 1000
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "val/aer_layer0" in r] == [3, 6]  # periodic, then final

    # The CLI: n-best with scores (best first), and the alignment picture of the best translation.
    out = tmp_path / "cli"
    capsys.readouterr()  # the training log
    assert translate.main([f"--workdir={tmp_path}", "--text=The big red dog barks.", "--beam_size=2",
                           "--nbest=2", f"--out={out}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    scores = [float(line.split("(score ")[1].rstrip(")")) for line in lines[:2]]
    assert lines[0].startswith("1. ") and lines[1].startswith("2. ") and scores[0] >= scores[1]
    assert sorted(pathlib.Path(p).name for p in lines[2:]) == ["alignment.png", "cross_attention.png"]
    assert (out / "alignment.png").stat().st_size > 1000
    assert translate.main([f"--workdir={tmp_path}", "--text=The big zebra barks."]) == 2
    assert "zebra" in capsys.readouterr().err


def test_translate_bible_smoke_keeps_its_subword_models(tmp_path):
    final = run("translate_bible", tmp_path)
    assert final["test_bleu"] >= 0.0 and final["test_ibm1_bleu"] > 0.0 and final["test_copy_chrf"] > 0.0
    assert "test_exact_match" not in final and "test_aer_layer0" not in final
    models = {s: (tmp_path / f"subword_{s}.model").read_bytes() for s in ("en", "fr")}
    _, task, _ = load_run(str(tmp_path), ("translation",))
    assert {s: task.tokenizers[s].model_bytes for s in models} == models
    # A run's own models win over freshly trained ones: other models in the workdir re-encode the data.
    other = load_config("translate_bible", "smoke")
    other.data.vocab_size = 120
    task120 = build_task(other)
    task120.use_workdir(str(tmp_path))
    assert task120.model_args()["tgt_vocab_size"] == 100
    np.testing.assert_array_equal(task120.data()["train"]["src"], task.data()["train"]["src"])
    (tmp_path / "subword_fr.model").unlink()
    with pytest.raises(FileNotFoundError, match="companion"):
        task120.use_workdir(str(tmp_path))


def test_translate_bible_rnn_smoke(tmp_path):
    final = run("translate_bible_rnn", tmp_path)
    assert 0.0 <= final["test_bleu"] <= 100.0 and final["test_bleu"] == final["test_bleu_greedy"]
    assert "test_aer_layer0" not in final
