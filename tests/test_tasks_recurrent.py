"""Recurrent-family tasks and models, each against a slow, obvious reference.

Windows vs a Python loop; splits chronological and normalisation fitted on training rows only; linear AR vs
numpy.linalg.lstsq; edit distance / WER / PER vs hand-computed cases; naive Bayes vs hand counts; padded
sentences vs the same sentences truncated; teacher forcing vs stepping the decoder in a loop; greedy decoding
vs re-running the full model on each growing prefix; synthetic pattern data vs loops.
"""
import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqjax import patterns, task
from seqjax.models.forecaster import Forecaster
from seqjax.models.patterns import PatternModels
from seqjax.models.rnn_classifier import RNNClassifier
from seqjax.models.rnn_seq2seq import RNNSeq2Seq
from seqjax.tasks import forecast, g2p, sentiment
from seqjax.tasks import patterns as pattern_task

ROOT = pathlib.Path(__file__).resolve().parents[1]


def experiment_config(name, variant="smoke"):
    spec = importlib.util.spec_from_file_location(f"exp_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def experiment_task(name, variant="smoke"):
    return task.build_task(experiment_config(name, variant))


# ------------------------------------------------------------------------------------------ edit distance


@pytest.mark.parametrize("ref, hyp, expected", [
    ("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("flaw", "lawn", 2), ("same", "same", 0),
    (["K", "AE", "T"], ["K", "AH", "T"], 1), (["AH", "B"], ["B", "AH"], 2),
])
def test_edit_distance_hand_cases(ref, hyp, expected):
    assert g2p.edit_distance(ref, hyp) == expected
    assert g2p.edit_distance(hyp, ref) == expected


def test_wer_per_hand_computed():
    refs = [["K", "AE", "T"], ["D", "AO", "G"], ["AH"]]
    hyps = [["K", "AE", "T"], ["D", "AA", "G", "Z"], []]
    wer, per = g2p.wer_per(refs, hyps)
    assert wer == pytest.approx(2 / 3)  # two words have an error
    assert per == pytest.approx((0 + 2 + 1) / 7)  # substitution + insertion, deletion over 7 reference phones
    with pytest.raises(ValueError, match="refs, hyps"):
        g2p.wer_per(refs, hyps[:2])


def test_wer_any_counts_a_match_with_any_listed_pronunciation():
    alternates = [[["R", "EH", "D"], ["R", "IY", "D"]], [["K", "AE", "T"]], [["AH"], ["EY"]]]
    hyps = [["R", "IY", "D"], ["K", "AA", "T"], ["EY", "EY"]]
    assert g2p.wer_any(alternates, hyps) == pytest.approx(2 / 3)  # "read" matches its second entry
    assert g2p.wer_per([a[0] for a in alternates], hyps)[0] == 1.0  # first-pronunciation WER: all wrong
    with pytest.raises(ValueError, match="alternates, hyps"):
        g2p.wer_any(alternates, hyps[:1])


# ------------------------------------------------------------------------------------------------ forecasting


def test_make_windows_matches_a_loop():
    rng = np.random.default_rng(0)
    inputs, targets = rng.normal(size=(12, 3)), rng.normal(size=(12, 2))
    x, y, t0 = forecast.make_windows(inputs, targets, window=4, horizon=2)
    assert x.shape == (7, 4, 3) and y.shape == (7, 2, 2)
    for m in range(7):
        np.testing.assert_array_equal(x[m], inputs[m:m + 4])
        np.testing.assert_array_equal(y[m], targets[m + 4:m + 6])
        assert t0[m] == m + 4
    with pytest.raises(ValueError, match="window"):
        forecast.make_windows(inputs, targets, window=11, horizon=2)


def test_splits_are_chronological_and_disjoint():
    t0 = np.arange(4, 30)
    idx = forecast.assign_splits(t0, horizon=2, n_train=15, n_val_end=22)
    train_last = t0[idx["train"]] + 1
    assert train_last.max() < 15 <= t0[idx["val"]].min()
    assert (t0[idx["val"]] + 1).max() < 22 <= t0[idx["test"]].min()
    assert not set(idx["train"]) & set(idx["val"]) and not set(idx["val"]) & set(idx["test"])


def test_forecast_normalisation_is_fitted_on_training_rows_only():
    t = experiment_task("weather")
    s = t.series
    np.testing.assert_allclose(t.target_norm.mean, s.values[: t.n_train].mean(axis=0))
    np.testing.assert_allclose(t.target_norm.std, s.values[: t.n_train].std(axis=0))
    assert not np.allclose(t.target_norm.mean, s.values.mean(axis=0))  # the whole series would differ
    # Every training target precedes every validation target, which precedes every test target.
    dates = {k: s.dates[t.t0[i]] for k, i in t.index.items()}
    assert dates["train"].max() < dates["val"].min() and dates["val"].max() < dates["test"].min()
    # Persistence for levels is the last row the window saw, in natural units.
    test = t.data()["test"]
    last_seen = t.target_norm.invert(test["x"][:, -1, :4].astype(np.float64))
    np.testing.assert_allclose(t.persistence("test")[:, 0], last_seen, rtol=1e-5, atol=1e-4)


def test_stock_returns_map_back_to_prices():
    t = experiment_task("stocks")
    s = t.series
    t0 = t.t0[t.index["test"]]
    truth = t.target_norm.invert(t.data()["test"]["y"].astype(np.float64))[:, 0]  # [M, A] percent
    np.testing.assert_allclose(s.prices[t0] * np.exp(truth / 100), s.prices[t0 + 1], rtol=1e-5)
    np.testing.assert_array_equal(t.persistence("test"), 0.0)


def test_linear_ar_against_lstsq_and_a_known_process():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 3, 2))
    true = rng.normal(size=(6, 2))
    y = (x.reshape(400, 6) @ true + 0.5)[:, None, :]  # [M, 1, 2], exactly linear plus a bias
    coef = forecast.fit_linear_ar(x, y, ridge=0.0)
    X = np.concatenate([x.reshape(400, 6), np.ones((400, 1))], axis=1)
    np.testing.assert_allclose(coef, np.linalg.lstsq(X, y.reshape(400, 2), rcond=None)[0], atol=1e-8)
    np.testing.assert_allclose(coef[:6], true, atol=1e-8)
    np.testing.assert_allclose(forecast.predict_linear_ar(coef, x, 1), y, atol=1e-8)


