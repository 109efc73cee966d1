"""Seattle weather loader: column checks on data the test writes, and the vega_datasets copy."""
import numpy as np
import pytest

from seqjax.data import weather


def _columns(n=5):
    dates = np.datetime64("2012-01-01") + np.arange(n)
    return {"date": dates, "precipitation": np.arange(n) * 1.0, "temp_max": np.ones(n),
            "temp_min": np.zeros(n), "wind": np.full(n, 3.0)}


def test_from_columns_orders_variables():
    dates, values = weather.from_columns(_columns())
    assert values.shape == (5, 4)
    np.testing.assert_array_equal(values[:, 0], np.arange(5))
    np.testing.assert_array_equal(values[:, 3], 3.0)


def test_gaps_and_missing_columns_are_errors():
    c = _columns()
    c["date"] = c["date"][[0, 1, 3, 4, 2]]
    with pytest.raises(ValueError, match="consecutive"):
        weather.from_columns(c, "mine.csv")
    c = _columns()
    del c["wind"]
    with pytest.raises(ValueError, match=r"mine.csv: missing columns \['wind'\]"):
        weather.from_columns(c, "mine.csv")


def test_day_of_year_features():
    f = weather.day_of_year_features(np.array(["2013-01-01", "2013-07-02"], dtype="datetime64[D]"))
    np.testing.assert_allclose(f[0], [0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(f[1], [np.sin(2 * np.pi * 182 / 365.25), np.cos(2 * np.pi * 182 / 365.25)])


def test_vega_copy():
    pytest.importorskip("vega_datasets")
    dates, values = weather.load_weather()
    assert values.shape == (1461, 4) and str(dates[0]) == "2012-01-01" and str(dates[-1]) == "2015-12-31"
    assert (values[:, 1] >= values[:, 2]).all()  # temp_max >= temp_min on every day
