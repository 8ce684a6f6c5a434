"""Value conversions of SSMForecaster: target transformer and covariates (private).

Helpers of :mod:`ssmts.estimators.forecaster`; they trust their inputs (already
read into :class:`ssmts.data.SeriesData`) and raise ``ValueError`` only for what
a user's transformer or covariates can get wrong.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ssmts.data import MeanStdScaler, SeriesData, align_exog

__all__ = ["transform_target", "inverse_target", "read_exog"]


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
