# %% [markdown]
# # 01 Time series as an asset x day table
#
# A time series is a table: one row per asset (or sensor, or word position), one column per day. Sequence
# models read it column by column, so the same numbers become a batch of sequences `[B, T, D]`: B sequences,
# T time steps, D features per step. Here: the daily closes of four stocks (offline, from bokeh-sampledata),
# their first five common trading days, and the returns a forecaster would actually predict.

# %%
import os
import pathlib

import matplotlib

matplotlib.use("Agg")  # files only: the lessons run headless
import matplotlib.pyplot as plt
import numpy as np

from seqjax.data import stocks

np.set_printoptions(precision=4, suppress=True)
HERE = pathlib.Path(globals().get("__file__", "lessons/01_time_series.py")).resolve().parent
FIGURES = pathlib.Path(os.environ.get("SEQJAX_LESSON_FIGURES", HERE / "figures"))

# %% [markdown]
# `load_stocks` aligns the symbols on their common dates (GOOG listed in August 2004, so the table starts
# there) and returns adjusted closes, so a ratio of two closes is a real return.

# %%
dates, prices = stocks.load_stocks(stocks.SYMBOLS)  # dates [N], prices [N, A]: days down, assets across
print("symbols =", list(stocks.SYMBOLS))
print("days x assets =", prices.shape)

# The course's table is asset x day: transpose the first five days.
table = prices[:5].T  # [A, 5]
print("\ncloses (asset x day), days", [str(d) for d in dates[:5]])
for sym, row in zip(stocks.SYMBOLS, table, strict=True):
    print(f"  {sym:5s}", " ".join(f"{v:9.2f}" for v in row))

# %% [markdown]
# Prices drift and differ in scale between assets (adjusted AAPL near 2, IBM near 64); returns do not.
# The log-return r_t = log(p_{t+1} / p_t) is what a forecaster predicts: five closes give four returns.

# %%
returns = stocks.log_returns(prices[:5]).T  # [A, 4]
print("\nlog-returns (asset x day)")
for sym, row in zip(stocks.SYMBOLS, returns, strict=True):
    print(f"  {sym:5s}", " ".join(f"{v:+9.4f}" for v in row))
print("table shape =", table.shape, " returns shape =", returns.shape)

# %% [markdown]
# As a model input: one sequence per asset (B = 4), T = 4 days, D = 1 feature per day (the return).
# A forecaster on several assets at once would instead take B windows with D = 4 features per day.

# %%
xs = returns[:, :, None]  # [B, T, D] = [4, 4, 1]
print("model input xs [B, T, D] =", xs.shape)

# %%
FIGURES.mkdir(parents=True, exist_ok=True)
fig, ax = plt.subplots(figsize=(6, 3))
for sym, col in zip(stocks.SYMBOLS, prices.T, strict=True):
    ax.plot(dates, col / col[0], label=sym, lw=0.8)  # each asset relative to its first day
ax.set_yscale("log")
ax.set_ylabel("close / first close")
ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(FIGURES / "01_time_series.png", dpi=80)
plt.close(fig)
