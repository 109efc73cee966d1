"""Next-day forecasting of multivariate daily series with a recurrent network (stocks, weather).

Data (`dataset`):
- "stocks": adjusted closes of `symbols` (bokeh-sampledata, common trading days). The model reads
  and predicts DAILY LOG RETURNS in percent, r[t] = 100 * log(p[t+1] / p[t]), not prices: returns are roughly
  stationary, so a network fitted on 2004-2010 prices is not asked to extrapolate to 2012 price levels, and a
  predicted return maps back to a price as p[t] * exp(r / 100). Persistence ("tomorrow = today's price") is a
  zero predicted return.
- "weather": Seattle precipitation, temp_max, temp_min, wind (levels). Persistence repeats the last observed
  day.
Either data set adds sin/cos of the day of year as extra inputs when `season_features`.

Windows. Sample m reads rows m .. m+W-1 (W = `window`) and predicts rows m+W .. m+W+h-1 (h =
`horizon`, 1 = next day). The split is chronological by target day: a window is in train if all
its targets lie in the first `train_frac` of the rows, in val if its targets lie in the next `val_frac`, in
test after that; windows may look back across a boundary (they only read the past). The per-column mean and
standard deviation used to normalise inputs and targets are fitted on the training rows only.

Baselines, reported by `evaluate` on the same test windows in the same units: persistence, and a linear
autoregressive model (least squares from the flattened normalised window plus a bias to all h x C outputs,
fitted on the training windows). Metrics are MAE and RMSE per variable and their mean over variables; "mean"
MAE/RMSE are averaged in units of each variable's training standard deviation so that variables in different
units weigh the same (per-variable figures are in natural units). A PNG of predictions vs truth on the test
period is written into the workdir (`plot_forecasts`).
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from seqjax import losses, task
from seqjax.data import stocks as stocks_data
from seqjax.data import weather as weather_data

LOSSES = ("mse", "mae")


@dataclasses.dataclass
class Series:
    """One prepared data set: `values` [N, C] are the forecast targets in natural units (percent log returns
    for stocks, levels for weather); `extra` [N, E] are known inputs that are not predicted (E may be 0)."""
    name: str
    dates: np.ndarray  # datetime64[D][N], the day each row describes
    values: np.ndarray  # float64[N, C]
    extra: np.ndarray  # float64[N, E]
    columns: tuple[str, ...]
    kind: str  # "returns" (persistence predicts 0) or "levels" (persistence repeats the last row)
    # stocks only: float64[N + 1, C] with prices[t + 1] = prices[t] * exp(values[t] / 100)
    prices: np.ndarray | None = None
    units: tuple[str, ...] = ()  # of each column of `values`, for plots ("%" for returns, "mm", "°C", ...)


def load_series(dataset: str, symbols: tuple[str, ...] = (), season_features: bool = True) -> Series:
    """The data set's series; with `season_features`, sin/cos of the day of year as extra inputs (both data
    sets have dates)."""
    if dataset == "stocks":
        dates, prices = stocks_data.load_stocks(tuple(symbols))
        returns = 100.0 * stocks_data.log_returns(prices)  # [N-1, A]; row t = return from day t to t+1
        dates, values, columns, kind = dates[1:], returns, tuple(symbols), "returns"
        units = ("%",) * len(columns)
    elif dataset == "weather":
        dates, values = weather_data.load_weather()
        prices, columns, kind = None, weather_data.VARIABLES, "levels"
        units = tuple(weather_data.UNITS[c] for c in columns)
    else:
        raise ValueError(f"dataset: expected 'stocks' or 'weather', got {dataset!r}")
    extra = weather_data.day_of_year_features(dates) if season_features else np.zeros((len(dates), 0))
    return Series(dataset, dates, values, extra, columns, kind, prices, units)


def split_points(N: int, train_frac: float, val_frac: float) -> tuple[int, int]:
    """Row indices (n_train, n_val_end): rows [0, n_train) train, [n_train, n_val_end) val, the rest test."""
    if not (0 < train_frac < 1 and 0 <= val_frac < 1 and train_frac + val_frac < 1):
        raise ValueError(f"train_frac, val_frac: need 0 < train_frac, train_frac + val_frac < 1, got "
                         f"{train_frac}, {val_frac}")
    return int(N * train_frac), int(N * (train_frac + val_frac))


@dataclasses.dataclass
class Standardizer:
    """Per-column (x - mean) / std, fitted on the rows given to `fit` (the training part only)."""
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray) -> Standardizer:
        std = rows.std(axis=0)
        return cls(rows.mean(axis=0), np.where(std > 0, std, 1.0))

    def apply(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std

    def invert(self, z: np.ndarray) -> np.ndarray:
        return z * self.std + self.mean


def make_windows(inputs: np.ndarray, targets: np.ndarray, window: int, horizon: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x [M, W, C_in], y [M, h, C], first target row t0 [M], with M = N - W - h + 1.

    Equivalent loop: for m in range(M): x[m] = inputs[m:m+W]; y[m] = targets[m+W:m+W+h]; t0[m] = m + W.
    """
    N = len(inputs)
    if len(targets) != N:
        raise ValueError(f"targets: expected {N} rows like inputs, got {len(targets)}")
    M = N - window - horizon + 1
    if window < 1 or horizon < 1 or M < 1:
        raise ValueError(f"window={window}, horizon={horizon}: need window, horizon >= 1 and "
                         f"window + horizon <= N = {N}")
    idx = np.arange(M)[:, None]
    x = inputs[idx + np.arange(window)[None, :]]  # [M, W, C_in]
    y = targets[idx + window + np.arange(horizon)[None, :]]  # [M, h, C]
    return x, y, np.arange(M) + window


