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

MASE needs the training fold, which a scorer is not given and a fitted forecaster
does not keep (an SSMForecaster keeps only its last ``lookback`` rows, a
statsmodels model its state); :func:`mase_scorer` therefore takes the full series
once and scales each test fold by the naive MAE of the rows before it (the
training fold of an expanding-window ``TimeSeriesSplit``). :func:`pinball_scorer`
and :func:`coverage_scorer` score quantile forecasts the same way.
:func:`score_backtest` scores the long frame of ``forecaster.backtest(...)``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

__all__ = ["mse", "mae", "rmse", "smape", "mase", "pinball", "coverage", "forecast_scorer",
           "get_scorer", "SCORERS", "score_backtest", "mase_scorer", "pinball_scorer",
           "coverage_scorer"]


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
    return mae(y_true, y_pred) / _naive_scale(y_train, season)


def _naive_scale(y_train, season: int) -> float:
    """In-sample MAE of the lag-``season`` naive forecast on y_train (MASE's denominator)."""
    yt = np.asarray(y_train, dtype=np.float64)
    if yt.shape[0] <= season:
        raise ValueError(f"y_train: needs more than season={season} rows, got {yt.shape[0]}")
    d = np.abs(yt[season:] - yt[:-season])
    scale = np.nanmean(d) if np.isfinite(d).any() else np.nan
    if not np.isfinite(scale) or scale == 0:
        raise ValueError("y_train: the naive forecast is exact in-sample (constant series), so "
                         "MASE is undefined; use mae")
    return float(scale)


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




# ----------------------------------------------------------------------------- more scorers
def _fold_index(y) -> pd.Index:
    if not isinstance(y, (pd.Series, pd.DataFrame)) or isinstance(y.index, pd.MultiIndex):
        raise TypeError(f"y: this scorer takes a wide pandas DataFrame or Series fold (it "
                        f"forecasts at the fold's stamps), got {type(y).__name__}")
    return y.index


def _quantile_fold(est, y, levels) -> tuple[np.ndarray, np.ndarray]:
    """(quantiles float (n_levels, T, C), truth float (T, C)) of fold y from est's origin."""
    idx = _fold_index(y)
    q = est.predict_quantiles(at=idx, quantiles=list(levels))
    t = np.asarray(y, dtype=np.float64).reshape(len(idx), -1)  # (T, C)
    arr = np.asarray(q, dtype=np.float64).reshape(len(idx), t.shape[1], len(levels))
    return np.moveaxis(arr, -1, 0), t


def mase_scorer(y, season: int = 1) -> Callable:
    """Negative-MASE scorer for ``GridSearchCV``; ``y`` is the full series being split.

    Each test fold's forecast MAE is divided by the in-sample MAE of the lag-``season``
    naive forecast on the rows of ``y`` before the fold's first stamp (the training
    fold of an expanding ``TimeSeriesSplit``; with ``max_train_size`` the scale uses
    all earlier rows). ``y``: wide DataFrame or Series with the stamps of the folds.
    """
    idx = _fold_index(y)

    def scorer(estimator, fold, _unused=None) -> float:
        first = _fold_index(fold)[0]
        train = np.asarray(y, dtype=np.float64)[:idx.searchsorted(first)]
        pred, truth = _forecast_fold(estimator, fold)
        return -mase(truth, pred, y_train=train, season=season)

    scorer.__name__ = "neg_mean_absolute_scaled_error"
    return scorer


def pinball_scorer(level: float) -> Callable:
    """Negative mean pinball loss of ``predict_quantiles`` at ``level`` (quantile models)."""
    pinball(np.zeros(1), np.zeros(1), level)  # validates level

    def scorer(estimator, fold, _unused=None) -> float:
        q, truth = _quantile_fold(estimator, fold, [float(level)])
        return -pinball(truth, q[0], level)

    scorer.__name__ = f"neg_pinball_{float(level):g}"
    return scorer


def coverage_scorer(coverage: float = 0.9) -> Callable:
    """Minus the gap between the observed coverage of the central interval and ``coverage``.

    Scores 0 when a ``coverage`` interval covers exactly that share of the fold, lower
    (negative) for intervals too narrow or too wide.
    """
    c = float(coverage)
    if not 0.0 < c < 1.0:
        raise ValueError(f"coverage: expected a number in (0, 1), e.g. 0.9, got {coverage!r}")

    def scorer(estimator, fold, _unused=None) -> float:
        q, truth = _quantile_fold(estimator, fold, [(1 - c) / 2, (1 + c) / 2])
        return -abs(globals()["coverage"](truth, q[0], q[1]) - c)

    scorer.__name__ = f"neg_coverage_error_{c:g}"
    return scorer


