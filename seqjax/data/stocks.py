"""Daily stock prices as an assets-by-days table, from the bokeh-sampledata package (offline).

`bokeh_sampledata.stocks` (BSD-3, bokeh-sampledata 2026.1) holds daily OHLCV rows for AAPL, IBM, MSFT
(3,270 trading days, 2000-03-01..2013-03-01) and GOOG (2,148 days from its 2004-08-19 listing). `load_stocks`
aligns the chosen symbols on their common dates (an inner join, so adding GOOG starts the table in 2004-08)
and returns the dividend- and split-adjusted close by default, so a return computed from it is a real return.
"""
from __future__ import annotations

import numpy as np

SYMBOLS = ("AAPL", "IBM", "MSFT", "GOOG")
FIELDS = ("open", "high", "low", "close", "volume", "adj_close")


def _sampledata(symbol: str) -> dict:
    try:
        import bokeh_sampledata.stocks as stocks
    except ImportError:
        raise ImportError("stock data needs the bokeh-sampledata package: "
                          "pip install bokeh-sampledata==2026.1 "
                          "(or pip install 'seqjax[data]')") from None
    return getattr(stocks, symbol)


def align(tables: dict[str, dict], field: str = "adj_close") -> tuple[np.ndarray, np.ndarray]:
    """Inner-join per-symbol tables {symbol: {'date': [...], field: [...]}} on date.

    Returns (dates `datetime64[D]` [N] ascending, values float64[N, A]) with columns in the order of `tables`.
    A table with unequal column lengths, duplicate or non-ISO dates, or non-positive prices raises a
    ValueError naming the symbol.
    """
    if not tables:
        raise ValueError("symbols: expected at least one symbol")
    per_symbol = {}
    for sym, t in tables.items():
        if "date" not in t or field not in t:
            raise ValueError(f"{sym}: expected columns 'date' and {field!r}, got {sorted(t)}")
        if len(t["date"]) != len(t[field]):
            raise ValueError(f"{sym}: {len(t['date'])} dates but {len(t[field])} {field} values")
        try:
            dates = np.asarray(t["date"], dtype="datetime64[D]")
        except ValueError as e:
            raise ValueError(f"{sym}: unparseable date ({e})") from None
        if len(np.unique(dates)) != len(dates):
            raise ValueError(f"{sym}: duplicate dates")
        values = np.asarray(t[field], dtype=np.float64)
        if field != "volume" and not (np.isfinite(values).all() and (values > 0).all()):
            raise ValueError(f"{sym}: {field} has non-positive or non-finite values")
        per_symbol[sym] = dict(zip(dates.tolist(), values.tolist(), strict=True))
    common = sorted(set.intersection(*(set(d) for d in per_symbol.values())))
    if not common:
        raise ValueError(f"symbols {list(tables)}: no common dates")
    values = np.array([[per_symbol[s][d] for s in tables] for d in common], dtype=np.float64)
    return np.array(common, dtype="datetime64[D]"), values


def load_stocks(symbols: tuple[str, ...] = SYMBOLS,
                field: str = "adj_close") -> tuple[np.ndarray, np.ndarray]:
    """(dates `datetime64[D]` [N], prices float64[N, A]) for `symbols` on their common trading days."""
    symbols = tuple(symbols)
    unknown = [s for s in symbols if s not in SYMBOLS]
    if unknown:
        raise ValueError(f"symbols: unknown {unknown}; available: {list(SYMBOLS)}")
    if field not in FIELDS:
        raise ValueError(f"field: expected one of {FIELDS}, got {field!r}")
    return align({s: _sampledata(s) for s in symbols}, field)


def log_returns(prices: np.ndarray) -> np.ndarray:
    """float64[N-1, A]: r[t] = log(p[t+1] / p[t]), the return earned from day t to day t+1."""
    prices = np.asarray(prices, dtype=np.float64)
    if prices.ndim != 2:
        raise ValueError(f"prices: expected [N, A], got shape {prices.shape}")
    return np.diff(np.log(prices), axis=0)