def assign_splits(t0: np.ndarray, horizon: int, n_train: int, n_val_end: int) -> dict[str, np.ndarray]:
    """Window indices per split: every target row of a window lies inside its split's rows."""
    last = t0 + horizon - 1
    return {"train": np.nonzero(last < n_train)[0],
            "val": np.nonzero((t0 >= n_train) & (last < n_val_end))[0],
            "test": np.nonzero(t0 >= n_val_end)[0]}


def fit_linear_ar(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """Least squares W [W*C_in + 1, h*C] from flattened windows (plus a bias column) to flattened targets.

    A small ridge term keeps the normal equations well conditioned; it barely changes the fit.
    """
    X = np.concatenate([x.reshape(len(x), -1), np.ones((len(x), 1))], axis=1)  # [M, W*C_in + 1]
    Y = y.reshape(len(y), -1)  # [M, h*C]
    reg = ridge * np.eye(X.shape[1])
    reg[-1, -1] = 0.0  # do not shrink the bias
    return np.linalg.solve(X.T @ X + reg, X.T @ Y)


def predict_linear_ar(coef: np.ndarray, x: np.ndarray, horizon: int) -> np.ndarray:
    X = np.concatenate([x.reshape(len(x), -1), np.ones((len(x), 1))], axis=1)
    return (X @ coef).reshape(len(x), horizon, -1)  # [M, h, C]


def error_table(pred: np.ndarray, truth: np.ndarray, columns, std: np.ndarray) -> dict[str, float]:
    """MAE/RMSE per column (natural units) and their mean in units of each column's training std."""
    err = pred - truth  # [M, h, C]
    mae = np.abs(err).mean(axis=(0, 1))
    rmse = np.sqrt(np.square(err).mean(axis=(0, 1)))
    out = {f"mae_{c}": float(v) for c, v in zip(columns, mae, strict=True)}
    out |= {f"rmse_{c}": float(v) for c, v in zip(columns, rmse, strict=True)}
    out["mae"] = float(np.mean(mae / std))
    out["rmse"] = float(np.mean(rmse / std))
    return out


class ForecastTask:
    """Windows of a daily series -> the next `horizon` rows (module docstring). Model: `forecaster` or any
    model with the same data arguments (num_inputs, num_outputs, horizon) and `model(x, key=None)`.

    `max_train_windows` > 0 keeps only the most recent training windows (smoke runs). `loss` is what
    training minimises: "mse" (the conditional mean) or "mae" (the conditional median: the right target when
    MAE is the reported metric and a variable is skewed, e.g. most days have no rain).

    Args:
        dataset: "weather" (Seattle) or "stocks" (see the module docstring).
        symbols: stocks only: the ticker symbols whose returns are forecast.
        window: W, the days each window reads.
        horizon: h, the days each window predicts (1 = next day).
        train_frac: the first fraction of the rows (by target day) for training.
        val_frac: the next fraction for validation; the rest is test.
        season_features: add sin/cos of the day of year as extra inputs.
        max_train_windows: > 0 keeps only the most recent training windows (smoke runs); 0 = all.
        loss: what training minimises, "mse" or "mae".
    """

    # The price and direction figures exist for stocks only (headline skips what `evaluate` did not report).
    HEADLINE = (
        task.Figure("test_model_mae", "test MAE", "lower", unit="train-std units",
                    baselines=(("test_persistence_mae", "persistence"), ("test_linear_ar_mae", "linear AR"))),
        task.Figure("test_model_price_mae", "test next-day price MAE", "lower", unit="dollars",
                    baselines=(("test_persistence_price_mae", "persistence"),
                               ("test_linear_ar_price_mae", "linear AR"))),
        task.Figure("test_direction_accuracy", "test direction accuracy (sign of the return)", "higher",
                    unit="%"),
    )

    def __init__(self, *, dataset: str = "weather", symbols: tuple[str, ...] = (), window: int = 14,
                 horizon: int = 1,
                 train_frac: float = 0.7, val_frac: float = 0.15, season_features: bool = True,
                 max_train_windows: int = 0, loss: str = "mse"):
        if loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
        self.loss_name = loss
        self.series = s = load_series(dataset, tuple(symbols), season_features)
        self.window, self.horizon = int(window), int(horizon)
        self.n_train, self.n_val_end = split_points(len(s.values), train_frac, val_frac)
        # Normalisation statistics come from training rows only: no look at validation or test values.
        self.target_norm = Standardizer.fit(s.values[: self.n_train])
        self.extra_norm = Standardizer.fit(s.extra[: self.n_train])
        inputs = np.concatenate([self.target_norm.apply(s.values), self.extra_norm.apply(s.extra)], axis=1)
        targets = self.target_norm.apply(s.values)
        x, y, self.t0 = make_windows(inputs, targets, self.window, self.horizon)
        self.index = assign_splits(self.t0, self.horizon, self.n_train, self.n_val_end)
        if max_train_windows:  # smoke runs: keep the most recent training windows
            self.index["train"] = self.index["train"][-int(max_train_windows):]
        self._splits = {k: {"x": x[i].astype(np.float32), "y": y[i].astype(np.float32)}
                        for k, i in self.index.items()}
        self.num_inputs, self.num_outputs = inputs.shape[1], targets.shape[1]

    def data(self):
        return self._splits

    def model_args(self) -> dict[str, int]:
        return {"num_inputs": self.num_inputs, "num_outputs": self.num_outputs, "horizon": self.horizon}

    def loss(self, model, batch, key):
        pred = model(batch["x"], key=key)  # [B, horizon, C], normalised units
        mse, mae = losses.mse(pred, batch["y"]), losses.mae(pred, batch["y"])
        return (mae if self.loss_name == "mae" else mse), {"mse": mse, "mae": mae}

    # ------------------------------------------------------------------------------------------ evaluation

    def predict(self, model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Model predictions in natural units, [M, horizon, C]."""
        out = task.predict(lambda m, b: m(b["x"], key=None), model, {"x": x}, batch_size)
        return self.target_norm.invert(np.asarray(out, np.float64))

    def persistence(self, split: str) -> np.ndarray:
        """[M, h, C] in natural units: 0 return for "returns", the last observed row for "levels"."""
        t0 = self.t0[self.index[split]]
        M, C = len(t0), self.num_outputs
        if self.series.kind == "returns":
            return np.zeros((M, self.horizon, C))
        return np.repeat(self.series.values[t0 - 1][:, None, :], self.horizon, axis=1)

    def evaluate(self, model, splits, workdir: str) -> dict[str, float]:
        s, h = self.series, self.horizon
        train, test = splits["train"], splits["test"]
        truth = self.target_norm.invert(test["y"].astype(np.float64))
        coef = fit_linear_ar(train["x"].astype(np.float64), train["y"].astype(np.float64))
        ar = predict_linear_ar(coef, test["x"].astype(np.float64), h)
        preds = {"model": self.predict(model, test["x"]), "persistence": self.persistence("test"),
                 "linear_ar": self.target_norm.invert(ar)}
        out: dict[str, float] = {}
        for name, p in preds.items():
            for k, v in error_table(p, truth, s.columns, self.target_norm.std).items():
                out[f"test_{name}_{k}"] = v
        out["test_mae_vs_persistence"] = out["test_model_mae"] / out["test_persistence_mae"] - 1.0
        out["test_mae_vs_linear_ar"] = out["test_model_mae"] / out["test_linear_ar_mae"] - 1.0
        if s.kind == "returns":  # next-day price errors in dollars, from the day-ahead returns
            t0 = self.t0[self.index["test"]]
            today, tomorrow = s.prices[t0], s.prices[t0 + 1]  # prices[t0] is the last price the window saw
            for name, p in preds.items():
                price_pred = today * np.exp(p[:, 0, :] / 100.0)
                out[f"test_{name}_price_mae"] = float(np.abs(price_pred - tomorrow).mean())
            same_sign = np.sign(preds["model"][:, 0]) == np.sign(truth[:, 0])
            out["test_direction_accuracy"] = float(np.mean(same_sign))
        os.makedirs(workdir, exist_ok=True)
        self._plot(preds, truth, os.path.join(workdir, f"{s.name}_test_predictions.png"))
        with open(os.path.join(workdir, f"{s.name}_evaluation.json"), "w") as f:
            json.dump(out, f, indent=1)
        return out

    def _plot(self, preds, truth, path):
        plot_forecasts(self.series, self.t0[self.index["test"]], preds, truth, path)


_STYLES = {"model": dict(color="C0", ls="-", lw=1.5), "persistence": dict(color="C1", ls="--", lw=1.1),
           "linear_ar": dict(color="C2", ls="-.", lw=1.1)}
_LABELS = {"model": "model", "persistence": "persistence", "linear_ar": "linear AR"}


def plot_forecasts(s: Series, t0: np.ndarray, preds: dict[str, np.ndarray], truth: np.ndarray, path: str,
                   zoom_days: int = 60) -> str:
    """Test-period forecasts vs truth: one row per variable, in its units; returns `path`.

    t0 int[M]: the first target row of each test window; preds {"model", "persistence", "linear_ar"} and truth
    [M, h, C] in natural units (the first forecast day is drawn). Left: the whole test period, truth and
    model only, titled with each forecaster's test MAE. Right: the last `zoom_days` test days with every
    baseline, where the lines can be told apart. Stocks ("returns") show prices on the left (truth and the
    price each forecast implies, p[t] * exp(r / 100)) and the returns themselves on the right.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    dates, C = s.dates[t0], len(s.columns)
    units = s.units or ("",) * C
    zoom = slice(max(0, len(t0) - zoom_days), None)
    names = [n for n in ("model", "persistence", "linear_ar") if n in preds]
    fig, axes = plt.subplots(C, 2, figsize=(13, 2.5 * C + 0.9), squeeze=False,
                             gridspec_kw={"width_ratios": (3, 2)})
    for c in range(C):
        left, right = axes[c]
        unit = units[c]
        mae = {n: float(np.abs(preds[n][:, 0, c] - truth[:, 0, c]).mean()) for n in names}
        what = "next-day log return" if s.kind == "returns" else "next day"
        left.set_title(f"{s.columns[c]}: test MAE of the {what} ({unit}): "
                       + ", ".join(f"{_LABELS[n]} {v:.3g}" for n, v in mae.items()), fontsize=9, loc="left")
        if s.kind == "returns":  # prices: truth vs the price implied by the model's day-ahead return
            today = s.prices[t0, c]
            left.plot(dates, s.prices[t0 + 1, c], color="k", lw=1.0, zorder=3, label="truth")
            left.plot(dates, today * np.exp(preds["model"][:, 0, c] / 100.0), **_STYLES["model"], alpha=0.8,
                      label="model")
            left.set_ylabel(f"{s.columns[c]} price ($)")
        else:
            left.plot(dates, truth[:, 0, c], color="k", lw=1.0, zorder=3, label="truth")  # over the model
            left.plot(dates, preds["model"][:, 0, c], **_STYLES["model"], alpha=0.8, label="model")
            left.set_ylabel(f"{s.columns[c]} ({unit})")
        left.axvspan(dates[zoom][0], dates[-1], color="0.9", zorder=0)  # the window shown on the right
        right.plot(dates[zoom], truth[zoom, 0, c], color="k", lw=1.2, marker=".", ms=4, label="truth")
        for n in names:
            right.plot(dates[zoom], preds[n][zoom, 0, c], **_STYLES[n], label=_LABELS[n])
        right.set_ylabel(f"{'log return' if s.kind == 'returns' else s.columns[c]} ({unit})")
        for ax in (left, right):
            ax.grid(alpha=0.3)
            locator = mdates.AutoDateLocator(maxticks=8)
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes[0, 1].set_title(f"last {len(dates[zoom])} test days (shaded on the left)", fontsize=9, loc="left")
    handles, labels = axes[0, 1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncol=len(labels), fontsize=9, frameon=False)
    panels = " (left: prices, right: daily log returns)" if s.kind == "returns" else ""
    fig.suptitle(f"{s.name}: next-day forecasts on the test period{panels}", x=0.01, ha="left", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))  # room for the title and legend
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
