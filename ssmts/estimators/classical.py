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
The fitted model is also a control-theory object: :meth:`StatsmodelsForecaster.lti`
returns its state-space matrices as an :class:`ssmts.ssm.lti.LTISystem`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ssmts.estimators.baselines import _GridForecaster
from ssmts.ssm.lti import LTISystem

__all__ = ["StatsmodelsForecaster"]

_MODELS = ("unobserved_components", "ets", "sarimax")
_SARIMAX_TRENDS = ("n", "c", "t", "ct")


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
        Season length in grid steps (52 for weekly data, 24 for hourly data with a
        daily cycle). ``"ets"``: an int, one state per season step. ``"unobserved_components"``:
        an int gives a dummy seasonal (one state per step: slow for long seasons);
        with ``harmonics`` a trigonometric seasonal of this (possibly fractional,
        e.g. 52.18) period. Ignored by ``"sarimax"`` (use ``seasonal_order``).
    harmonics : int, optional
        ``"unobserved_components"`` only: number of sine/cosine pairs of the
        trigonometric seasonal (2 states each).
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
    >>> f = StatsmodelsForecaster("unobserved_components", seasonal_periods=12, harmonics=2)
    >>> f.fit(y).predict(3).index[0]
    Timestamp('2025-01-01 00:00:00')
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
    def _spec(self) -> tuple[type, dict]:
        """Validated (statsmodels class, constructor kwargs without endog / exog)."""
        if self.model not in _MODELS:
            raise ValueError(f"model: expected one of {_MODELS}, got {self.model!r}")
        sp, hm = self.seasonal_periods, self.harmonics
        if sp is not None and (isinstance(sp, bool) or not isinstance(sp, (int, float, np.number))
                               or not sp > 1):
            raise ValueError(f"seasonal_periods: expected a number > 1 or None, got {sp!r}")
        if hm is not None and (isinstance(hm, bool) or not isinstance(hm, (int, np.integer))
                               or hm < 1 or sp is None):
            raise ValueError(f"harmonics: expected an int >= 1 together with seasonal_periods, "
                             f"got harmonics={hm!r}, seasonal_periods={sp!r}")
        integral = sp is None or float(sp).is_integer()
        if self.model == "ets":
            from statsmodels.tsa.statespace.exponential_smoothing import ExponentialSmoothing

            if not integral:
                raise ValueError(f"seasonal_periods: ets needs an int season, got {sp!r}")
            trend = True if self.trend is None else self.trend
            if not isinstance(trend, (bool, np.bool_)):
                raise ValueError(f"trend: for model='ets' expected True/False, got {trend!r}")
            return ExponentialSmoothing, {
                "trend": bool(trend), "damped_trend": bool(self.damped_trend and trend),
                "seasonal": None if sp is None else int(sp),
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
        if hm is not None:
            kw["freq_seasonal"] = [{"period": float(sp), "harmonics": int(hm)}]
        elif sp is not None:
            if not integral:
                raise ValueError(f"seasonal_periods: a fractional period {sp} needs harmonics=")
            kw["seasonal"] = int(sp)
        return UnobservedComponents, kw

    def _fit(self, grids: list, exog: list | None) -> list:
        """grids: float64 (T_s, C) per series on the full grid (NaN missing); exog: (T_s, C_x).

        Writes ``results_`` and ``converged_``; the state is ``results_``."""
        cls, kw = self._spec()
        kw = {**kw, **(self.model_kwargs or {})}
        fit_kw = {"disp": False, "maxiter": int(self.maxiter), **(self.fit_kwargs or {})}
        src = self.meta_.source
        self.results_, conv = [], []
        for s, g in enumerate(grids):
            row = []
            for c in range(g.shape[1]):
                if np.isnan(g[:, c]).all():
                    raise ValueError(f"y: column {src.columns[c]!r} of series {src.ids[s]!r} "
                                     "has no observed value; drop it")
                ex = {} if exog is None else {"exog": exog[s]}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # convergence is reported below
                    row.append(cls(g[:, c], **ex, **kw).fit(**fit_kw))
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
                out.append([self.results_[s][c].apply(g[:, c], refit=False, **ex)
                            for c in range(g.shape[1])])
        return out

    def _append(self, state: list, segs: list, exog: list | None) -> list:
        """segs: float64 (k_s, C) new grid steps per series (NaN missing); writes ``results_``."""
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for s, seg in enumerate(segs):
                ex = {} if exog is None else {"exog": exog[s]}
                out.append([state[s][c].append(seg[:, c], **ex) for c in range(seg.shape[1])])
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
                mean[s, :, c] = mu[steps[s] - 1]
                sd[s, :, c] = np.sqrt(np.maximum(var[steps[s] - 1], 0.0))
        return mean, sd

    # -- control view ----------------------------------------------------------
    def lti(self, column: int = 0, series: int = 0) -> LTISystem:
        """The fitted model's state space as a discrete-time :class:`LTISystem` (dt=1).

        statsmodels writes ``y_t = d + Z a_t + e_t``, ``a_{t+1} = c + T a_t + R n_t``;
        the system returned is ``A = T``, ``B = R`` (inputs: the state shocks
        ``n_t``), ``C = Z``, ``D = 0``. Its impulse response ``y[k] = Z T^(k-1) R``
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
        ssm = self.results_[series][column].model.ssm
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
        return LTISystem(A, B, C, np.zeros((C.shape[0], B.shape[1])), dt=1.0)
