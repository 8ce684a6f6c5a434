"""Backtests (historical forecasts): forecast from every origin of a series, score later.

``backtest(est, y, start, horizon, ...)`` is what ``SSMForecaster.backtest`` and
the grid forecasters' ``backtest`` call. An *origin* is a row position ``o`` of
``y``: the forecast uses the rows before ``o`` (the context) and is compared with
the rows ``o, o + 1, ...`` (the truth). Origins run ``start, start + stride, ...``
while at least one truth row remains; the last ones have fewer than ``horizon``
steps.

* ``SSMForecaster`` with ``refit=False``: the context windows of all origins are
  cut at once and run through the network in batches (``batch`` windows per pass):
  one sequence-mode pass (``ForecastNet.encode`` / ``decode``) when ``horizon`` is
  within the net's direct horizon, else a batched recurrent origin and the
  recursive rollout ``predict`` uses. Scaling and the target transformer are
  inverted as in ``predict``. Regular data only (a grid, holes allowed).
* Every other case (grid forecasters, ``refit=True``) loops over origins:
  ``predict(y[:o], at=...)`` or ``clone(est).fit(y[:o]).predict(at=...)`` at the
  stamps of the truth rows (numpy y: ``h``); one series (wide DataFrame, Series
  or numpy) only.

Steps count rows of ``y``: step k of origin o is row ``o + k - 1``, forecast at
that row's stamp (on a regular grid with holes, not necessarily k grid steps
ahead). Irregular timestamps are not supported (``ValueError``): ``predict`` on
a context re-reads its time unit (the median gap) from that context, so there is
no one set of forecasts to batch; resample onto a grid first.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import clone

from ssmts.data import SeriesData, to_series_data

__all__ = ["backtest"]


def _check_int(x: Any, name: str, low: int) -> int:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)) or x < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {x!r}")
    return int(x)


def _first_origins(start: Any, data: SeriesData) -> np.ndarray:
    """int64 (n_series,) first origin row per series from an int, a fraction or a stamp."""
    L = data.lengths
    if isinstance(start, (bool, np.bool_)):
        raise ValueError(f"start: expected an int row, a fraction in (0, 1) or a stamp, got "
                         f"{start!r}")
    if isinstance(start, (int, np.integer)):
        pos = np.full(L.shape, int(start), dtype=np.int64)
    elif isinstance(start, (float, np.floating)):
        if not 0.0 < float(start) < 1.0:
            raise ValueError(f"start: a float is a fraction of the series and must lie in "
                             f"(0, 1), got {start!r}; pass an int for a row position")
        pos = np.floor(L * float(start)).astype(np.int64)
    else:
        pos = np.empty(L.shape, dtype=np.int64)
        for s, st in enumerate(data.stamps):
            try:
                key = pd.Timestamp(start) if isinstance(st, pd.DatetimeIndex) else start
                if isinstance(st, pd.DatetimeIndex) and st.tz is not None and key.tz is None:
                    key = key.tz_localize(st.tz)
                pos[s] = st.searchsorted(key)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"start: {start!r} cannot be compared with y's stamps "
                                 f"({type(st).__name__}); pass a stamp of that kind, an int "
                                 "row or a fraction in (0, 1)") from exc
    if np.any(pos < 1) or not np.any(pos < L):
        raise ValueError(f"start: gives first origin row(s) {pos.tolist()} for series of "
                         f"lengths {L.tolist()}; an origin needs at least one row before it "
                         "and one truth row after it (1 <= start < length)")
    return pos


def _origins(first: np.ndarray, data: SeriesData, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(series, origin) int64 arrays (n_win,), series-major, origins increasing."""
    ser, org = [], []
    for s, (a, L) in enumerate(zip(first, data.lengths)):
        o = np.arange(a, L, stride, dtype=np.int64)
        ser.append(np.full(o.shape, s, dtype=np.int64))
        org.append(o)
    return np.concatenate(ser), np.concatenate(org)


def _qname(q: float) -> str:
    return f"q{q:g}"


def _frame(data: SeriesData, ser, org, horizon: int, pred, qpred, levels) -> pd.DataFrame:
    """Long frame from pred float (n_win, horizon, C) and qpred (n_levels, n_win, horizon, C)."""
    C = data.n_channels
    k = np.arange(horizon)
    ok = (org[:, None] + k[None]) < data.lengths[ser][:, None]  # (n_win, horizon)
    w, j = np.nonzero(ok)
    rows = org[w] + j  # row of each kept (window, step)
    truth = data.values[ser[w], rows]  # (n_rows, C)
    origin = when = None
    for s in np.unique(ser[w]):  # stamps taken per series, in the (series-major) row order
        pick = ser[w] == s
        o_s, t_s = data.stamps[s].take(org[w][pick] - 1), data.stamps[s].take(rows[pick])
        origin = o_s if origin is None else origin.append(o_s)
        when = t_s if when is None else when.append(t_s)
    cols = {"origin": origin.repeat(C).rename(None), "time": when.repeat(C).rename(None),
            "step": np.repeat(j + 1, C),
            "column": np.tile(np.asarray(list(data.columns), dtype=object), len(w)),
            "forecast": pred[w, j].reshape(-1), "truth": truth.reshape(-1)}
    for i, q in enumerate(levels or ()):
        cols[_qname(q)] = qpred[i][w, j].reshape(-1)
    out = pd.DataFrame(cols)
    if data.n_series > 1:
        out.insert(0, "series", np.repeat(np.asarray(data.ids, dtype=object)[ser[w]], C))
    return out