# ----------------------------------------------------------------------------- backtests
_POINT = {"mse": mse, "mae": mae, "rmse": rmse, "smape": smape}


def _mase_scales(y_train, season: int) -> dict | float:
    """Naive in-sample MAE: one float, or {column: float} for a DataFrame."""
    if isinstance(y_train, pd.DataFrame):
        return {c: _mase_scales(y_train[c].to_numpy(), season) for c in y_train.columns}
    return _naive_scale(y_train, season)


def _q_columns(df: pd.DataFrame) -> dict:
    """{level: column name} of the backtest's quantile columns ``q<level>``."""
    out = {}
    for c in df.columns:
        if isinstance(c, str) and c.startswith("q"):
            try:
                out[float(c[1:])] = c
            except ValueError:
                pass
    return dict(sorted(out.items()))


def _score_rows(d: pd.DataFrame, metrics, scales, qcols) -> dict:
    t, p = d["truth"].to_numpy(float), d["forecast"].to_numpy(float)
    if np.isnan(t).all():
        return {}
    res = {m: _POINT[m](t, p) for m in metrics if m in _POINT}
    if "mase" in metrics:
        if isinstance(scales, dict):
            sc = d["column"].map(scales).to_numpy(float)
            ok = ~np.isnan(t)
            res["mase"] = float(np.mean(np.abs(p - t)[ok] / sc[ok]))
        else:
            res["mase"] = mae(t, p) / scales
    for q, c in qcols.items():
        res[f"pinball_{c}"] = pinball(t, d[c].to_numpy(float), q)
    if qcols:
        res["pinball"] = float(np.mean([res[f"pinball_{c}"] for c in qcols.values()]))
    for q, c in qcols.items():
        hi = qcols.get(round(1 - q, 12))
        if q < 0.5 and hi is not None:
            res[f"coverage_{1 - 2 * q:g}"] = coverage(t, d[c].to_numpy(float),
                                                      d[hi].to_numpy(float))
    return res


def score_backtest(df: pd.DataFrame, metrics=None, y_train=None, season: int = 1, by=None):
    """Score the long frame of ``forecaster.backtest(...)``.

    Parameters
    ----------
    df : DataFrame with columns ``forecast``, ``truth`` (NaN truth is left out), ``column``
        and optionally ``step``, ``origin``, ``series`` and quantile columns ``q<level>``
    metrics : sequence of {"mse", "mae", "rmse", "smape", "mase"}, optional
        Point metrics; default mse, mae, rmse, smape, and mase when ``y_train`` is given. With quantile columns, ``pinball_q<level>`` per level, their mean
        ``pinball`` and ``coverage_<c>`` for each central pair (q, 1 - q) are added.
    y_train : array (T,) / Series, or DataFrame with the backtest's column names
        The history before the first origin, for "mase" (a DataFrame scales each
        column by its own naive MAE).
    season : int, lag of the naive forecast in MASE
    by : str or list of str, optional
        Columns of ``df`` to group by (e.g. "step", "column", ["series", "step"]).

    Returns
    -------
    Series of metric values (``by=None``), or a DataFrame, one row per group.
    """
    if not isinstance(df, pd.DataFrame) or not {"forecast", "truth"} <= set(df.columns):
        raise ValueError("df: expected the DataFrame of backtest(...) with columns 'forecast' "
                         "and 'truth'")
    if metrics is None:
        metrics = ("mse", "mae", "rmse", "smape") + (("mase",) if y_train is not None else ())
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    bad = [m for m in metrics if m not in {*_POINT, "mase"}]
    if bad:
        raise ValueError(f"metrics: unknown {bad}; choose from {sorted({*_POINT, 'mase'})}")
    scales = None
    if "mase" in metrics:
        if y_train is None:
            raise ValueError("y_train: 'mase' needs the training history (the rows before the "
                             "first origin); pass y_train= or leave 'mase' out")
        scales = _mase_scales(y_train, season)
        if isinstance(scales, dict) and not set(df["column"]) <= set(scales):
            raise ValueError(f"y_train: columns {list(scales)} do not cover the backtest's "
                             f"{sorted(set(df['column']), key=str)}")
    qcols = _q_columns(df)
    if by is None:
        return pd.Series(_score_rows(df, metrics, scales, qcols), dtype=float)
    keys = [by] if isinstance(by, str) else list(by)
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise ValueError(f"by: {missing} are not columns of df ({list(df.columns)})")
    rows = {g: _score_rows(d, metrics, scales, qcols)
            for g, d in df.groupby(keys if len(keys) > 1 else keys[0], sort=True)}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.names = keys
    return out
