"""Forecast accuracy metrics, and scorers that make them work in sklearn model selection.

Metric functions take arrays of the same shape (NaN in ``y_true`` is left out):

========================  ==================================================
``mse``, ``mae``          mean squared / absolute error
``rmse``                  root mean squared error
``smape``                 symmetric MAPE in percent, 200 |e| / (|y| + |ŷ|)
``mase``                  MAE divided by the in-sample MAE of the seasonal
                          naive forecast on ``y_train`` (lag ``season``)
``pinball``               mean pinball (quantile) loss at one level
``coverage``              share of observed values inside [lower, upper]
========================  ==================================================

sklearn's string scorers (``scoring="neg_mean_absolute_error"``) cannot score a
forecaster: a time-series fold has no separate ``y``, so sklearn calls them
without one and every fold scores NaN. :func:`get_scorer` gives scorers that
forecast the test fold's stamps from the fitted model and compare with the
fold's values, in the data's own units (through a :class:`ForecastPipeline`'s
transformers too)::

    GridSearchCV(SSMForecaster(), grid, cv=TimeSeriesSplit(3),
                 scoring=ssmts.metrics.get_scorer("neg_mean_absolute_error"))
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

__all__ = ["mse", "mae", "rmse", "smape", "mase", "pinball", "coverage", "forecast_scorer",
           "get_scorer", "SCORERS"]


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"y_pred: shape {p.shape} differs from y_true's {t.shape}")
    ok = ~np.isnan(t)
    if not ok.any():
        raise ValueError("y_true: holds no observed value (all NaN); nothing to score")
    return t[ok], p[ok]


def mse(y_true, y_pred) -> float:
    """Mean squared error over the observed entries of ``y_true``."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean((p - t) ** 2))


def mae(y_true, y_pred) -> float:
    """Mean absolute error over the observed entries of ``y_true``."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(p - t)))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    return float(np.sqrt(mse(y_true, y_pred)))


def smape(y_true, y_pred) -> float:
    """Symmetric MAPE in percent (0 where truth and forecast are both 0)."""
    t, p = _pair(y_true, y_pred)
    den = np.abs(t) + np.abs(p)
    return float(np.mean(np.where(den > 0, 200.0 * np.abs(p - t) / np.where(den > 0, den, 1),
                                  0.0)))


def mase(y_true, y_pred, y_train, season: int = 1) -> float:
    """MAE scaled by the in-sample MAE of the lag-``season`` naive forecast on ``y_train``.

    Parameters
    ----------
    y_true, y_pred : arrays of one shape (..., T, C) or (T,)
    y_train : array (T_train,) or (T_train, C), the history the model saw
    season : int, lag of the naive forecast (1 = last value)
    """
    yt = np.asarray(y_train, dtype=np.float64)
    if yt.shape[0] <= season:
        raise ValueError(f"y_train: needs more than season={season} rows, got {yt.shape[0]}")
    d = np.abs(yt[season:] - yt[:-season])
    scale = np.nanmean(d)
    if not np.isfinite(scale) or scale == 0:
        raise ValueError("y_train: the naive forecast is exact in-sample (constant series), so "
                         "MASE is undefined; use mae")
    return mae(y_true, y_pred) / float(scale)


def pinball(y_true, y_quantile, level: float) -> float:
    """Mean pinball loss of the quantile forecast ``y_quantile`` at ``level`` in (0, 1)."""
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level: expected a number strictly between 0 and 1, got {level!r}")
    t, q = _pair(y_true, y_quantile)
    e = t - q
    return float(np.mean(np.maximum(level * e, (level - 1) * e)))


def coverage(y_true, lower, upper) -> float:
    """Share of observed ``y_true`` values with ``lower <= y <= upper``."""
    t, lo = _pair(y_true, lower)
    _, hi = _pair(y_true, upper)
    return float(np.mean((t >= lo) & (t <= hi)))


# ----------------------------------------------------------------------------- scorers
def _values(y) -> np.ndarray:
    from ssmts.data import to_series_data

    return np.asarray(to_series_data(y, name="y").values)  # (n, T, C)


def _forecast_fold(est, y) -> tuple[np.ndarray, np.ndarray]:
    """(forecast, truth), float arrays (n, T, C) of fold ``y`` from ``est``'s fitted origin."""
    from ssmts.estimators.pipeline import ForecastPipeline

    if isinstance(est, ForecastPipeline):
        return est._forecast_fold(y)
    if not hasattr(est, "predict"):
        raise TypeError(f"estimator: {type(est).__name__} has no predict; pass an ssmts "
                        "forecaster (or a ForecastPipeline ending in one)")
    if getattr(est, "n_exog_", 0):
        raise ValueError("estimator: fitted with covariates X, which a scorer cannot pass; "
                         "use the forecaster's score(y, X)")
    if isinstance(y, (pd.Series, pd.DataFrame)):
        if isinstance(y.index, pd.MultiIndex):
            raise ValueError("y: long format with several series cannot be scored at shared "
                             "stamps; score each series, or use the forecaster's score(y)")
        pred = est.predict(at=y.index)
    elif isinstance(y, np.ndarray):
        pred = est.predict(y.shape[-2] if y.ndim == 3 else y.shape[0])
    else:
        raise TypeError(f"y: scorers take a pandas DataFrame / Series or a numpy array, got "
                        f"{type(y).__name__}")
    p = np.asarray(pred, dtype=np.float64)
    t = _values(y)
    return p.reshape(t.shape), t


def forecast_scorer(metric: Callable, greater_is_better: bool = False) -> Callable:
    """A scorer ``scorer(estimator, y, _=None) -> float`` for ``GridSearchCV(scoring=...)``.

    It forecasts the stamps of the test fold ``y`` from the fitted origin (the end of
    the training fold) and returns ``metric(truth, forecast)``, negated when lower is
    better (sklearn maximises scores).
    """
    sign = 1.0 if greater_is_better else -1.0

    def scorer(estimator, y, _unused=None) -> float:
        pred, truth = _forecast_fold(estimator, y)
        return sign * float(metric(truth, pred))

    scorer.__name__ = f"{'' if greater_is_better else 'neg_'}{metric.__name__}"
    return scorer


SCORERS = {
    "neg_mean_squared_error": (mse, False),
    "neg_root_mean_squared_error": (rmse, False),
    "neg_mean_absolute_error": (mae, False),
    "neg_symmetric_mean_absolute_percentage_error": (smape, False),
}


def get_scorer(name: str) -> Callable:
    """The forecast scorer for an sklearn scoring name (see ``SCORERS``)."""
    if name not in SCORERS:
        raise ValueError(f"name: expected one of {sorted(SCORERS)}, got {name!r}")
    metric, greater = SCORERS[name]
    return forecast_scorer(metric, greater)


