"""Each recurrent-family experiment's smoke variant, end to end through the trainer (tiny data, few steps)."""
import importlib.util
import json
import os
import pathlib

import numpy as np
import pytest

from seqjax import tasks, train

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str, variant: str):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def run(name, variant, tmp_path, **overrides):
    config = load_config(name, variant)
    config.train.parallel = "none"  # the trainer's device tests cover the mesh; keep these fast
    for key, value in overrides.items():
        node = config
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
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


@pytest.mark.parametrize("name, variant", [("stocks", "smoke,gru,h3"), ("weather", "smoke")])
def test_forecast_smoke(name, variant, tmp_path):
    final = run(name, variant, tmp_path)
    for k in ("test_model_mae", "test_persistence_mae", "test_linear_ar_mae", "test_mae_vs_persistence"):
        assert k in final
    assert final["test_mae_vs_persistence"] == pytest.approx(final["test_model_mae"] /
                                                             final["test_persistence_mae"] - 1)
    assert (tmp_path / f"{name}_test_predictions.png").stat().st_size > 1000
    if name == "stocks":
        assert "test_model_price_mae" in final


def test_sentiment_smoke(tmp_path):
    final = run("sentiment_rnn", "smoke,gru", tmp_path)
    assert 0.0 <= final["test_accuracy"] <= 1.0 and "test_naive_bayes_accuracy" in final
    assert (tmp_path / "sentiment_embeddings_pca.png").exists()


def test_g2p_smoke(tmp_path):
    final = run("g2p_rnn", "smoke", tmp_path)
    assert 0.0 <= final["test_wer"] <= 1.0 and final["test_per"] >= 0.0
    assert 0.0 <= final["test_wer_any"] <= final["test_wer"]  # a first-pronunciation match is a match
    examples = json.loads((tmp_path / "g2p_examples.json").read_text())["examples"]["test"]
    assert examples and {"word", "ref", "hyp"} <= set(examples[0])


def test_patterns_learn_with_loose_thresholds(tmp_path):
    # A slightly longer run than the smoke variant so that every pattern must beat chance.
    final = run("patterns", "smoke", tmp_path,
                **{"train.steps": 150, "optim.lr": 1e-2, "model.hidden_size": 24})
    assert os.path.exists(tmp_path / "patterns_results.md")
    assert final["test_one_to_many_mse"] < final["test_one_to_many_baseline"]
    assert final["test_many_to_many_accuracy"] > final["test_many_to_many_baseline"]
    assert final["test_many_to_one_accuracy"] > final["test_many_to_one_baseline"]
