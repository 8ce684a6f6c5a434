"""ForecastPipeline: transformers on the target, then a forecaster, forecasts in y's units.

sklearn's ``Pipeline`` treats ``predict``'s argument as features to transform, so
``Pipeline([("s", StandardScaler()), ("f", SSMForecaster())]).predict(3)`` hands
the number 3 to the scaler, and ``pipe.predict(df, h=6)`` returns the forecast in
the scaler's units. :class:`ForecastPipeline` is the forecasting reading of the
same steps (as sktime's ``TransformedTargetForecaster``): ``fit`` transforms y
through the transformers and fits the final forecaster on the result; every
forecast is mapped back through the transformers' ``inverse_transform`` in
reverse order, so it comes out in y's original units. It is an sklearn
``Pipeline`` (``get_params`` / ``set_params`` with ``step__param``, ``clone``,
``GridSearchCV``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

__all__ = ["ForecastPipeline"]


def _apply(step_name: str, trans, y, method: str):
    """``trans.<method>(y)`` with y's index, columns and Series-ness kept."""
    if not isinstance(y, (pd.DataFrame, pd.Series)):
        raise TypeError(f"y: ForecastPipeline transforms pandas DataFrames / Series (wide "
                        f"format), got {type(y).__name__}; transform other containers yourself")
    from sklearn.preprocessing import FunctionTransformer

    no_inverse = isinstance(trans, FunctionTransformer) and trans.func is not None \
        and trans.inverse_func is None  # its inverse_transform is then the identity
    if method == "inverse_transform" and (no_inverse or not hasattr(trans, method)):
        raise ValueError(f"steps: {step_name!r} ({type(trans).__name__}) has no {method}, so "
                         "forecasts cannot be mapped back to y's units; use an invertible "
                         "transformer (StandardScaler, FunctionTransformer with inverse_func, "
                         "PowerTransformer, ...)")
    frame = y.to_frame() if isinstance(y, pd.Series) else y
    out = getattr(trans, method)(frame)
    if isinstance(out, pd.DataFrame):
        out = out.to_numpy()
    out = np.asarray(out, dtype=np.float64)
    if out.shape != frame.shape:
        raise ValueError(f"steps: {step_name!r} ({type(trans).__name__}).{method} changed the "
                         f"shape {frame.shape} to {out.shape}; a target transformer must work "
                         "column by column")
    res = pd.DataFrame(out, index=frame.index, columns=frame.columns)
    return res.iloc[:, 0].rename(y.name) if isinstance(y, pd.Series) else res


class ForecastPipeline(Pipeline):
    """Target transformers followed by a forecaster; forecasts in y's original units.

    Parameters
    ----------
    steps : list of (name, estimator)
        Column-wise invertible transformers (``fit_transform`` and
        ``inverse_transform``; ``"passthrough"`` or None to skip), then an ssmts
        forecaster (``SSMForecaster``, ``StatsmodelsForecaster``, ...).
    memory, verbose : as in ``sklearn.pipeline.Pipeline``

    Notes
    -----
    y must be a wide DataFrame or a Series (transformers see one column per
    variable, NaN kept). Quantiles and intervals are mapped back level by level,
    which is exact for monotone increasing transformers.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sklearn.preprocessing import StandardScaler
    >>> from ssmts.estimators import ForecastPipeline, SeasonalNaiveForecaster
    >>> y = pd.Series(np.arange(48.0) + 100, index=pd.date_range("2024", periods=48, freq="h"))
    >>> pipe = ForecastPipeline([("scale", StandardScaler()),
    ...                          ("f", SeasonalNaiveForecaster())]).fit(y)
    >>> float(pipe.predict(2).iloc[0])
    147.0
    """

    def _transformers(self):
        return [(n, t) for n, t in self.steps[:-1] if t is not None and t != "passthrough"]

    def _forward(self, y, fit: bool = False):
        for name, t in self._transformers():
            y = _apply(name, t, y, "fit_transform" if fit else "transform")
        return y

    def _inverse(self, pred):
        for name, t in reversed(self._transformers()):
            pred = _apply(name, t, pred, "inverse_transform")
        return pred

    def fit(self, y: Any, X: Any = None) -> "ForecastPipeline":
        """Fit the transformers on y, then the forecaster on the transformed y (and X)."""
        self._validate_steps()
        self._final_estimator.fit(self._forward(y, fit=True), X)
        return self

    def _context(self, context):
        return context if context is None or isinstance(context, (int, np.integer)) \
            else self._forward(context)

    def predict(self, context: Any = None, /, h: int | None = None, X: Any = None,
                at: Any = None):
        """The forecaster's ``predict`` (same arguments), mapped back to y's units."""
        return self._inverse(self._final_estimator.predict(self._context(context), h=h, X=X,
                                                           at=at))

    def predict_interval(self, context: Any = None, /, h: int | None = None,
                         coverage: float = 0.9, X: Any = None, at: Any = None):
        """``(lower, upper)`` of the forecaster, each mapped back to y's units."""
        lo, hi = self._final_estimator.predict_interval(self._context(context), h=h,
                                                        coverage=coverage, X=X, at=at)
        return self._inverse(lo), self._inverse(hi)

    def predict_quantiles(self, context: Any = None, /, h: int | None = None, quantiles=None,
                          X: Any = None, at: Any = None):
        """The forecaster's quantiles ((column, quantile) columns), mapped back level by level."""
        q = self._final_estimator.predict_quantiles(self._context(context), h=h,
                                                    quantiles=quantiles, X=X, at=at)
        if not isinstance(q, pd.DataFrame) or not isinstance(q.columns, pd.MultiIndex):
            raise TypeError("predict_quantiles: expected the forecaster's (column, quantile) "
                            "DataFrame; fit on a wide DataFrame or Series")
        levels = q.columns.get_level_values(-1).unique()
        parts = {lv: self._inverse(q.xs(lv, axis=1, level=-1)) for lv in levels}
        out = pd.concat(parts, axis=1)  # (quantile, column)
        return out.swaplevel(axis=1)[q.columns]

    def update(self, y_new: Any, X_new: Any = None) -> "ForecastPipeline":
        """Transform the new rows (fitted transformers) and advance the forecaster's origin."""
        self._final_estimator.update(self._forward(y_new), X_new)
        return self

    def _forecast_fold(self, y) -> tuple[np.ndarray, np.ndarray]:
        """(forecast, truth) of fold y's stamps from the fitted origin, in y's units."""
        yt = self._forward(y)
        pred = self._inverse(self._final_estimator.predict(at=yt.index))
        t = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        return np.asarray(pred, dtype=np.float64).reshape(t.shape), t

    def score(self, y: Any, X: Any = None) -> float:
        """Negative MSE of forecasting y's stamps from the fitted origin, in y's units."""
        if X is not None:
            raise ValueError("X: ForecastPipeline.score forecasts from the fitted origin "
                             "without covariates; call the forecaster's score(y, X)")
        pred, truth = self._forecast_fold(y)
        ok = ~np.isnan(truth)
        return -float(np.mean((pred[ok] - truth[ok]) ** 2))
