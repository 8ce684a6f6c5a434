"""Value conversions of SSMForecaster: target transformer and covariates (private).

Helpers of :mod:`ssmts.estimators.forecaster`; they trust their inputs (already
read into :class:`ssmts.data.SeriesData`) and raise ``ValueError`` only for what
a user's transformer or covariates can get wrong.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from sklearn.base import clone

from ssmts.data import MeanStdScaler, SeriesData, align_exog

__all__ = ["transform_target", "inverse_target", "read_exog", "ConvertMixin"]


def transform_target(tt, data: SeriesData) -> SeriesData:
    """Apply a fitted transformer ``tt`` (or None) to data's values (valid rows only).

    Parameters
    ----------
    tt : fitted sklearn transformer on 2-D (rows, C) values, or None
    data : SeriesData

    Returns
    -------
    SeriesData with transformed values (NaN where masked)
    """
    if tt is None:
        return data
    valid = data.valid  # (n, T)
    flat = data.values[valid]  # (n_rows, C)
    out = np.asarray(tt.transform(flat), dtype=np.float64)
    if out.shape != flat.shape:
        raise ValueError(f"target_transformer: must keep the shape {flat.shape}, got "
                         f"{out.shape}; use a column-wise invertible transformer")
    vals = np.full(data.values.shape, np.nan)
    vals[valid] = out
    vals = np.where(data.mask, vals, np.nan)
    if np.isinf(vals).any() or (np.isnan(vals) & data.mask).any():
        raise ValueError("target_transformer: produced NaN or inf from observed values; "
                         "check that it is defined on y's range")
    return dataclasses.replace(data, values=vals)


def inverse_target(tt, pred: np.ndarray) -> np.ndarray:
    """Invert a fitted transformer ``tt`` (or None) on a float array of shape (..., C)."""
    if tt is None:
        return pred
    C = pred.shape[-1]
    flat = pred.reshape(-1, C)  # (rows, C)
    return np.asarray(tt.inverse_transform(flat)).reshape(pred.shape)


def read_exog(X, data: SeriesData, id_col=None, time_col=None):
    """Covariates for fit: (n_exog, columns, fitted per-channel scaler, raw (n, T, C_x)).

    ``X`` None gives (0, None, None, None).
    """
    if X is None:
        return 0, None, None, None
    columns = None
    if isinstance(X, pd.DataFrame):
        columns = tuple(c for c in X.columns if c not in {id_col, time_col})
    elif isinstance(X, pd.Series):
        columns = (X.name,)
    ex = align_exog(X, data, columns=columns)  # (n, T, C_x)
    return ex.shape[-1], columns, MeanStdScaler(by="channel").fit(ex), ex


class ConvertMixin:
    """SSMForecaster's checks and value conversions against what ``fit`` saw.

    Reads the fitted ``columns_``, ``context_``, ``target_transformer_``, ``scaler_``,
    ``n_exog_``, ``exog_columns_`` and ``exog_scaler_``.
    """

    def _check_like_fit(self, data: SeriesData, name: str, same_series: bool = True) -> None:
        if list(data.columns) != list(self.columns_):
            raise ValueError(f"{name}: columns {list(data.columns)} differ from those seen in fit "
                             f"{list(self.columns_)}; pass the same columns in the same order")
        if same_series and tuple(data.ids) != tuple(self.context_.ids):
            raise ValueError(f"{name}: series {list(data.ids)} differ from those seen in fit "
                             f"{list(self.context_.ids)}")

    # ------------------------------------------------------------- transforms
    def _forward_target(self, data: SeriesData, fit: bool = False) -> SeriesData:
        """Apply target_transformer(_) to data's values; ``fit`` writes target_transformer_."""
        if fit:
            self.target_transformer_ = None if self.target_transformer is None else \
                clone(self.target_transformer).fit(data.values[data.valid])
        return transform_target(self.target_transformer_, data)

    def _inverse_target(self, pred: np.ndarray) -> np.ndarray:
        return inverse_target(getattr(self, "target_transformer_", None), pred)

    def _scale(self, data: SeriesData) -> SeriesData:
        return dataclasses.replace(data, values=self.scaler_.transform(data.values))

    def _exog(self, X, data: SeriesData, stamps=None, name: str = "X") -> np.ndarray | None:
        """Scaled covariates on data's stamps (or on future ``stamps``), or None."""
        if self.n_exog_ == 0:
            if X is not None:
                raise ValueError(f"{name}: the model was fitted without covariates; fit(y, X) "
                                 "to use them")
            return None
        if X is None:
            raise ValueError(f"{name}: the model was fitted with {self.n_exog_} covariate "
                             "column(s); pass them for these stamps too")
        ex = align_exog(X, data, future=stamps is not None, stamps=stamps,
                        columns=self.exog_columns_)
        if ex.shape[-1] != self.n_exog_:
            raise ValueError(f"{name}: expected {self.n_exog_} covariate columns as in fit, got "
                             f"{ex.shape[-1]}")
        return self.exog_scaler_.transform(ex)
