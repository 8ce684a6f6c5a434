"""Baseline forecasters (naive, seasonal naive) and the grid machinery shared with
the classical (statsmodels) forecasters.

Every forecaster here speaks the same API as :class:`ssmts.estimators.SSMForecaster`:
``fit(y, X=None)``, ``predict(h=None, X=None, at=None)`` returning the caller's
container (a DataFrame indexed by the next stamps, a Series, long format, xarray
or numpy; see :mod:`ssmts.data`), ``predict_quantiles``, ``predict_interval``,
``update(y_new)`` and ``score(y)`` (negative MSE).

Classical models live on a regular grid: a regular series whose grid has holes
(a stamp missing from its frequency) is put back on the full grid with NaN at
the holes, and those NaN are masked like any other missing value (counted in
``n_masked_``). Irregular stamps (no frequency or fixed step) raise a
``ValueError``, except for the plain :class:`NaiveForecaster`, which only needs
the last observed value.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ssmts.data import (DataMeta, SeriesData, align_exog, from_predictions, future_times,
                        to_series_data)
from ssmts.estimators._checks import check_h, is_real

__all__ = ["SeasonalNaiveForecaster", "NaiveForecaster"]

_IRREGULAR = ("{name}: the timestamps are irregular (no frequency or fixed step), but {cls} "
              "needs a regular grid; resample first (e.g. y.resample('h').mean(), which keeps "
              "empty slots as NaN) or use SSMForecaster, which trains on irregular stamps")


def _check_quantiles(quantiles: Any) -> list[float]:
    try:
        q = [float(x) for x in np.atleast_1d(np.asarray(quantiles, dtype=np.float64))]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"quantiles: expected numbers in (0, 1), got {quantiles!r}") from exc
    if not q or not all(0.0 < x < 1.0 for x in q):
        raise ValueError(f"quantiles: expected numbers strictly between 0 and 1, got {quantiles!r}")
    return q


def _one_row_freq(y: Any, freq: str | None) -> Any:
    """A one-row pandas y with a DatetimeIndex gets a frequency (a new object), so
    the data layer can read a single new stamp; only its stamps are used here."""
    if isinstance(y, (pd.Series, pd.DataFrame)) and len(y) == 1 \
            and isinstance(y.index, pd.DatetimeIndex) and y.index.freq is None:
        return y.set_axis(pd.DatetimeIndex(y.index, freq=freq or "D"), axis=0)
    return y


class _Origin(NamedTuple):
    """Where forecasts start: the model state after the data seen, and that data's metadata."""

    state: Any  # what the subclass hooks return
    meta: DataMeta  # index and container of the data (``last`` = the origin's stamps)
    last_time: list  # float, numeric time of the last stamp of each series
    data: SeriesData  # the latest data read (its ids / source align future covariates)


