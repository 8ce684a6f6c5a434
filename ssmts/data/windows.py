"""Training-side arrays: covariates on y's stamps, windows, the train / validation split.

:func:`align_exog` lines up covariates ``X`` with y's stamps (for fit) or the
future stamps (for predict).

A window is ``lookback`` context steps followed by ``horizon`` target steps of
one series; windows never cross series and never reach into end padding.
Missing values stay NaN with their mask False (pass ``fill_value`` to fill them
explicitly); the training side turns the arrays into tensors and must use the
masks (masked steps are left out of the loss and skip the state update).
"""

from __future__ import annotations

from typing import Any, Hashable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from ssmts.data.adapters import _check_dtype_kind, to_series_data
from ssmts.data.container import SeriesData, SourceMeta

__all__ = ["align_exog", "make_windows", "train_val_split"]


def _check_int(x, name: str, low: int) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {x!r}")
    return int(x)


def _window_starts(lengths: np.ndarray, width: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(series, start) of every window, aligned so each series' last window ends at its end."""
    series, starts = [], []
    for s, L in enumerate(lengths):
        if L >= width:
            st = np.arange(L - width, -1, -stride)[::-1]  # (n_w,), last window ends at L
            series.append(np.full(st.shape, s))
            starts.append(st)
    if not starts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(series).astype(np.int64), np.concatenate(starts).astype(np.int64)


def make_windows(data: SeriesData, lookback: int, horizon: int, stride: int = 1,
                 exog: np.ndarray | None = None,
                 fill_value: float | None = None) -> tuple[dict, int]:
    """Cut every series into (context, target) windows.

    Parameters
    ----------
    data : SeriesData
    lookback : int >= 1, context length
    horizon : int >= 1, target length
    stride : int >= 1, steps between window starts (counted back from each series' end,
        so the most recent window is always included)
    exog : float array, shape (n_series, T, C_x), optional
        Covariates on data's stamps (from :func:`ssmts.data.adapters.align_exog`).
    fill_value : float, optional
        If given, masked values are set to it (the masks still say which).

    Returns
    -------
    windows : dict of numpy arrays, n_win windows
        ``context`` float64 (n_win, lookback, C), ``context_mask`` bool (n_win, lookback, C),
        ``context_gaps`` float64 (n_win, lookback), ``target`` float64 (n_win, horizon, C),
        ``target_mask`` bool (n_win, horizon, C), ``future_gaps`` float64 (n_win, horizon),
        ``series`` int64 (n_win,) series position, ``target_start`` int64 (n_win,) position
        of the first target step in its series; with ``exog`` also ``context_exog``
        (n_win, lookback, C_x) and ``future_exog`` (n_win, horizon, C_x).
    n_dropped : int
        Windows left out because their whole target was missing.
    """
    lookback = _check_int(lookback, "lookback", 1)
    horizon = _check_int(horizon, "horizon", 1)
    stride = _check_int(stride, "stride", 1)
    if exog is not None:
        exog = np.asarray(exog, dtype=np.float64)
        if exog.ndim != 3 or exog.shape[:2] != (data.n_series, data.n_steps):
            raise ValueError(f"exog: expected shape ({data.n_series}, {data.n_steps}, C_x) like "
                             f"data (use align_exog), got {exog.shape}")
    width = lookback + horizon
    series, starts = _window_starts(data.lengths, width, stride)
    if series.size == 0:
        raise ValueError(f"lookback, horizon: a window needs {width} steps but the longest series "
                         f"has {int(data.lengths.max())}; shorten lookback or horizon")
    rows = series[:, None]  # (n_all, 1)
    cols = starts[:, None] + np.arange(width)  # (n_all, width)
    vals, mask = data.values[rows, cols], data.mask[rows, cols]  # (n_all, width, C)
    gaps = data.gaps[rows, cols]  # (n_all, width)
    keep = mask[:, lookback:].any(axis=(1, 2))  # (n_all,)
    if fill_value is not None:
        vals = np.where(mask, vals, float(fill_value))
    out = {"context": vals[keep, :lookback], "context_mask": mask[keep, :lookback],
           "context_gaps": gaps[keep, :lookback], "target": vals[keep, lookback:],
           "target_mask": mask[keep, lookback:], "future_gaps": gaps[keep, lookback:],
           "series": series[keep], "target_start": starts[keep] + lookback}
    if exog is not None:
        ex = exog[rows, cols][keep]  # (n_win, width, C_x)
        out["context_exog"], out["future_exog"] = ex[:, :lookback], ex[:, lookback:]
    return out, int((~keep).sum())


def train_val_split(data: SeriesData, val_size: int | float,
                    lookback: int = 0) -> tuple[SeriesData, SeriesData]:
    """Split every series on the time axis: the last ``val_size`` steps validate.

    Parameters
    ----------
    data : SeriesData
    val_size : int >= 1 (steps per series) or float in (0, 1) (fraction of each series' length,
        at least one step)
    lookback : int >= 0
        Context kept in front of the validation part, so validation windows
        ``make_windows(val, lookback, horizon)`` have their targets in the last
        ``val_size`` steps only.

    Returns
    -------
    train : SeriesData, each series' first ``L - v`` steps
    val : SeriesData, each series' last ``v + lookback`` steps (same origin, real lead gap)
    """
    lookback = _check_int(lookback, "lookback", 0)
    L = data.lengths
    if isinstance(val_size, (float, np.floating)) and not isinstance(val_size, bool):
        if not 0.0 < val_size < 1.0:
            raise ValueError(f"val_size: a fraction must be in (0, 1), got {val_size}")
        v = np.maximum(1, np.round(L * float(val_size)).astype(np.int64))  # (n_series,)
    else:
        v = np.full(L.shape, _check_int(val_size, "val_size", 1), dtype=np.int64)
    short = np.flatnonzero(L - v - lookback < 1)
    if short.size:
        s = int(short[0])
        raise ValueError(f"val_size: series {data.ids[s]!r} has {int(L[s])} steps, too few for "
                         f"{int(v[s])} validation steps plus a lookback of {lookback} and at least "
                         "one training step; use a smaller val_size")
    train = data.slice_steps(np.zeros_like(L), L - v)
    val = data.slice_steps(L - v - lookback, L)
    return train, val


# ---------------------------------------------------------------------------
# covariates
# ---------------------------------------------------------------------------
def align_exog(X: Any, data: SeriesData, future: bool = False,
               stamps: Sequence[pd.Index] | None = None,
               columns: Sequence[Hashable] | None = None) -> np.ndarray:
    """Covariates ``X`` on y's stamps (``future=False``) or on the future ``stamps``.

    Parameters
    ----------
    X : any container :func:`to_series_data` reads
        Matched to y by timestamp (and by id for several series; one X series
        is shared by all of y's series). A numpy ``X`` is matched by position:
        (T, C_x) / (n_series, T, C_x) rows for the past, h rows for the future.
        X may cover more stamps than needed (e.g. past and future at once).
    data : SeriesData
        The target series.
    future : bool
        Align to ``stamps`` (the forecast) instead of y's own stamps.
    stamps : tuple of pd.Index, required when ``future``
        From :func:`future_times`.
    columns : sequence of labels, optional
        X's columns must be exactly these (as at fit time).

    Returns
    -------
    float64 array, shape (n_series, T, C_x) or (n_series, h, C_x); NaN only in
    y's end padding. Raises ``ValueError`` naming missing stamps, ids or NaN.
    """
    if future and stamps is None:
        raise ValueError("stamps: needed with future=True; take them from future_times()")
    want = (tuple(stamps) if future else data.stamps)
    steps = len(want[0]) if future else data.n_steps
    if isinstance(X, (np.ndarray, list, tuple)):
        return _exog_by_position(X, data.n_series, steps, future)
    xd = to_series_data(X, name="X", **_exog_kwargs(X, data.source))
    if columns is not None and list(xd.columns) != list(columns):
        raise ValueError(f"X: columns {list(xd.columns)} differ from those at fit {list(columns)}")
    shared = xd.source.id_col is None and xd.source.series_dim is None  # one X for all series
    out = np.full((data.n_series, steps, xd.n_channels), np.nan)
    for s, sid in enumerate(data.ids):
        if not shared and sid not in xd.ids:
            raise ValueError(f"X: has no series {sid!r} (X's ids: {list(xd.ids)})")
        j = 0 if shared else xd.ids.index(sid)
        pos = xd.stamps[j].get_indexer(want[s])  # (L_s,)
        where = f" for series {sid!r}" if data.n_series > 1 else ""
        if np.any(pos < 0):
            miss = [str(t) for t in want[s][pos < 0][:3]]
            span = f"{xd.stamps[j][0]} to {xd.stamps[j][-1]}"
            raise ValueError(f"X: {int((pos < 0).sum())} timestamp(s) needed{where} are missing, "
                             f"first {miss}; X covers {span}")
        block = xd.values[j, pos]  # (L_s, C_x)
        if np.isnan(block).any():
            t, c = np.argwhere(np.isnan(block))[0]
            raise ValueError(f"X: column {xd.columns[c]!r} is NaN at {want[s][t]}{where}; "
                             "covariates must be known at every stamp used")
        out[s, :len(pos)] = block
    return out


def _exog_kwargs(X, src: SourceMeta) -> dict:
    """How to read X like y: long-format columns / xarray dimensions when X has them."""
    if isinstance(X, pd.DataFrame) and src.kind == "dataframe_long":
        names = list(X.columns) + [n for n in X.index.names if n is not None]
        kw = {k: c for k, c in (("id_col", src.id_col), ("time_col", src.time_col))
              if c is not None and c in names}
        return kw if kw.get("time_col") is not None or "id_col" in kw else {}
    if isinstance(X, (xr.DataArray, xr.Dataset)):
        dims = set(X.dims)
        return {"time_dim": src.time_dim if src.time_dim in dims else None,
                "series_dim": src.series_dim if src.series_dim in dims else None}
    return {}


def _exog_by_position(X, n: int, steps: int, future: bool) -> np.ndarray:
    a = np.asarray(X)
    _check_dtype_kind(a.dtype, "the array", "X")
    a = a[:, None] if a.ndim == 1 else a  # (T, C_x)
    a = a[None] if a.ndim == 2 else a  # (n?, T, C_x)
    if a.ndim != 3 or a.shape[0] not in (1, n) or a.shape[1] != steps:
        what = "the forecast horizon h" if future else "y's time steps T"
        raise ValueError(f"X: a numpy X is matched by position and needs {steps} rows ({what}), "
                         f"shape (T, C_x) or ({n}, T, C_x); got shape {np.shape(X)}")
    if not np.isfinite(a).all():
        raise ValueError("X: holds NaN or inf; covariates must be known at every step")
    return np.array(np.broadcast_to(a, (n,) + a.shape[1:]), dtype=np.float64)  # (n, T, C_x)
