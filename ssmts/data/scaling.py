"""NaN-aware scalers whose fitted state saves as plain JSON.

Statistics are taken over observed values only (``mask``), so missing values
neither bias them nor get filled. Arrays to transform end in ``(..., T, C)``
with series on axis -3 (e.g. (n_series, T, C), or (n_q, n_series, h, C) for
quantile forecasts); for windows pass ``series`` (n_win,) to pick each window's
statistics.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["MeanStdScaler", "IdentityScaler", "make_scaler", "scaler_from_dict"]

_AXES = {"series": (1,), "channel": (0, 1), "global": (0, 1, 2)}


class MeanStdScaler:
    """Standardise with NaN-aware mean and standard deviation, at any magnitude.

    Statistics are computed on the values divided by their largest absolute
    value (per group), then multiplied back, so data around 1e-30 or 1e200
    neither underflows nor overflows (``np.nanstd`` squares the values).

    Parameters
    ----------
    by : {"series", "channel", "global"}
        Statistics per (series, channel), per channel over all series, or one pair.
    min_std : float
        Absolute floor: a std at or below it also counts as constant. Default 0
        (constancy is judged relative to the data, see ``rtol``); kept so that
        scalers saved with the former default (1e-8) still load.
    rtol : float
        A group is constant when all its values are equal or its std is at most
        ``rtol * |mean|``; only the magnitude of the data decides, so a sine of
        amplitude 1e-9 is scaled, not taken for a constant.

    Attributes
    ----------
    mean_, std_ : float64 arrays, shape (n_series, 1, C), (1, 1, C) or (1, 1, 1)
        Set by :meth:`fit`. A constant group is only centred: std 1, or ``|mean|``
        when that is smaller (a constant 1e-9 gets std 1e-9, so an error of the
        model in scaled units stays of the data's size). A group with no observed
        value gets mean 0, std 1.
    """

    def __init__(self, by: str = "series", min_std: float = 0.0, rtol: float = 1e-12):
        self.by = by
        self.min_std = min_std
        self.rtol = rtol

    def fit(self, values: np.ndarray, mask: np.ndarray | None = None) -> "MeanStdScaler":
        """Learn mean_ and std_ from observed entries.

        Parameters
        ----------
        values : float array, shape (n_series, T, C); NaN allowed (inf is not)
        mask : bool array, shape (n_series, T, C), optional (default: not NaN)
        """
        if self.by not in _AXES:
            raise ValueError(f"by: expected one of {list(_AXES)}, got {self.by!r}")
        for name in ("min_std", "rtol"):
            x = getattr(self, name)
            if isinstance(x, bool) or not isinstance(x, (int, float, np.number)) \
                    or not 0 <= float(x) < np.inf:
                raise ValueError(f"{name}: expected a float >= 0, got {x!r}")
        values = np.asarray(values, dtype=np.float64)
        if values.ndim != 3:
            raise ValueError(f"values: expected shape (n_series, T, C), got {values.shape}")
        mask = ~np.isnan(values) if mask is None else np.asarray(mask, dtype=bool)
        if mask.shape != values.shape:
            raise ValueError(f"mask: expected shape {values.shape}, got {mask.shape}")
        v = np.where(mask, values, np.nan)  # (n, T, C)
        if np.isinf(v).any():
            raise ValueError("values: observed values hold inf; replace them with NaN (missing)")
        axes = _AXES[self.by]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN groups
            top = np.nanmax(np.abs(v), axis=axes, keepdims=True)  # (groups) largest |value|
            low = np.nanmin(v, axis=axes, keepdims=True)
            high = np.nanmax(v, axis=axes, keepdims=True)
            size = np.where(top > 0, top, 1.0)  # NaN (empty group) stays NaN
            w = v / size  # |w| <= 1: no overflow in the squares
            mean_w = np.nanmean(w, axis=axes, keepdims=True)
            std_w = np.nanstd(w, axis=axes, keepdims=True)
        empty = np.isnan(top)
        size = np.where(empty, 1.0, size)
        mean = np.where(empty, 0.0, mean_w * size)
        std = np.where(empty, 1.0, std_w * size)
        constant = (low == high) | (std_w <= float(self.rtol) * np.abs(mean_w)) \
            | (std <= float(self.min_std))
        centred = np.where((np.abs(mean) > 0) & (np.abs(mean) < 1.0), np.abs(mean), 1.0)
        std = np.where(empty, 1.0, np.where(constant, centred, std))
        n, _, C = values.shape
        shape = {"series": (n, 1, C), "channel": (1, 1, C), "global": (1, 1, 1)}[self.by]
        self.mean_, self.std_ = mean.reshape(shape), std.reshape(shape)
        return self

    def _stats(self, values: np.ndarray, series) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "mean_"):
            raise ValueError("scaler is not fitted; call fit(values, mask) first")
        mean, std = self.mean_, self.std_
        if series is not None and mean.shape[0] > 1:
            series = np.asarray(series, dtype=np.int64)
            n = mean.shape[0]
            if series.ndim != 1 or series.min(initial=0) < 0 or series.max(initial=0) >= n:
                raise ValueError(f"series: expected positions in [0, {n}), shape (n_win,)")
            mean, std = mean[series], std[series]  # (n_win, 1, C)
        n_ok = values.ndim >= 3 and mean.shape[0] in (1, values.shape[-3])
        if not n_ok or mean.shape[-1] not in (1, values.shape[-1]):
            raise ValueError(f"values: shape {values.shape} does not fit statistics of shape "
                             f"{mean.shape}; expected (..., {mean.shape[0]}, T, {mean.shape[-1]}) "
                             "(pass series= for windows)")
        return mean, std

    def transform(self, values: np.ndarray, series: np.ndarray | None = None) -> np.ndarray:
        """(values - mean_) / std_; NaN stays NaN.

        Parameters
        ----------
        values : float array, shape (..., n_series, T, C), or (n_win, T, C) with ``series``
        series : int array, shape (n_win,), optional: series position of each window
        """
        values = np.asarray(values, dtype=np.float64)
        mean, std = self._stats(values, series)
        return (values - mean) / std

    def inverse_transform(self, values: np.ndarray, series: np.ndarray | None = None) -> np.ndarray:
        """values * std_ + mean_; same shapes as :meth:`transform` (quantile axes lead)."""
        values = np.asarray(values, dtype=np.float64)
        mean, std = self._stats(values, series)
        return values * std + mean

    def to_dict(self) -> dict:
        """Plain JSON-able dict of parameters and fitted statistics."""
        d = {"type": "MeanStdScaler", "by": self.by, "min_std": float(self.min_std),
             "rtol": float(self.rtol)}
        if hasattr(self, "mean_"):
            d["mean"], d["std"] = self.mean_.tolist(), self.std_.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MeanStdScaler":
        """Rebuild from :meth:`to_dict` output (also the older one without ``rtol``)."""
        sc = cls(by=d["by"], min_std=d.get("min_std", 0.0), rtol=d.get("rtol", 1e-12))
        if "mean" in d:
            sc.mean_ = np.asarray(d["mean"], dtype=np.float64)
            sc.std_ = np.asarray(d["std"], dtype=np.float64)
        return sc


class IdentityScaler:
    """No scaling, with the same interface as :class:`MeanStdScaler`."""

    def fit(self, values: np.ndarray, mask: np.ndarray | None = None) -> "IdentityScaler":
        return self

    def transform(self, values: np.ndarray, series: np.ndarray | None = None) -> np.ndarray:
        return np.array(values, dtype=np.float64)

    inverse_transform = transform

    def to_dict(self) -> dict:
        return {"type": "IdentityScaler"}

    @classmethod
    def from_dict(cls, d: dict) -> "IdentityScaler":
        return cls()


def make_scaler(kind: str | None = "series", min_std: float = 0.0):
    """``None`` / ``"none"`` -> IdentityScaler; "series" / "channel" / "global" -> MeanStdScaler."""
    if kind is None or kind == "none":
        return IdentityScaler()
    if kind in _AXES:
        return MeanStdScaler(by=kind, min_std=min_std)
    raise ValueError("scaler: expected None, 'none', 'series', 'channel' or 'global', "
                     f"got {kind!r}")


def scaler_from_dict(d: dict):
    """Rebuild any scaler from its ``to_dict()``."""
    types = {"MeanStdScaler": MeanStdScaler, "IdentityScaler": IdentityScaler}
    if d.get("type") not in types:
        raise ValueError(f"d: unknown scaler type {d.get('type')!r}")
    return types[d["type"]].from_dict(d)