def _check_columns(data: SeriesData, fitted: tuple) -> None:
    if list(data.columns) != list(fitted):
        raise ValueError(f"y: columns {list(data.columns)} differ from those seen in fit "
                         f"{list(fitted)}; pass the full series with the fitted columns, in "
                         "the same order")


# ------------------------------------------------------------------------ SSMForecaster
@torch.no_grad()
def _net_pass(est, v, m, g, ex, fg, fex) -> np.ndarray:
    """Scaled outputs (b, h, C, n_out) of a batch of full context windows."""
    net = est.net_
    t = lambda a: None if a is None else torch.as_tensor(a, dtype=torch.float32)
    v, m, g, ex, fg, fex = t(np.nan_to_num(v)), t(m), t(g), t(ex), t(fg), t(fex)
    stats = net.window_stats(v, m)
    if fg.shape[1] <= est.horizon:  # one sequence-mode pass of the network
        hidden, pending = net.encode(v, m, g, ex, stats)
        tau = torch.cumsum(net.fold_rows(fg), dim=1) + pending[:, None]
        return net.decode(hidden, tau, fex, stats).numpy().astype(np.float64)
    from ssmts.estimators import _rollout as _ro

    origin = net.initial_state(v.shape[0], stats)  # recurrent origin, batched over windows
    for i in range(v.shape[1]):
        origin = net.step(v[:, i], m[:, i], g[:, i], origin, None if ex is None else ex[:, i])
    return _ro.rollout(net, origin, fg.numpy(), None if fex is None else fex.numpy(),
                       est.horizon, est._point)


def _ssm_batched(est, y, first, stride, horizon, X, quantiles, batch):
    from ssmts.estimators import _rollout as _ro

    raw = est._read(y, "y")
    _check_columns(raw, est.columns_)
    if raw.n_series != est.context_.n_series:
        raise ValueError(f"y: has {raw.n_series} series, the model was fitted on "
                         f"{est.context_.n_series}; pass the fitted series' full data")
    if not raw.index_meta.regular:
        raise ValueError("y: irregular timestamps; the batched backtest needs a regular grid. "
                         "Resample y onto a grid, or use refit=True (one fit per origin)")
    first = _first_origins(first, raw)
    if np.any(first < est.lookback):
        raise ValueError(f"start: the first origin row {int(first.min())} leaves fewer than "
                         f"lookback={est.lookback} context rows; pass start >= {est.lookback}")
    levels = None
    if est.loss == "quantile":
        levels = est._check_levels(quantiles, "backtest")
    elif quantiles is not None:
        est._check_levels(quantiles, "backtest")  # raises: no quantile model
    data = est._forward_target(raw)
    sc = est._scale(data)
    ex = est._exog(X, data, name="X")  # (n, T, C_x) or None
    ser, org = _origins(first, raw, stride)
    T = data.n_steps
    vals, mask, gaps = sc.values, sc.mask, sc.gaps
    preds, qpreds = [], []
    lb = est.lookback
    for a in range(0, len(org), batch):
        s, o = ser[a:a + batch, None], org[a:a + batch, None]
        crow = o - lb + np.arange(lb)  # (b, lookback) context rows
        fut = o + np.arange(horizon)  # (b, horizon)
        inside = fut < data.lengths[s]
        frow = np.minimum(fut, T - 1)
        fg = np.where(inside, gaps[s, frow], 1.0)  # padding steps: any gap, dropped later
        fex = None if ex is None else np.where(inside[..., None], ex[s, frow], 0.0)
        out = _net_pass(est, vals[s, crow], mask[s, crow], gaps[s, crow],
                        None if ex is None else ex[s, crow], fg, fex)  # (b, h, C, n_out)
        sw = ser[a:a + batch]
        p = est._inverse_target(est.scaler_.inverse_transform(est._point(out), series=sw))
        preds.append(p)
        if levels is not None:
            q = _ro.interp_quantiles(np.sort(out, axis=-1), est._quantile_levels(), levels)
            q = est.scaler_.inverse_transform(np.moveaxis(q, -1, 0), series=sw)
            qpreds.append(est._inverse_target(q))
    pred = np.concatenate(preds)
    qpred = None if levels is None else np.concatenate(qpreds, axis=1)
    return _frame(raw, ser, org, horizon, pred, qpred, levels)


# ------------------------------------------------------------------------ loop over origins
def _cut(y: Any, o: int) -> Any:
    """The first ``o`` rows of a one-series pandas / numpy y."""
    if isinstance(y, (pd.Series, pd.DataFrame)):
        return y.iloc[:o]
    return y[:o]