def test_error_table_by_hand():
    pred = np.array([[[1.0, 10.0]], [[3.0, 10.0]]])
    truth = np.array([[[2.0, 12.0]], [[3.0, 6.0]]])
    t = forecast.error_table(pred, truth, ("a", "b"), std=np.array([1.0, 2.0]))
    assert t["mae_a"] == pytest.approx(0.5) and t["mae_b"] == pytest.approx(3.0)
    assert t["rmse_b"] == pytest.approx(np.sqrt((4 + 16) / 2))
    assert t["mae"] == pytest.approx((0.5 / 1 + 3.0 / 2) / 2)


def test_forecast_task_arguments_and_model_args():
    t = experiment_task("stocks", "smoke,h3")
    assert t.model_args() == {"num_inputs": 4, "num_outputs": 4, "horizon": 3}
    assert t.loss_name == "mse" and experiment_task("weather").loss_name == "mae"
    with pytest.raises(ValueError, match="loss"):
        forecast.ForecastTask(loss="huber")
    with pytest.raises(ValueError, match="dataset"):
        forecast.ForecastTask(dataset="sunspots")


def test_forecast_predict_equals_the_model_on_all_rows():
    t = experiment_task("weather")
    model = task.build_model(experiment_config("weather"), t, nnx.Rngs(0))
    x = t.data()["test"]["x"]
    got = t.predict(model, x, batch_size=64)  # several batches, the last one wrapped around
    np.testing.assert_allclose(got, t.target_norm.invert(np.asarray(model(jnp.asarray(x)), np.float64)),
                               rtol=1e-5, atol=1e-5)


