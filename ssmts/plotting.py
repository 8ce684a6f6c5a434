"""Plots of forecasts (matplotlib, an optional dependency).

:func:`plot_forecast` draws the history in grey, the forecast in colour, its
prediction interval shaded and, optionally, the values that really followed::

    lo, hi = f.predict_interval(24, coverage=0.9)
    fig = plot_forecast(y.iloc[-200:], f.predict(24), intervals=(lo, hi))
    fig.savefig("forecast.png")
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["plot_forecast"]

MAX_COLUMNS = 6


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plot_forecast needs matplotlib, which is not installed; "
                          "pip install matplotlib (or pip install 'ssmts[plot]')") from exc
    return plt


def _frame(x: Any, name: str, index: pd.Index | None = None) -> pd.DataFrame:
    """A wide DataFrame (T, C) from a DataFrame, Series or numpy (T,) / (T, C)."""
    if isinstance(x, pd.Series):
        x = x.to_frame(name=x.name if x.name is not None else "y")
    elif isinstance(x, np.ndarray):
        if x.ndim not in (1, 2):
            raise ValueError(f"{name}: expected a numpy array (T,) or (T, C), got shape "
                             f"{x.shape}; pass one series")
        x = pd.DataFrame(x.reshape(len(x), -1), index=index)
    elif not isinstance(x, pd.DataFrame):
        raise ValueError(f"{name}: expected a pandas DataFrame / Series or a numpy array, got "
                         f"{type(x).__name__}")
    if isinstance(x.index, pd.MultiIndex):
        raise ValueError(f"{name}: long format (MultiIndex) holds several series; plot one "
                         "series at a time (e.g. df.xs(series_id))")
    if isinstance(x.index, pd.PeriodIndex):
        x = x.set_axis(x.index.to_timestamp(), axis=0)
    return x


def _after(history: pd.DataFrame, n: int) -> pd.Index:
    """Positions after a RangeIndex history, for numpy forecasts."""
    last = history.index[-1] if len(history) else -1
    return pd.RangeIndex(int(last) + 1, int(last) + 1 + n)


def plot_forecast(history: Any, forecast: Any, intervals: tuple | None = None,
                  truth: Any = None, ax: Any = None, title: str | None = None):
    """Plot history, forecast, prediction interval and truth; one subplot per column.

    Parameters
    ----------
    history : DataFrame (T, C), Series (T,) or numpy (T,) / (T, C)
        The observed past (drawn in grey).
    forecast : same kind, shape (h, C), same columns
        Point forecast (e.g. ``predict(h)``), indexed by the future stamps.
    intervals : (lower, upper), optional
        Each like ``forecast``, as ``predict_interval`` returns them; shaded.
    truth : like ``forecast``, optional
        What really happened over the forecast period (black, dashed).
    ax : matplotlib Axes, optional
        Draw into this Axes (one column only); a new figure otherwise.
    title : str, optional
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        At most ``MAX_COLUMNS`` (6) subplots; with more columns the first six are
        drawn and a warning says so.
    """
    plt = _pyplot()
    hist = _frame(history, "history")
    idx = _after(hist, len(forecast)) if isinstance(forecast, np.ndarray) \
        and isinstance(hist.index, pd.RangeIndex) else None
    fc = _frame(forecast, "forecast", idx)
    if isinstance(forecast, np.ndarray) or isinstance(history, np.ndarray):
        fc.columns = hist.columns[:fc.shape[1]] if fc.shape[1] == hist.shape[1] else fc.columns
    if list(fc.columns) != list(hist.columns):
        raise ValueError(f"forecast: columns {list(fc.columns)} differ from history's "
                         f"{list(hist.columns)}; pass the same columns")
    lo = hi = None
    if intervals is not None:
        if not isinstance(intervals, (tuple, list)) or len(intervals) != 2:
            raise ValueError("intervals: expected a (lower, upper) pair as predict_interval "
                             f"returns, got {type(intervals).__name__}")
        lo, hi = (_frame(b, "intervals", fc.index).set_axis(fc.columns, axis=1)
                  for b in intervals)
    tr = None if truth is None else _frame(truth, "truth", fc.index)
    if tr is not None:
        tr.columns = fc.columns if tr.shape[1] == fc.shape[1] else tr.columns
    cols = list(fc.columns)
    if len(cols) > MAX_COLUMNS:
        warnings.warn(f"plot_forecast: {len(cols)} columns, drawing the first {MAX_COLUMNS}; "
                      "select the columns to plot (e.g. history[['a', 'b']])", UserWarning,
                      stacklevel=2)
        cols = cols[:MAX_COLUMNS]
    if ax is not None:
        if len(cols) != 1:
            raise ValueError(f"ax: one Axes takes one column, the data have {len(cols)}; "
                             "leave ax out to get one subplot per column")
        axes, fig = [ax], ax.figure
    else:
        fig, axes = plt.subplots(len(cols), 1, figsize=(9, 2.8 * len(cols)), sharex=True,
                                 squeeze=False, layout="constrained")
        axes = list(axes[:, 0])
    for a, c in zip(axes, cols):
        a.plot(hist.index, hist[c], color="0.45", lw=1.2, label="history")
        a.plot(fc.index, fc[c], color="C0", lw=1.6, label="forecast")
        if lo is not None:
            a.fill_between(fc.index, lo[c].to_numpy(float), hi[c].to_numpy(float), color="C0",
                           alpha=0.25, lw=0, label="interval")
        if tr is not None:
            a.plot(tr.index, tr[c], color="k", ls="--", lw=1.0, label="truth")
        a.set_ylabel(str(c))
        a.legend(loc="upper left", fontsize="small")
        a.grid(alpha=0.3)
    axes[-1].set_xlabel(str(hist.index.name) if hist.index.name is not None else "time")
    if isinstance(hist.index, pd.DatetimeIndex):
        fig.autofmt_xdate()
    if title is not None:
        fig.suptitle(title)
    return fig
