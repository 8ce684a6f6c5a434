"""Classical (statsmodels) state-space forecasters with the ssmts estimator API.

:class:`StatsmodelsForecaster` wraps three linear Gaussian state-space models of
``statsmodels.tsa.statespace``, fitted by maximum likelihood through the Kalman
filter:

=========================  ====================================================
``model=``                 statsmodels class
=========================  ====================================================
``"unobserved_components"``  ``structural.UnobservedComponents`` (trend + seasonal)
``"ets"``                  ``exponential_smoothing.ExponentialSmoothing`` (additive ETS)
``"sarimax"``              ``sarimax.SARIMAX``
=========================  ====================================================

They are univariate: a frame with several columns (or several series) gets one
model per column and series, fitted independently. Missing values are NaN on
the regular grid and the Kalman filter skips them (counted in ``n_masked_``).

Seasonality follows the index frequency unless ``seasonal_periods`` is given
(``"unobserved_components"`` and ``"ets"``; ``"sarimax"`` takes its season from
``seasonal_order``). The season length found is ``seasonal_periods_``:

=================================================  ==============  ===========================
index frequency (pandas alias, multiples ``n``)    season length   UnobservedComponents seasonal
=================================================  ==============  ===========================
monthly (``MS``, ``ME``/``M``, ``BMS``, ...)       12 / n          dummy (one state a step)
quarterly (``QS``, ``QE``/``Q``, ...)              4 / n           dummy
weekly (``W``, ``W-SAT``, ...)                     52.18 / n       trigonometric, 3 harmonics
                                                   (ETS: 52)
daily (``D``)                                      7               dummy
business daily (``B``)                             5               dummy
hourly (``h``)                                     24 / n          trigonometric, 3 harmonics
yearly (``YS``, ``YE``/``Y``), anything else,      1 (no season)   none
an irregular, integer or float index, numpy
=================================================  ==============  ===========================

A multiple whose season would not be a whole number of steps (``"2D"``,
``"5h"``) or shorter than 2 steps gets no season. A season is only followed
when every series holds at least two seasons of grid steps (else no season,
with a ``UserWarning``). Seasons longer than 12 steps use a trigonometric
seasonal with a few harmonics in UnobservedComponents (a dummy seasonal has
one state per step, which makes long seasons slow).

The fitted model is also a control-theory object: :meth:`StatsmodelsForecaster.lti`
returns its state-space matrices as an :class:`ssmts.ssm.lti.LTISystem`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from ssmts.estimators.baselines import _GridForecaster
from ssmts.ssm.lti import LTISystem

__all__ = ["StatsmodelsForecaster"]

_MODELS = ("unobserved_components", "ets", "sarimax")
_SARIMAX_TRENDS = ("n", "c", "t", "ct")


_WEEKS_PER_YEAR = 52.18  # 365.25 / 7, rounded as statsmodels' examples do
_DUMMY_MAX = 12  # longer (or fractional) seasons: trigonometric in UnobservedComponents
_AUTO_HARMONICS = 3


def _offset_season(off: Any) -> float:
    """Season length in steps of a pandas offset (see the module table); 1.0 for none."""
    po = pd.offsets
    n = int(getattr(off, "n", 1) or 1)
    if isinstance(off, po.Week):
        return _WEEKS_PER_YEAR / n if _WEEKS_PER_YEAR / n >= 2 else 1.0
    cycles = ((12, (po.MonthBegin, po.MonthEnd, po.BusinessMonthBegin, po.BusinessMonthEnd)),
              (4, (po.QuarterBegin, po.QuarterEnd, po.BQuarterBegin, po.BQuarterEnd)),
              (7, (po.Day,)), (5, (po.BusinessDay,)), (24, (po.Hour,)))
    for cycle, kinds in cycles:
        if type(off) in kinds:  # exact types: a subclass may mean another calendar
            return float(cycle // n) if n >= 1 and cycle % n == 0 and cycle // n >= 2 else 1.0
    return 1.0


def season_from_index(meta: Any) -> float:
    """Season length (grid steps) that the time index of ``meta`` suggests.

    Parameters
    ----------
    meta : ssmts.data.TimeIndexMeta
        The fitted data's time index description (``meta_.index``).

    Returns
    -------
    float
        12.0 monthly, 4.0 quarterly, 52.18 weekly, 7.0 daily, 5.0 business
        daily, 24.0 hourly (divided by the frequency's multiple), 1.0 for
        yearly data and whenever the frequency is unknown, irregular or the
        index is not a datetime / period index.
    """
    if not getattr(meta, "regular", False) or meta.kind not in ("datetime", "period"):
        return 1.0
    try:
        if meta.kind == "period":
            off = pd.Period(meta.last[0]).freq
        else:
            from pandas.tseries.frequencies import to_offset

            off = to_offset(meta.freq) if meta.freq else None
    except (TypeError, ValueError):
        return 1.0
    return 1.0 if off is None else _offset_season(off)


_MIN_OBS = 3  # observed values a column needs before a likelihood fit is attempted


def _pow2_scale(col: np.ndarray) -> float:
    """A power of two near the typical step-to-step change of ``col`` (1.0 without one).

    The models are fitted on ``col / scale``: values of any magnitude (1e-30, 1e200)
    reach statsmodels' optimiser with innovations near 1, and dividing by a power
    of two is exact. The scale follows the mean |difference| of consecutive
    observed values, not the level: scaled by its largest |value|, a series with
    a high level and small changes (weekly CO2: ~350 ppm, changes of ~0.5) has
    variances near 1e-6, where the likelihood optimiser stops after a few
    iterations far from the optimum. Falls back to the largest |value| when the
    observed values do not change, and to 1.0 without observed values.
    """
    obs = col[np.isfinite(col)]
    if obs.size == 0:
        return 1.0
    step = float(np.mean(np.abs(np.diff(obs)))) if obs.size > 1 else 0.0
    m = step if np.isfinite(step) and step > 0 else float(np.max(np.abs(obs)))
    return float(2.0 ** np.round(np.log2(m))) if np.isfinite(m) and m > 0 else 1.0


class _ConstantFit:
    """The "fit" of a column whose observed values are all equal: that value, no spread.

    statsmodels cannot estimate variances from a constant series; this keeps the
    methods the forecaster calls (``apply``, ``append``, ``get_forecast``).
    """

    mle_retvals = {"converged": True}

    def __init__(self, value: float):
        self.value = float(value)

    def apply(self, y, refit=False, **kw) -> "_ConstantFit":
        return self

    def append(self, y, **kw) -> "_ConstantFit":
        return self

    def get_forecast(self, steps: int, **kw):
        from types import SimpleNamespace

        return SimpleNamespace(predicted_mean=np.full(steps, self.value),
                               var_pred_mean=np.zeros(steps))


def _int_tuple(x: Any, n: int, name: str) -> tuple:
    if isinstance(x, (str, bytes)) or not hasattr(x, "__len__") or len(x) != n or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0 for v in x):
        raise ValueError(f"{name}: expected a tuple of {n} non-negative ints, got {x!r}")
    return tuple(int(v) for v in x)


class StatsmodelsForecaster(_GridForecaster):
    """A statsmodels state-space model behind the ssmts forecaster API.

    Parameters
    ----------
    model : {"unobserved_components", "ets", "sarimax"}
        Which model (see the module docstring).
    seasonal_periods : int or float, optional
        Season length in grid steps. None (default): follow the index frequency
        (the module table: 12 for monthly, 52.18 for weekly, 24 for hourly data,
        none for yearly data or an index without a frequency). 0 or 1: no season.
        ``"ets"``: a whole number (one state per season step; a weekly index's
        52.18 becomes 52). ``"unobserved_components"``: a season of up to 12
        steps gets a dummy seasonal (one state per step), a longer or fractional
        one (e.g. 52.18) a trigonometric seasonal with ``harmonics`` sine/cosine
        pairs. Ignored by ``"sarimax"`` (its season is ``seasonal_order``).
    harmonics : int, optional
        ``"unobserved_components"`` only: number of sine/cosine pairs of the
        trigonometric seasonal (2 states each), at most half the season length.
        Given, the seasonal is trigonometric whatever the season length. None: 3
        pairs for seasons longer than 12 steps, a dummy seasonal for shorter ones.
        Ignored when there is no season.
    trend : optional
        ``"ets"``: bool, additive trend (default True). ``"unobserved_components"``:
        the statsmodels level specification, e.g. ``"local level"``,
        ``"local linear trend"`` (default), ``"smooth trend"``. ``"sarimax"``:
        ``"n"`` (default), ``"c"``, ``"t"`` or ``"ct"``.
    damped_trend : bool
        ``"ets"`` only: damp the trend.
    order : tuple of 3 ints
        ``"sarimax"`` only: (p, d, q).
    seasonal_order : tuple of 4 ints
        ``"sarimax"`` only: (P, D, Q, s).
    maxiter : int
        Maximum optimiser iterations of the likelihood fit.
    model_kwargs, fit_kwargs : dict, optional
        Passed on to the statsmodels model constructor and to its ``fit``.

    Attributes
    ----------
    results_ : list of lists of statsmodels MLEResults
        ``results_[s][c]``: the fitted model of series s, column c (moves with ``update``).
    seasonal_periods_ : float
        Season length used, in grid steps (1.0: no season): ``seasonal_periods``
        when given, else the one the index frequency suggests (module table).
        ``"sarimax"``: the ``s`` of ``seasonal_order`` when it has a seasonal part.
    harmonics_ : int or None
        Sine/cosine pairs of a trigonometric seasonal (``"unobserved_components"``);
        None for a dummy seasonal, no season, or another model.
    y_scale_ : float ndarray, shape (n_series, n_features_in_)
        Power of two each column is divided by before fitting (near the mean
        |change| between its consecutive observed values), so any magnitude fits;
        forecasts and ``lti`` are in y's units. A
        column whose observed values are all equal gets no model: it forecasts that
        value with zero spread.
    converged_ : bool ndarray, shape (n_series, n_features_in_)
        Whether each likelihood optimisation converged (a warning names those that did not).
    meta_ : DataMeta
        Time index and container of the data seen so far.
    n_features_in_ : int
    feature_names_in_ : ndarray of str, shape (n_features_in_,)
        Only when the columns are strings.
    n_masked_ : int
        Missing values the Kalman filter skipped (NaN and grid holes).
    n_exog_ : int
        Number of covariates in ``X`` (0 without).

    Notes
    -----
    Forecasts are the means of the Gaussian forecast distribution; intervals and
    quantiles come from its variance. ``update`` appends observations to the
    statsmodels results (``results.append``, parameters kept, no refit) and re-runs
    the filter. Irregular stamps raise a ``ValueError``: these models need a grid.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> t = np.arange(120)
    >>> noise = 0.1 * np.random.default_rng(0).standard_normal(120)
    >>> y = pd.Series(np.sin(2 * np.pi * t / 12) + 0.01 * t + noise,
    ...               index=pd.date_range("2015-01", periods=120, freq="MS"))
    >>> f = StatsmodelsForecaster()  # the monthly index gives a 12-step season
    >>> f.fit(y).predict(3).index[0]
    Timestamp('2025-01-01 00:00:00')
    >>> f.seasonal_periods_, f.harmonics_
    (12.0, None)
    """

    def __init__(self, model: str = "unobserved_components", seasonal_periods: float | None = None,
                 harmonics: int | None = None, trend: Any = None, damped_trend: bool = False,
                 order: tuple = (1, 0, 0), seasonal_order: tuple = (0, 0, 0, 0),
                 maxiter: int = 200, model_kwargs: dict | None = None,
                 fit_kwargs: dict | None = None) -> None:
        self.model = model
        self.seasonal_periods = seasonal_periods
        self.harmonics = harmonics
        self.trend = trend
        self.damped_trend = damped_trend
        self.order = order
        self.seasonal_order = seasonal_order
        self.maxiter = maxiter
        self.model_kwargs = model_kwargs
        self.fit_kwargs = fit_kwargs

    @property
    def _supports_exog(self) -> bool:
        return self.model != "ets"

    # -- building the statsmodels model ----------------------------------------
    def _season(self, grids: list) -> tuple[float, int | None]:
        """Validated (season length in steps, harmonics or None); 1.0: no season.

        grids: float64 (T_s, C) per series on the full grid; the season followed
        from the index needs two seasons of steps in every series."""
        sp, hm = self.seasonal_periods, self.harmonics
        if sp is not None and (isinstance(sp, bool) or not isinstance(sp, (int, float, np.number))
                               or not np.isfinite(sp) or not (sp in (0, 1) or sp >= 2)):
            raise ValueError("seasonal_periods: expected None (follow the index frequency), 0 or "
                             f"1 (no season) or a season length >= 2 grid steps, got {sp!r}")
        if hm is not None and (isinstance(hm, bool) or not isinstance(hm, (int, np.integer))
                               or hm < 1):
            raise ValueError(f"harmonics: expected an int >= 1 or None, got {hm!r}")
        if self.model == "sarimax":
            P, D, Q, s = _int_tuple(self.seasonal_order, 4, "seasonal_order")
            return (float(s) if s > 1 and (P or D or Q) else 1.0), None
        if sp is not None and sp <= 1:
            if hm is not None and self.model == "unobserved_components":
                raise ValueError(f"harmonics: given ({hm}) with seasonal_periods={sp!r}, which "
                                 "turns the season off; leave harmonics out or give a season")
            return 1.0, None
        followed = sp is None
        period = season_from_index(self.meta_.index) if followed else float(sp)
        if followed and period > 1:
            shortest = min(len(g) for g in grids)
            if shortest < 2 * period:
                warnings.warn(
                    f"{type(self).__name__}: the index frequency {self.meta_.index.freq!r} "
                    f"suggests a season of {period:g} steps, but a series has only {shortest} "
                    "grid steps (fewer than two seasons), so it is fitted without a season; "
                    "pass seasonal_periods= to force one, or seasonal_periods=1 to silence "
                    "this", UserWarning, stacklevel=4)
                period = 1.0
        if period <= 1:
            return 1.0, None
        if self.model == "ets":
            if not float(period).is_integer():
                if not followed:
                    raise ValueError(f"seasonal_periods: ets needs a whole number of steps, got "
                                     f"{sp!r}; round it (e.g. 52 for weekly data)")
                period = float(round(period))
            return period, None
        if hm is not None:
            if 2 * hm > period:
                raise ValueError(f"harmonics: at most half the season ({period:g} / 2), got {hm}; "
                                 "lower harmonics")
            return period, int(hm)
        if float(period).is_integer() and period <= _DUMMY_MAX:
            return period, None
        return period, min(_AUTO_HARMONICS, int(period // 2))

    def _spec(self, period: float, harmonics: int | None) -> tuple[type, dict]:
        """Validated (statsmodels class, constructor kwargs without endog / exog)
        for a season of ``period`` steps (1.0: none) from :meth:`_season`."""
        if self.model == "ets":
            from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

            trend = True if self.trend is None else self.trend
            if not isinstance(trend, (bool, np.bool_)):
                raise ValueError(f"trend: for model='ets' expected True/False, got {trend!r}")
            return ExponentialSmoothing, {
                "trend": bool(trend), "damped_trend": bool(self.damped_trend and trend),
                "seasonal": None if period <= 1 else int(period),
                "initialization_method": "concentrated"}  # the only one that accepts NaN
        if self.model == "sarimax":
            from statsmodels.tsa.statespace.sarimax import SARIMAX

            trend = "n" if self.trend is None else self.trend
            if trend not in _SARIMAX_TRENDS:
                raise ValueError(f"trend: for model='sarimax' expected one of {_SARIMAX_TRENDS}, "
                                 f"got {trend!r}")
            return SARIMAX, {"order": _int_tuple(self.order, 3, "order"), "trend": trend,
                             "seasonal_order": _int_tuple(self.seasonal_order, 4, "seasonal_order")}
        from statsmodels.tsa.statespace.structural import UnobservedComponents

        level = "local linear trend" if self.trend is None else self.trend
        if not isinstance(level, str):
            raise ValueError("trend: for model='unobserved_components' expected a level spec "
                             f"such as 'local linear trend', got {level!r}")
        kw: dict = {"level": level}
        if harmonics is not None:
            kw["freq_seasonal"] = [{"period": float(period), "harmonics": int(harmonics)}]
        elif period > 1:
            kw["seasonal"] = int(period)
        return UnobservedComponents, kw

    def _fit(self, grids: list, exog: list | None) -> list:
        """grids: float64 (T_s, C) per series on the full grid (NaN missing); exog: (T_s, C_x).

        Writes ``seasonal_periods_``, ``harmonics_``, ``results_`` and ``converged_``;
        the state is ``results_``."""
        if self.model not in _MODELS:
            raise ValueError(f"model: expected one of {_MODELS}, got {self.model!r}")
        self.seasonal_periods_, self.harmonics_ = self._season(grids)
        cls, kw = self._spec(self.seasonal_periods_, self.harmonics_)
        kw = {**kw, **(self.model_kwargs or {})}
        fit_kw = {"disp": False, "maxiter": int(self.maxiter), **(self.fit_kwargs or {})}
        src = self.meta_.source
        self.y_scale_ = np.array([[_pow2_scale(g[:, c]) for c in range(g.shape[1])]
                                  for g in grids])  # (n_series, C)
        self.results_, conv = [], []
        for s, g in enumerate(grids):
            row = []
            for c in range(g.shape[1]):
                col = g[:, c] / self.y_scale_[s, c]
                obs = col[~np.isnan(col)]
                where = f"column {src.columns[c]!r} of series {src.ids[s]!r}"
                if obs.size < _MIN_OBS:
                    raise ValueError(f"y: {where} has {obs.size} observed value(s); "
                                     f"{type(self).__name__} needs at least {_MIN_OBS} (and two "
                                     "seasons for a seasonal model); pass a longer series or use "
                                     "SeasonalNaiveForecaster")
                if np.all(obs == obs[0]):
                    row.append(_ConstantFit(obs[0]))
                    continue
                ex = {} if exog is None else {"exog": exog[s]}
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # convergence is reported below
                        row.append(cls(col, **ex, **kw).fit(**fit_kw))
                except (ValueError, np.linalg.LinAlgError) as exc:
                    raise ValueError(
                        f"y: statsmodels could not fit model={self.model!r} to {where} "
                        f"({obs.size} observed values, season {self.seasonal_periods_:g}): "
                        f"{exc}; pass a longer series, simplify the model "
                        "(seasonal_periods=1) or use SeasonalNaiveForecaster") from exc
            self.results_.append(row)
            conv.append([bool(r.mle_retvals.get("converged", True))
                         if isinstance(r.mle_retvals, dict) else True for r in row])
        self.converged_ = np.asarray(conv, dtype=bool)  # (n_series, C)
        if not self.converged_.all():
            bad = [f"{src.ids[s]!r}/{src.columns[c]!r}"
                   for s, c in zip(*np.nonzero(~self.converged_))]
            warnings.warn(f"{type(self).__name__}: the likelihood optimisation did not converge "
                          f"for series/column {', '.join(bad)}; raise maxiter or simplify the "
                          "model", RuntimeWarning, stacklevel=3)
        return self.results_

    def _apply(self, grids: list, exog: list | None) -> list:
        """The fitted parameters filtered over other data (``results.apply``, no refit)."""
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for s, g in enumerate(grids):
                ex = {} if exog is None else {"exog": exog[s]}
                out.append([self.results_[s][c].apply(g[:, c] / self.y_scale_[s, c],
                                                      refit=False, **ex)
                            for c in range(g.shape[1])])
        return out

    def _append(self, state: list, segs: list, exog: list | None) -> list:
        """segs: float64 (k_s, C) new grid steps per series (NaN missing); writes ``results_``."""
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for s, seg in enumerate(segs):
                ex = {} if exog is None else {"exog": exog[s]}
                out.append([state[s][c].append(seg[:, c] / self.y_scale_[s, c], **ex)
                            for c in range(seg.shape[1])])
        self.results_ = out
        return out

    def _forecast(self, state: list, steps: np.ndarray, exog: np.ndarray | None) -> tuple:
        """steps int (n, h) >= 1; exog (n, h, C_x) -> (mean, sd) float64 (n, h, C)."""
        n, h = steps.shape
        C = len(state[0])
        mean, sd = np.empty((n, h, C)), np.empty((n, h, C))
        for s in range(n):
            H = int(steps[s].max())
            for c in range(C):
                kw = {} if exog is None else {"exog": exog[s]}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fc = state[s][c].get_forecast(H, **kw)
                mu = np.asarray(fc.predicted_mean, dtype=np.float64)  # (H,)
                var = np.asarray(fc.var_pred_mean, dtype=np.float64).reshape(H)  # (H,)
                scale = self.y_scale_[s, c]
                mean[s, :, c] = mu[steps[s] - 1] * scale
                sd[s, :, c] = np.sqrt(np.maximum(var[steps[s] - 1], 0.0)) * scale
        return mean, sd

    # -- control view ----------------------------------------------------------
    def lti(self, column: int = 0, series: int = 0) -> LTISystem:
        """The fitted model's state space as a discrete-time :class:`LTISystem` (dt=1).

        statsmodels writes ``y_t = d + Z a_t + e_t``, ``a_{t+1} = c + T a_t + R n_t``;
        the system returned is ``A = T``, ``B = R`` (inputs: the state shocks
        ``n_t``), ``C = y_scale_ Z``, ``D = 0``: the model is fitted on y divided by
        ``y_scale_[series, column]`` (a power of two), so ``C`` carries that scale
        back and outputs are in y's units. Its impulse response ``y[k] = Z T^(k-1) R``
        (k >= 1) is statsmodels' ``results.impulse_responses`` shifted by one step
        (statsmodels reports the first effect ``Z R`` at step 0).

        Parameters
        ----------
        column, series : int
            Positions of the column and the series whose model to return.

        Returns
        -------
        LTISystem, real, discrete (dt=1), n = k_states, m = k_posdef shocks, p = 1 output
        """
        check_is_fitted(self, "results_")
        for val, n, name in ((series, len(self.results_), "series"),
                             (column, len(self.results_[0]), "column")):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or not 0 <= val < n:
                raise ValueError(f"{name}: expected a position in [0, {n}), got {val!r}")
        res = self.results_[series][column]
        if isinstance(res, _ConstantFit):
            raise ValueError(f"column: column {column} of series {series} is constant, so no "
                             "state-space model was fitted; it has no LTI view")
        ssm = res.model.ssm
        mats = []
        for key in ("transition", "selection", "design"):
            M = np.asarray(ssm[key], dtype=np.float64)
            if M.ndim == 3:
                if M.shape[2] > 1 and not np.allclose(M, M[:, :, :1]):
                    raise ValueError(f"the fitted model's {key} matrix varies in time, so it "
                                     "has no single LTI view")
                M = M[:, :, 0]
            mats.append(M)
        A, B, C = mats  # (k_states, k_states), (k_states, k_posdef), (k_endog, k_states)
        C = C * self.y_scale_[series, column]
        return LTISystem(A, B, C, np.zeros((C.shape[0], B.shape[1])), dt=1.0)