def test_forecaster_shapes_and_dropout():
    model = Forecaster(3, 2, 4, hidden_size=8, cell="rnn", output_dropout=0.5, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 5, 3))
    y = model(x)
    assert y.shape == (2, 4, 2)
    np.testing.assert_array_equal(y, model(x))  # key=None: deterministic
    assert not np.allclose(model(x, key=jax.random.PRNGKey(0)), y)
    with pytest.raises(ValueError, match="x: expected a window"):
        model(jnp.ones((5, 3)))


# -------------------------------------------------------------------------------------------------- sentiment


@pytest.mark.parametrize("cell, bidirectional, pool", [("lstm", True, "max"), ("gru", True, "last")])
def test_sentiment_padding_equals_truncation(cell, bidirectional, pool):
    model = RNNClassifier(20, 2, 1, embed_dim=6, hidden_size=5, cell=cell, bidirectional=bidirectional,
                          pool=pool, rngs=nnx.Rngs(1))
    tokens = jnp.array([[3, 4, 5, 0, 0, 0], [6, 7, 8, 9, 10, 11]], jnp.int32)
    lengths = jnp.array([3, 6], jnp.int32)
    batched = model(tokens, lengths)
    for b in range(2):
        alone = model(tokens[b:b + 1, : int(lengths[b])], lengths[b:b + 1])
        np.testing.assert_allclose(batched[b], alone[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="token ids must lie in"):
        model(jnp.array([[3, 25]], jnp.int32), jnp.array([2], jnp.int32))


def test_naive_bayes_by_hand():
    # Vocabulary: 0 pad, 1 unk, 2 "good", 3 "bad", 4 "film".
    ids = np.array([[2, 4, 0], [2, 2, 4], [3, 4, 0]], np.int32)
    lengths = np.array([2, 3, 2], np.int32)
    labels = np.array([1, 1, 0], np.int32)
    predict = sentiment.naive_bayes(ids, lengths, labels, V=5, alpha=1.0)
    # Word presence counts + alpha (pad and unk carry no evidence, so only alpha):
    # positive: pad 1, unk 1, good 3, bad 1, film 3 (sum 9); negative: 1, 1, 1, 2, 2 (sum 7); priors 2/3, 1/3.
    # "bad": log(2/3 * 1/9) = -2.60 < log(1/3 * 2/7) = -2.35 -> 0; "good": -1.50 > -3.04 -> 1;
    # "film": log(2/3 * 3/9) = -1.50 > log(1/3 * 2/7) = -2.35 -> 1.
    for sentence, expected in (([3], 0), ([2], 1), ([4], 1)):
        got = predict(np.array([sentence], np.int32), np.array([1], np.int32))
        assert got[0] == expected


def test_pca_and_embedding_table():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(30, 5)) * np.array([5.0, 2.0, 0.1, 0.1, 0.1])
    xy = sentiment.pca_2d(v)
    assert xy.shape == (30, 2)
    assert xy[:, 0].var() >= xy[:, 1].var() >= 0
    np.testing.assert_allclose(np.cov(xy.T)[0, 1], 0.0, atol=1e-8)  # principal components are uncorrelated
    model = RNNClassifier(11, 2, 1, embed_dim=4, hidden_size=3, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(sentiment.embedding_table(model, 11), np.asarray(model.embed.table[...]))


# ------------------------------------------------------------------------------------------------------- G2P


def _g2p_model(cell="lstm", attention="general"):
    return RNNSeq2Seq(9, 7, 0, 1, 2, embed_dim=4, hidden_size=6, cell=cell, attention=attention,
                      embed_dropout=0.2, memory_dropout=0.2, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("cell, attention", [("lstm", "general"), ("gru", "bahdanau")])
def test_teacher_forcing_matches_a_stepwise_loop(cell, attention):
    model = _g2p_model(cell, attention)
    src = jnp.array([[3, 4, 5, 6], [7, 8, 0, 0]], jnp.int32)
    src_lengths = jnp.array([4, 2], jnp.int32)
    tgt_in = jnp.array([[1, 3, 4], [1, 5, 0]], jnp.int32)
    logits = model(src, src_lengths, tgt_in)
    assert logits.shape == (2, 3, 7)
    enc = model.encode(src, src_lengths)
    params = model.params.get()
    state = enc.state
    for t in range(3):
        state, step_logits, weights = patterns.decoder_step(model.spec, params, enc, state, tgt_in[:, t])
        np.testing.assert_allclose(logits[:, t], step_logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(weights[1, 2:], 0.0)  # no attention on source padding
    # A padded source gives the same result as the source alone.
    alone = model(src[1:, :2], src_lengths[1:], tgt_in[1:])
    np.testing.assert_allclose(logits[1], alone[0], rtol=1e-5, atol=1e-6)


def _full_model_fn(model):
    """One compiled function for the full teacher-forced model (fixed shapes: a single compilation)."""
    graphdef, state = nnx.split(model)
    return jax.jit(lambda src, src_lengths, tgt_in: nnx.merge(graphdef, state)(src, src_lengths, tgt_in))


def test_greedy_generate_matches_full_recomputation():
    model = _g2p_model("gru")
    src = jnp.array([[3, 4, 5, 6], [7, 8, 0, 0]], jnp.int32)
    src_lengths = jnp.array([4, 2], jnp.int32)
    max_len = 5
    tokens = np.asarray(model.translate(src, src_lengths, max_len))
    assert tokens.shape == (2, max_len)
    full = _full_model_fn(model)
    # Reference: rerun the whole model on the growing prefix (padded to max_len; the decoder is causal, so
    # later positions cannot change earlier logits) and take the argmax at the newest position.
    prefix = np.zeros((2, max_len), np.int32)
    prefix[:, 0] = 1
    expected = np.zeros((2, max_len), np.int32)
    done = np.zeros(2, bool)
    for t in range(max_len):
        nxt = np.asarray(jnp.argmax(full(src, src_lengths, jnp.asarray(prefix))[:, t], axis=-1))
        expected[:, t] = np.where(done, 0, nxt)
        done |= nxt == 2
        if t + 1 < max_len:
            prefix[:, t + 1] = expected[:, t]
    np.testing.assert_array_equal(tokens, expected)


def test_beam_search_as_wide_as_the_vocabulary_is_exhaustive():
    # With W = V and two steps, beam search keeps every first token, so its best beam must be the best of all
    # V * V two-token sequences under the same score: log-probability / GNMT length penalty (alpha 0.6), a
    # sequence that ends with EOS at step one scoring on its length 1.
    model = _g2p_model("lstm")
    src = jnp.array([[3, 4, 5, 6], [7, 8, 0, 0]], jnp.int32)
    src_lengths = jnp.array([4, 2], jnp.int32)
    V, eos = 7, 2
    beam = np.asarray(model.translate(src, src_lengths, 2, beam_size=V))
    full = _full_model_fn(model)
    lp = lambda n: ((5.0 + n) / 6.0) ** 0.6
    for b in range(2):
        best, best_score = None, -np.inf
        for a in range(V):
            logits = full(src[b:b + 1], src_lengths[b:b + 1], jnp.array([[1, a]], jnp.int32))
            first = float(jax.nn.log_softmax(logits[0, 0])[a])
            if a == eos:
                candidates = [((a, 0), first / lp(1))]
            else:
                second = np.asarray(jax.nn.log_softmax(logits[0, 1]))
                candidates = [((a, c), (first + second[c]) / lp(2)) for c in range(V)]
            for seq, score in candidates:
                if score > best_score:
                    best, best_score = seq, score
        np.testing.assert_array_equal(beam[b], best)


def test_g2p_task_encoding_round_trip():
    t = experiment_task("g2p_rnn")
    s = t.data()["train"]
    words = t.src_vocab.decode(s["src"])
    assert words[:5] == t.words["train"][:5]
    phones = [p.split() for p in t.tgt_vocab.decode(s["tgt_out"], join=" ")]
    assert phones[:5] == t.prons["train"][:5]
    assert (s["tgt_in"][:, 0] == t.tgt_vocab.bos_id).all()
    np.testing.assert_array_equal(s["tgt_in"][:, 1:3], s["tgt_out"][:, 0:2])
    n = len(t.prons["train"][0])
    assert s["tgt_out"][0, n] == t.tgt_vocab.eos_id and s["tgt_lengths"][0] == n + 1


# --------------------------------------------------------------------------------------------- I/O patterns


def test_pattern_data_against_loops():
    d = pattern_task.make_data(20, 6, seed=3)
    for i in range(20):
        a, b = d["o2o_x"][i]
        assert d["o2o_y"][i] == int(a * b > 0)
        n = d["m2o_lengths"][i]
        assert d["m2o_y"][i] == sum(d["m2o_x"][i][:n]) and d["m2o_x"][i][n:].sum() == 0
        n = d["m2m_lengths"][i]
        running = [max(d["m2m_x"][i][: t + 1]) for t in range(n)]
        np.testing.assert_array_equal(d["m2m_y"][i][:n], running)
        n = d["s2s_src_lengths"][i]
        rev = list(d["s2s_src"][i][:n][::-1]) + [pattern_task.EOS]
        np.testing.assert_array_equal(d["s2s_tgt_out"][i][: n + 1], rev)
        assert d["s2s_tgt_in"][i][0] == pattern_task.BOS
        np.testing.assert_array_equal(d["s2s_tgt_in"][i][1: n + 1], rev[:-1])
    sin, cos, freq = d["o2m_x"][0]
    phase = np.arctan2(sin, cos)
    np.testing.assert_allclose(d["o2m_y"][0], np.sin(freq * np.arange(6) + phase), atol=1e-5)


def test_pattern_models_seq2seq_is_the_one_encoder_decoder():
    config = experiment_config("patterns")
    t = task.build_task(config)
    assert t.model_args() == {"seq_len": 8, "vocab_size": 13, "pad_id": 0, "bos_id": 1, "eos_id": 2}
    model = task.build_model(config, t, nnx.Rngs(0))
    assert isinstance(model, PatternModels) and isinstance(model.s2s, RNNSeq2Seq)
    assert model.s2s.spec.attention == "dot" and not model.s2s.spec.bidirectional
    b = {k: jnp.asarray(v[:16]) for k, v in t.data()["val"].items()}
    logits = model.seq2seq(b["s2s_src"], b["s2s_src_lengths"], b["s2s_tgt_in"])
    ref = patterns.teacher_forcing(model.s2s.spec, model.s2s.params.get(), b["s2s_src"], b["s2s_src_lengths"],
                                   b["s2s_tgt_in"])
    np.testing.assert_array_equal(logits, ref)
    tokens = model.translate(b["s2s_src"], b["s2s_src_lengths"], 9)
    ref = patterns.translate(model.s2s.spec, model.s2s.params.get(), b["s2s_src"], b["s2s_src_lengths"],
                             max_len=9, bos_id=1, eos_id=2)
    np.testing.assert_array_equal(tokens, ref)
    res = t.results(model, t.data()["test"])
    assert set(res) == {f"{p}_{m}" for p, m in (("one_to_one", "accuracy"), ("one_to_many", "mse"),
                                                ("many_to_one", "accuracy"), ("many_to_many", "accuracy"),
                                                ("seq2seq", "exact_match"))} | {f"{p}_baseline" for p in
                                                                                 pattern_task.PATTERNS}