class _GridForecaster(BaseEstimator):
    """Shared public face of the grid-based forecasters (not public).

    Public methods validate; subclasses implement private hooks that trust their
    inputs (``grids``: list, one float64 (T_s, C) array per series on the full
    grid, NaN where missing; ``exog``: None or a list of (T_s, C_x) arrays):

    * ``_fit(grids, exog) -> state``: learn, return the state at the end of the data.
    * ``_apply(grids, exog) -> state``: fitted parameters run over other data.
    * ``_append(state, grids, exog) -> state``: run on over new grid steps.
    * ``_forecast(state, steps, exog) -> (mean, sd)``: ``steps`` int (n, h) >= 1
      ahead; ``exog`` None or float64 (n, h, C_x); returns float64 (n, h, C) twice.
    """

    _allow_irregular = False
    _supports_exog = False

    # -- public --------------------------------------------------------------
    def fit(self, y: Any, X: Any = None) -> "_GridForecaster":
        """Fit on ``y`` (any container :func:`ssmts.data.to_series_data` reads).

        Parameters
        ----------
        y : DataFrame (wide or long), Series, xarray, or numpy (T,), (T, C), (n, T, C)
            Regularly sampled series; NaN are missing values (masked).
        X : container of covariates on y's stamps, optional
            Only for models that take exogenous regressors.

        Writes ``meta_``, ``n_features_in_``, ``feature_names_in_`` (string
        columns only), ``n_masked_`` (missing values on the grid, grid holes
        included), ``n_exog_`` and the subclass' learned attributes. Returns self.
        """
        data = to_series_data(y, name="y")
        grids = self._grids(data, "y")
        exog = self._exog_past(X, data, grids, "X")
        self.meta_ = data.meta
        self.n_features_in_ = data.n_channels
        if all(isinstance(c, str) for c in data.columns):
            self.feature_names_in_ = np.asarray(data.columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.n_masked_ = int(sum(np.isnan(g).sum() for g in grids))
        self.n_exog_ = 0 if exog is None else exog[0].shape[1]
        state = self._fit(grids, exog)
        self._origin = _Origin(state, data.meta, _last_times(data), data)
        return self

    def predict(self, context: Any = None, /, h: int | None = None, X: Any = None,
                at: Any = None) -> Any:
        """Point forecast (the mean of the forecast distribution).

        Parameters
        ----------
        context : int or container, optional (positional only)
            An int is read as ``h``. A container like y (what a ``Pipeline`` passes:
            ``pipe.predict(df, h=24)``) is a new context: the fitted model runs over
            it and the forecast starts after its last stamp (the fitted origin is
            not changed). None: forecast from the fitted / updated origin.
        h : int >= 1, optional
            Number of future grid steps; may be left out when ``at`` is given.
        X : container of future covariates, optional
            Needed when the model was fitted with ``X`` (with a context: covering
            the context's stamps too).
        at : array-like of future stamps, optional
            Forecast at these stamps (after the origin, on the grid).

        Returns
        -------
        The fitted container type indexed by the future stamps, same columns.
        """
        mean, _, meta, stamps = self._distribution(context, h, X, at)
        return from_predictions(mean, meta, stamps)

    def predict_quantiles(self, context: Any = None, /, h: int | None = None,
                          quantiles: Sequence[float] | None = None, X: Any = None,
                          at: Any = None) -> Any:
        """Quantiles of the Gaussian forecast distribution (default levels 0.1, 0.5, 0.9).

        ``context``, ``h``, ``X``, ``at`` as in :meth:`predict`. Returns the fitted
        container with a quantile axis (wide DataFrame: MultiIndex columns
        ``(column, quantile)``; see :func:`ssmts.data.from_predictions`).
        """
        q = _check_quantiles((0.1, 0.5, 0.9) if quantiles is None else quantiles)
        mean, sd, meta, stamps = self._distribution(context, h, X, at)
        z = norm.ppf(np.asarray(q))[:, None, None, None]  # (n_q, 1, 1, 1)
        return from_predictions(mean[None] + z * sd[None], meta, stamps, quantiles=q)

    def predict_interval(self, context: Any = None, /, h: int | None = None,
                         coverage: float = 0.9, X: Any = None, at: Any = None) -> tuple:
        """Central prediction interval ``(lower, upper)``, each in the fitted container type.

        ``coverage`` in (0, 1) gives the Gaussian quantiles (1 - coverage) / 2 and
        (1 + coverage) / 2; the other arguments are those of :meth:`predict`.
        """
        if isinstance(coverage, bool) or not isinstance(coverage, (int, float, np.floating)) \
                or not 0.0 < float(coverage) < 1.0:
            raise ValueError(f"coverage: expected a float in (0, 1), e.g. 0.9, got {coverage!r}")
        c = float(coverage)
        mean, sd, meta, stamps = self._distribution(context, h, X, at)
        z = norm.ppf((1 + c) / 2)
        return (from_predictions(mean - z * sd, meta, stamps),
                from_predictions(mean + z * sd, meta, stamps))

    def update(self, y_new: Any, X_new: Any = None) -> "_GridForecaster":
        """Run the fitted model over new observations without refitting (the origin moves).

        ``y_new`` must continue the data seen: same columns and series, stamps
        after the origin on the same grid (numpy input continues by position).
        Writes ``meta_`` (new last stamps) and adds y_new's missing values (grid
        holes included) to ``n_masked_``. Returns self.
        """
        check_is_fitted(self, "meta_")
        o = self._origin
        like = None if o.meta.source.kind.startswith("ndarray") else o.meta.index
        data = to_series_data(y_new, name="y_new", like=like)  # like=: one row needs no freq
        self._check_same(data, "y_new")
        steps = self._ahead(data, "y_new", o)  # (n, L) steps after the origin
        segs = []
        for s in range(data.n_series):
            L = data.lengths[s]
            seg = np.full((int(steps[s, L - 1]), data.n_channels), np.nan)  # (k_s, C)
            seg[steps[s, :L] - 1] = data.values[s, :L]
            segs.append(seg)
        exog = None
        if self.n_exog_:
            if X_new is None:
                raise ValueError("X_new: the model was fitted with X; pass X_new for the new "
                                 "stamps")
            exog = self._exog_past(X_new, data, segs, "X_new", expect=self.n_exog_)
        elif X_new is not None:
            raise ValueError("X_new: the model was fitted without X; leave X_new out")
        state = self._append(o.state, segs, exog)
        last = tuple(st[-1] for st in data.stamps)
        meta = DataMeta(dataclasses.replace(o.meta.index, last=last), o.meta.source)
        times = [self._new_last_time(data, s, steps, o) for s in range(data.n_series)]
        self._origin = _Origin(state, meta, times, data)
        self.meta_ = meta
        self.n_masked_ += int(sum(np.isnan(g).sum() for g in segs))
        return self

    def score(self, y: Any, X: Any = None) -> float:
        """Negative mean squared error of forecasting ``y`` from the fitted origin.

        ``y`` holds stamps right after the data seen (e.g. a ``TimeSeriesSplit``
        test fold); NaN values are left out; ``X`` its covariates. Higher is
        better, as sklearn's model selection expects.
        """
        check_is_fitted(self, "meta_")
        data = to_series_data(_one_row_freq(y, self._origin.meta.index.freq), name="y")
        self._check_same(data, "y")
        steps = self._ahead(data, "y", self._origin)  # (n, L)
        Xf = self._exog_future(X, data.stamps, steps) if self.n_exog_ else None
        mean, _ = self._forecast(self._origin.state, steps, Xf)  # (n, L, C)
        err = (mean - data.values)[data.mask]
        return -float(np.mean(err ** 2))

    # -- shared helpers (trust fitted state) -----------------------------------
    def _grids(self, data: SeriesData, name: str) -> list:
        """Per series: float64 (T_grid, C) values on the full grid, NaN at holes."""
        if not data.index_meta.regular:
            if self._allow_irregular:
                return [data.values[s, :L] for s, L in enumerate(data.lengths)]
            raise ValueError(_IRREGULAR.format(name=name, cls=type(self).__name__))
        grids = []
        for s, L in enumerate(data.lengths):
            pos = np.rint(data.time[s, :L]).astype(np.int64)  # (L,) grid positions from 0
            g = np.full((int(pos[-1]) + 1, data.n_channels), np.nan)
            g[pos] = data.values[s, :L]
            grids.append(g)
        return grids

    def _check_same(self, data: SeriesData, name: str, same_series: bool = True) -> None:
        src = self.meta_.source
        if list(data.columns) != list(src.columns):
            raise ValueError(f"{name}: columns {list(data.columns)} differ from those at fit "
                             f"{list(src.columns)}; pass the same columns")
        if data.n_series != len(src.ids) or (same_series and list(data.ids) != list(src.ids)):
            raise ValueError(f"{name}: series {list(data.ids)} differ from those at fit "
                             f"{list(src.ids)}")

    def _ahead(self, data: SeriesData, name: str, o: _Origin) -> np.ndarray:
        """int64 (n_series, T) steps after origin ``o`` of each stamp of ``data`` (padding: +1s)."""
        if data.source.kind.startswith("ndarray"):  # numpy continues by position
            return np.broadcast_to(np.arange(1, data.n_steps + 1), (data.n_series, data.n_steps))
        out = np.empty((data.n_series, data.n_steps), dtype=np.int64)
        for s in range(data.n_series):
            L = data.lengths[s]
            k = self._to_ahead(o.meta.index.to_steps(data.stamps[s], s), s, name, o)
            out[s, :L] = k
            out[s, L:] = k[-1] + np.arange(1, data.n_steps - L + 1)
        return out

    def _new_last_time(self, data: SeriesData, s: int, steps: np.ndarray, o: _Origin) -> float:
        """Numeric time of the last stamp of series ``s`` of ``data`` (after update)."""
        L = data.lengths[s]
        if o.meta.index.regular or data.source.kind.startswith("ndarray"):
            return o.last_time[s] + float(steps[s, L - 1])
        return float(o.meta.index.to_steps(data.stamps[s], s)[-1])

    @staticmethod
    def _to_ahead(t: np.ndarray, s: int, name: str, o: _Origin) -> np.ndarray:
        """float64 (k,) numeric times since the origin -> int64 (k,) steps after the last stamp."""
        last, index = o.meta.index.last[s], o.meta.index
        if not index.regular:  # irregular naive: only the order matters
            if np.any(t <= o.last_time[s]):
                raise ValueError(f"{name}: stamps must come after the last stamp seen {last}")
            return np.arange(1, len(t) + 1)
        k = t - o.last_time[s]
        off = np.abs(k - np.rint(k)) > 1e-6
        if np.any(off):
            raise ValueError(f"{name}: the stamp at position {int(np.flatnonzero(off)[0])} is not "
                             f"on the grid (step {index.freq or index.unit}); give grid stamps")
        k = np.rint(k).astype(np.int64)
        if k[0] < 1:
            raise ValueError(f"{name}: the first stamp is not after the forecast origin {last}; "
                             "give only stamps after the data the model has seen")
        return k

    def _context_origin(self, context: Any, X: Any) -> _Origin:
        """The fitted model run over a new context container (self is not changed)."""
        data = to_series_data(context, name="context")
        self._check_same(data, "context", same_series=False)
        grids = self._grids(data, "context")
        exog = None
        if self.n_exog_:
            if X is None:
                raise ValueError("X: the model was fitted with X; pass X covering the context's "
                                 "and the future stamps")
            exog = self._exog_past(X, data, grids, "X", expect=self.n_exog_)
        return _Origin(self._apply(grids, exog), data.meta, _last_times(data), data)

    def _distribution(self, context, h, X, at) -> tuple:
        """(mean, sd) float64 (n_series, h, C), the output DataMeta and the future stamps."""
        check_is_fitted(self, "meta_")
        if is_real(context) or isinstance(context, (bool, np.bool_, str, bytes)):
            if h is not None:
                raise TypeError("predict: h given twice (positionally and as h=)")
            context, h = None, context  # a number is h, checked below
        if h is None and at is None:
            raise ValueError("h: give the number of steps to forecast (or the stamps as at=)")
        check_h(h)
        h = None if h is None else int(h)
        o = self._origin if context is None else self._context_origin(context, X)
        times, stamps = future_times(o.meta, h=h, at=at)  # (n, h)
        steps = np.stack([self._to_ahead(times[s], s, "at", o) for s in range(len(stamps))])
        Xf = None
        if self.n_exog_:
            Xf = self._exog_future(X, stamps, steps, o.data)
        elif X is not None:
            raise ValueError("X: the model was fitted without X; leave X out")
        mean, sd = self._forecast(o.state, steps, Xf)
        return mean, sd, o.meta, stamps

    def _exog_past(self, X: Any, data: SeriesData, grids: list, name: str,
                   expect: int | None = None) -> list | None:
        """Covariates on the grid, one (T_s, C_x) array per series, or None."""
        if X is None:
            return None
        if not self._supports_exog:
            raise ValueError(f"{name}: {type(self).__name__} with these settings takes no "
                             "covariates; leave X out (or use model='sarimax' or "
                             "'unobserved_components')")
        ex = align_exog(X, data)  # (n, T, C_x) on y's stamps
        out = []
        for s, g in enumerate(grids):
            L = data.lengths[s]
            if len(g) != L:
                raise ValueError(f"{name}: y has {len(g) - L} stamps missing from its grid, where "
                                 "covariates are unknown; put y on its full grid first "
                                 "(e.g. y.asfreq(freq), NaN values are masked) and give X there")
            out.append(ex[s, :L])
        if expect is not None and out[0].shape[1] != expect:
            raise ValueError(f"{name}: {out[0].shape[1]} covariates, but the model was fitted "
                             f"with {expect}")
        return out

    def _exog_future(self, X: Any, stamps: tuple, steps: np.ndarray,
                     data: SeriesData | None = None) -> np.ndarray:
        """float64 (n, h, C_x) future covariates for steps 1..h (contiguous)."""
        if X is None:
            raise ValueError("X: the model was fitted with covariates X; pass their future "
                             "values for the forecast stamps")
        h = steps.shape[1]
        if np.any(steps != np.arange(1, h + 1)):
            raise ValueError("at: with covariates, forecast the next consecutive stamps "
                             "(h=... or at= without holes after the origin)")
        ex = align_exog(X, data if data is not None else self._origin.data, future=True,
                        stamps=stamps)  # (n, h, C_x)
        if ex.shape[2] != self.n_exog_:
            raise ValueError(f"X: {ex.shape[2]} covariates, but the model was fitted with "
                             f"{self.n_exog_}")
        return ex

    def backtest(self, y: Any, start: Any, horizon: int, stride: int = 1,
                 refit: bool = False, X: Any = None, quantiles=None) -> pd.DataFrame:
        """Forecasts from every origin ``start, start + stride, ...`` of ``y`` vs the truth.

        ``y``: the full series (one series: wide DataFrame, Series or numpy; fitted
        columns); ``start`` an int row, a fraction in (0, 1) or a stamp. Each origin
        forecasts ``horizon`` steps with ``predict(y[:origin], h)`` (``refit=True``:
        a clone fitted on ``y[:origin]``); ``quantiles`` adds ``q<level>`` columns from
        ``predict_quantiles``. Returns a long DataFrame (``origin``, ``time``, ``step``,
        ``column``, ``forecast``, ``truth``); see :func:`ssmts.estimators._backtest.backtest`.
        """
        from ssmts.estimators._backtest import backtest

        return backtest(self, y, start, horizon, stride=stride, refit=refit, X=X,
                        quantiles=quantiles)


def _last_times(data: SeriesData) -> list:
    """Numeric time of each series' last stamp, list of float (n_series,)."""
    return [float(data.time[s, L - 1]) for s, L in enumerate(data.lengths)]


class SeasonalNaiveForecaster(_GridForecaster):
    """Seasonal naive: the value one season earlier (``season_length=1``: the last value).

    ``y[T + k] = y[T + k - m * ceil(k / m)]`` for ``m = season_length``. A missing
    value at that position falls back one season further, and to the last
    observed value of the column when its whole phase is missing. Intervals use
    the spread ``sigma`` of the observed seasonal differences ``y[t] - y[t - m]``
    and grow as ``sigma * sqrt(ceil(k / m))`` (Hyndman & Athanasopoulos, FPP3 5.5).

    Parameters
    ----------
    season_length : int >= 1
        Season length in grid steps (52 for weekly data with a yearly cycle).

    Attributes
    ----------
    meta_ : DataMeta
        Time index and container of the fitted data (moves with ``update``).
    n_features_in_ : int
    feature_names_in_ : ndarray of str, shape (n_features_in_,)
        Only when the columns are strings.
    n_masked_ : int
        Missing values on the grid (NaN and grid holes).
    sigma_ : float64 ndarray, shape (n_series, C)
        Std of the one-season differences.

    Examples
    --------
    >>> import pandas as pd
    >>> y = pd.Series([1.0, 2, 3, 4, 5, 6], index=pd.date_range("2024-01-01", periods=6, freq="D"))
    >>> SeasonalNaiveForecaster(season_length=3).fit(y).predict(4).tolist()
    [4.0, 5.0, 6.0, 4.0]
    """

    def __init__(self, season_length: int = 1) -> None:
        self.season_length = season_length

    @property
    def _allow_irregular(self) -> bool:  # the last value needs no grid
        return self._m() == 1

    def _m(self) -> int:
        m = self.season_length
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
            raise ValueError(f"season_length: expected an int >= 1, got {m!r}")
        return int(m)

    def _fit(self, grids: list, exog: list | None) -> list:
        """Learns ``sigma_``; the state is the history, one (T_s, C) grid per series."""
        m = self._m()
        if any(np.isnan(g).all(axis=0).any() for g in grids):
            raise ValueError("y: a column has no observed value; drop it")
        sig = []
        for g in grids:
            d = g[m:] - g[:-m]  # (T - m, C) seasonal differences
            ok = np.isfinite(d)
            with np.errstate(invalid="ignore", divide="ignore"):
                sig.append(np.sqrt((np.where(ok, d, 0.0) ** 2).sum(0) / ok.sum(0)))  # (C,)
        self.sigma_ = np.stack(sig)  # (n, C); NaN when no difference is observed
        return self._apply(grids, exog)

    def _apply(self, grids: list, exog: list | None) -> list:
        return [g.copy() for g in grids]

    def _append(self, state: list, segs: list, exog: list | None) -> list:
        return [np.concatenate([g, s]) for g, s in zip(state, segs)]

    def _forecast(self, state: list, steps: np.ndarray, exog: np.ndarray | None) -> tuple:
        """steps int (n, h) >= 1 -> (mean, sd) float64 (n, h, C)."""
        m = self._m()
        n, h = steps.shape
        C = state[0].shape[1]
        mean = np.empty((n, h, C))
        for s, g in enumerate(state):
            src = len(g) - 1 + steps[s] - m * ((steps[s] + m - 1) // m)  # (h,) source rows
            for c in range(C):
                col = g[:, c]
                obs = np.flatnonzero(~np.isnan(col))
                fallback = col[obs[-1]] if obs.size else np.nan
                for j, t in enumerate(src):
                    k = t
                    while k >= 0 and np.isnan(col[k]):
                        k -= m
                    mean[s, j, c] = col[k] if k >= 0 else fallback
        seasons = ((steps + m - 1) // m)[:, :, None]  # (n, h, 1) = ceil(k / m)
        sd = self.sigma_[:, None, :] * np.sqrt(seasons)  # (n, h, C)
        return mean, sd


class NaiveForecaster(SeasonalNaiveForecaster):
    """Naive (random walk): every future value is the last observed one.

    :class:`SeasonalNaiveForecaster` with ``season_length=1``; also accepts
    irregular stamps (forecast at ``at=`` stamps; every step counts as one for
    the interval width).

    Examples
    --------
    >>> import numpy as np
    >>> NaiveForecaster().fit(np.array([1.0, 3.0, np.nan])).predict(2).tolist()
    [3.0, 3.0]
    """

    def __init__(self) -> None:
        pass

    def _m(self) -> int:
        return 1
