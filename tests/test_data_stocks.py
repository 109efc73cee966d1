"""Stock table alignment (tables written by the test) and the bokeh-sampledata copy."""
import numpy as np
import pytest

from seqjax.data import stocks


def test_align_is_an_inner_join_on_dates():
    tables = {"A": {"date": ["2020-01-02", "2020-01-03", "2020-01-06"], "adj_close": [1.0, 2.0, 3.0]},
              "B": {"date": ["2020-01-03", "2020-01-06", "2020-01-07"], "adj_close": [10.0, 20.0, 30.0]}}
    dates, values = stocks.align(tables)
    assert dates.tolist() == list(np.array(["2020-01-03", "2020-01-06"], dtype="datetime64[D]").tolist())
    np.testing.assert_array_equal(values, [[2.0, 10.0], [3.0, 20.0]])


def test_align_errors_name_the_symbol():
    with pytest.raises(ValueError, match="B: 2 dates but 1"):
        stocks.align({"B": {"date": ["2020-01-03", "2020-01-06"], "adj_close": [1.0]}})
    with pytest.raises(ValueError, match="C: adj_close has non-positive"):
        stocks.align({"C": {"date": ["2020-01-03"], "adj_close": [-1.0]}})
    with pytest.raises(ValueError, match="D: duplicate"):
        stocks.align({"D": {"date": ["2020-01-03", "2020-01-03"], "adj_close": [1.0, 2.0]}})


def test_log_returns_against_the_formula():
    p = np.array([[100.0, 10.0], [110.0, 9.0], [99.0, 9.0]])
    r = stocks.log_returns(p)
    np.testing.assert_allclose(r, [[np.log(1.1), np.log(0.9)], [np.log(0.9), 0.0]])


def test_bokeh_sampledata_table():
    pytest.importorskip("bokeh_sampledata")
    dates, prices = stocks.load_stocks(("AAPL", "IBM", "MSFT", "GOOG"))
    assert prices.shape == (2148, 4) and str(dates[0]) == "2004-08-19" and str(dates[-1]) == "2013-03-01"
    assert (np.diff(dates).astype(int) > 0).all()
    dates3, prices3 = stocks.load_stocks(("AAPL", "IBM", "MSFT"))
    assert prices3.shape == (3270, 3)
    with pytest.raises(ValueError, match="unknown"):
        stocks.load_stocks(("NOPE",))
