"""Seattle daily weather 2012-2015 from vega_datasets' offline copy (MIT licence; NOAA data via vega).

`vega_datasets.local_data.seattle_weather()` ships 1,461 consecutive days with precipitation (mm), temp_max
and temp_min (deg C), wind (m/s) and a weather label. Only `local_data` works offline (vega_datasets' `data.*`
downloads). `load_weather` returns the four numeric columns and checks the days are consecutive.
"""
from __future__ import annotations

import numpy as np

VARIABLES = ("precipitation", "temp_max", "temp_min", "wind")
UNITS = {"precipitation": "mm", "temp_max": "°C", "temp_min": "°C", "wind": "m/s"}  # as the module docstring


def from_columns(columns: dict, source: str = "<columns>") -> tuple[np.ndarray, np.ndarray]:
    """(dates `datetime64[D]` [N], values float64[N, 4]) from {'date': [...], variable: [...]}; checked."""
    missing = [k for k in ("date", *VARIABLES) if k not in columns]
    if missing:
        raise ValueError(f"{source}: missing columns {missing}")
    dates = np.asarray(columns["date"]).astype("datetime64[D]")
    values = np.stack([np.asarray(columns[v], dtype=np.float64) for v in VARIABLES], axis=1)  # [N, 4]
    if not np.isfinite(values).all():
        raise ValueError(f"{source}: non-finite values in {VARIABLES}")
    steps = np.diff(dates).astype(np.int64)
    if len(dates) < 2 or not (steps == 1).all():
        raise ValueError(f"{source}: expected consecutive daily dates, found gaps or disorder")
    return dates, values


def load_weather() -> tuple[np.ndarray, np.ndarray]:
    """(dates `datetime64[D]` [1461], values float64[1461, 4]) with columns VARIABLES."""
    try:
        from vega_datasets import local_data
    except ImportError:
        raise ImportError("weather data needs vega_datasets: pip install vega_datasets==0.9.0 "
                          "(or pip install 'seqjax[data]')") from None
    frame = local_data.seattle_weather()
    columns = {k: frame[k].to_numpy() for k in ("date", *VARIABLES)}
    return from_columns(columns, "vega_datasets seattle-weather")


def day_of_year_features(dates: np.ndarray) -> np.ndarray:
    """float64[N, 2]: (sin, cos) of 2*pi*day-of-year/365.25, the season as a smooth periodic input."""
    dates = np.asarray(dates, dtype="datetime64[D]")
    doy = (dates - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.float64)
    angle = 2 * np.pi * doy / 365.25
    return np.stack([np.sin(angle), np.cos(angle)], axis=1)
