"""Training-curve PNGs (metrics_io.plot_curves) and the forecast picture (tasks.forecast.plot_forecasts)."""
import json

import matplotlib
import matplotlib.image
import numpy as np
import pytest

matplotlib.use("Agg")

from seqjax import metrics_io  # noqa: E402


def test_ema_matches_python_loop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    for weight in (0.0, 0.5, 0.93):
        ref, s = [], x[0]
        for value in x:
            s = weight * s + (1 - weight) * value
            ref.append(s)
        np.testing.assert_allclose(metrics_io.ema(x, weight), ref, rtol=1e-12)
    np.testing.assert_allclose(metrics_io.ema(np.full(7, 3.0), 0.9), 3.0)  # no pull toward 0 at the start
    assert metrics_io.ema(np.zeros(0), 0.5).shape == (0,)
    with pytest.raises(ValueError, match="weight"):
        metrics_io.ema(x, 1.0)
    # No smoothing for short series; a time constant of n / 20 points, at most 20, for long ones.
    assert metrics_io.smoothing_weight(10) == 0.0 and metrics_io.smoothing_weight(20) == 0.0
    assert metrics_io.smoothing_weight(200) == pytest.approx(0.9)
    assert metrics_io.smoothing_weight(10**5) == 0.95


def _series(**metrics):
    return {name: {p: (np.asarray(s), np.asarray(v, float)) for p, (s, v) in by.items()}
            for name, by in metrics.items()}


def test_duplicate_panels_are_dropped_only_when_every_series_is_equal():
    steps = [1, 2, 3]
    a, b = [0.9, 0.5, 0.4], [1.1, 0.6, 0.3]
    kept = metrics_io.duplicate_metrics(_series(
        mae={"train": (steps, a), "val": ([3], [0.45])},
        loss={"train": (steps, np.array(a) * (1 + 1e-9)), "val": ([3], [0.45])},  # float noise: still equal
        mse={"train": (steps, b), "val": ([3], [0.45])},
        accuracy={"train": (steps, a)},  # equal train values, but no val series: a different panel
        rmse={"train": (steps, a), "val": ([2], [0.45])},  # same values at another step: different
    ))
    assert kept == {"loss": ["mae"], "accuracy": [], "mse": [], "rmse": []}  # "loss" kept, then by name


def test_plot_curves_writes_one_png_per_distinct_metric(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for step in range(10, 1001, 10):  # 100 logged batches: smoothed; loss spans more than a decade: log axis
        loss = 0.3 + 5.0 * np.exp(-step / 150) * np.exp(rng.normal(0, 0.1))
        rows.append({"step": step, "train/loss": loss, "train/mae": loss, "train/accuracy": rng.random(),
                     "train/lr": 1e-3, "train/steps_per_s": 12.0, "train/grad_norm": "nan"})
        if step % 250 == 0:
            rows.append({"step": step, "val/loss": loss, "val/mae": loss, "val/accuracy": 0.5})
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    written = metrics_io.plot_curves(str(path), str(tmp_path))
    # mae == loss: one panel; lr and steps_per_s are not curves; grad_norm has no finite value.
    assert sorted(p.rsplit("/", 1)[1] for p in written) == ["curve_accuracy.png", "curve_loss.png"]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["curve_accuracy.png", "curve_loss.png"]
    for p in written:
        image = matplotlib.image.imread(p)
        assert image.ndim == 3 and image.shape[0] >= 300 and image.shape[1] >= 500


def test_log_axis_only_beyond_a_decade_with_labelled_ticks():
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    def axis(values):
        fig, ax = plt.subplots()
        ax.plot(np.arange(len(values)), values)
        metrics_io._value_axis(ax, np.asarray(values, float), ticker)
        fig.canvas.draw()
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()
                  and ax.get_ylim()[0] <= t.get_position()[1] <= ax.get_ylim()[1]]
        plt.close(fig)
        return ax.get_yscale(), labels

    assert axis([0.5, 0.9, 2.0])[0] == "linear"  # under a decade
    assert axis([-1.0, 5.0, 30.0])[0] == "linear"  # not all positive
    scale, labels = axis([4.0, 1.0, 0.3])
    # Plain numbers, and enough of them to bracket any value in [0.3, 4] between two labels.
    assert scale == "log" and {"0.3", "0.5", "1", "2", "3"} <= set(labels)


@pytest.mark.parametrize("kind", ["levels", "returns"])
def test_forecast_plot_writes_png_for_both_data_sets(tmp_path, kind):
    from seqjax.tasks import forecast

    rng = np.random.default_rng(2)
    N, C, M = 120, 4 if kind == "levels" else 2, 70  # M test windows: more than the 60-day zoom
    values = rng.normal(size=(N, C))
    dates = np.datetime64("2015-01-01") + np.arange(N)
    if kind == "levels":  # the weather data set's columns and units
        from seqjax.data import weather
        columns, units, prices = weather.VARIABLES, tuple(weather.UNITS[c] for c in weather.VARIABLES), None
    else:  # stocks: percent log returns, and the prices they come from
        columns, units = ("AAPL", "IBM"), ("%", "%")
        prices = 100.0 * np.exp(np.concatenate([np.zeros((1, C)), np.cumsum(values, 0) / 100.0]))
    s = forecast.Series(f"toy_{kind}", dates, values, np.zeros((N, 0)), columns, kind, prices, units)
    t0 = np.arange(N - M, N)
    truth = values[t0][:, None, :]
    preds = {"model": truth + 0.1, "persistence": values[t0 - 1][:, None, :], "linear_ar": truth * 0.5}
    path = forecast.plot_forecasts(s, t0, preds, truth, str(tmp_path / "f.png"))
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 900


def test_loaded_series_carry_their_units():
    from seqjax.tasks import forecast

    pytest.importorskip("vega_datasets")
    pytest.importorskip("bokeh_sampledata")
    assert forecast.load_series("weather").units == ("mm", "°C", "°C", "m/s")
    assert forecast.load_series("stocks", ("AAPL", "IBM")).units == ("%", "%")  # percent log returns