def _as_steps(pred: Any, hh: int, C: int) -> np.ndarray:
    """A forecast container of one series -> float (hh, C)."""
    return np.asarray(pred, dtype=np.float64).reshape(hh, C)


def _as_quantiles(pred: Any, hh: int, C: int, nq: int) -> np.ndarray:
    """predict_quantiles' container of one series -> float (nq, hh, C)."""
    if isinstance(pred, pd.DataFrame):  # (hh, C * nq) columns (column, quantile), or (hh, nq)
        return np.moveaxis(pred.to_numpy(dtype=np.float64).reshape(hh, C, nq), -1, 0)
    return np.asarray(pred, dtype=np.float64).reshape(nq, hh, C)


def _loop(est, y, first, stride, horizon, refit, X, quantiles, fitted_cols):
    if not isinstance(y, (pd.Series, pd.DataFrame, np.ndarray)) or (
            isinstance(y, pd.DataFrame) and isinstance(y.index, pd.MultiIndex)):
        raise ValueError(f"y: this backtest (refit=True, or a grid forecaster) cuts y by rows "
                         f"and takes a wide DataFrame, a Series or a numpy array of one "
                         f"series, got {type(y).__name__}; backtest each series on its own")
    data = to_series_data(y, name="y")
    if data.n_series != 1:
        raise ValueError(f"y: holds {data.n_series} series; this backtest takes one series "
                         "(pass each series' frame on its own)")
    _check_columns(data, fitted_cols)
    first = _first_origins(first, data)
    ser, org = _origins(first, data, stride)
    C, L = data.n_channels, int(data.lengths[0])
    levels = None if quantiles is None else [float(q) for q in quantiles]
    pred = np.full((len(org), horizon, C), np.nan)
    qpred = None if levels is None else np.full((len(levels), len(org), horizon, C), np.nan)
    t0 = time.perf_counter()
    for i, o in enumerate(org):
        o, hh = int(o), int(min(horizon, L - o))
        ctx = _cut(y, o)
        if refit:
            model = clone(est).fit(ctx) if X is None else clone(est).fit(ctx, X)
            args = ()
        else:
            model, args = est, (ctx,)
        # pandas: forecast at the truth rows' own stamps (right also on a grid with holes)
        when = {"h": hh} if isinstance(y, np.ndarray) else {"at": data.stamps[0][o:o + hh]}
        pred[i, :hh] = _as_steps(model.predict(*args, X=X, **when), hh, C)
        if levels is not None:
            qp = model.predict_quantiles(*args, quantiles=levels, X=X, **when)
            qpred[:, i, :hh] = _as_quantiles(qp, hh, C, len(levels))
        if refit and ((i + 1) % 10 == 0 or i + 1 == len(org)):
            print(f"backtest: refit {i + 1}/{len(org)} origins, "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return _frame(data, ser, org, horizon, pred, qpred, levels)


# ------------------------------------------------------------------------ entry point
def backtest(est, y: Any, start: Any, horizon: int, stride: int = 1, refit: bool = False,
             X: Any = None, quantiles=None, batch: int = 256) -> pd.DataFrame:
    """Forecasts from every origin of ``y`` against the truth (see the module docstring).

    Parameters
    ----------
    est : fitted SSMForecaster or grid forecaster (SeasonalNaive / Naive / Statsmodels)
    y : container like the fitted y (same columns), the full series: history and tail
    start : int, float in (0, 1) or stamp
        First origin: a row position (the context is the rows before it), a fraction
        of each series' length, or a stamp (the first row at or after it).
    horizon : int >= 1, steps forecast from each origin
    stride : int >= 1, rows between origins
    refit : bool, refit a clone on ``y[:origin]`` at every origin (slow; one series)
    X : covariates covering y's stamps, optional (as the model was fitted)
    quantiles : sequence of float, optional
        Quantile levels to add as columns ``q<level>``; an SSMForecaster fitted with
        ``loss="quantile"`` adds its trained levels by default.
    batch : int >= 1, windows per network pass (SSMForecaster, refit=False)

    Returns
    -------
    DataFrame, one row per (origin, step, column): ``origin`` (stamp of the last
    context row), ``time`` (stamp forecast), ``step`` (1..horizon), ``column``,
    ``forecast``, ``truth`` (NaN where y is missing), then the quantile columns;
    a leading ``series`` column when y holds several series.
    """
    horizon = _check_int(horizon, "horizon", 1)
    stride = _check_int(stride, "stride", 1)
    batch = _check_int(batch, "batch", 1)
    if not isinstance(refit, (bool, np.bool_)):
        raise ValueError(f"refit: expected True or False, got {refit!r}")
    if hasattr(est, "net_") and not refit:
        return _ssm_batched(est, y, start, stride, horizon, X, quantiles, batch)
    if hasattr(est, "net_"):
        cols = est.columns_
        if quantiles is None and est.loss == "quantile":
            quantiles = est._quantile_levels()
    elif hasattr(est, "meta_"):
        cols = est.meta_.source.columns
    else:
        raise ValueError(f"est: {type(est).__name__} is not fitted; call fit(y) first")
    return _loop(est, y, start, stride, horizon, bool(refit), X, quantiles, cols)
