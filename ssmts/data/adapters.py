"""Adapters between the caller's containers and :class:`~ssmts.data.container.SeriesData`.

In: :func:`to_series_data` reads a wide DataFrame (one column per variable), a
Series, a long DataFrame (``id_col``, ``time_col``, target columns), an xarray
DataArray / Dataset with a time dimension (and an optional series dimension)
or a numpy array (T,), (T, C) or (n_series, T, C).

Out: :func:`future_times` gives the stamps to forecast at (the next ``h`` grid
stamps, or the caller's ``at=``) and :func:`from_predictions` puts a forecast
array back into the caller's container type. (Covariates are lined up with
y's stamps by :func:`ssmts.data.windows.align_exog`.)

Long format: rows are sorted by time within each series (any row order is
accepted, a repeated (id, time) is an error); series keep the order in which
their ids first appear; shorter series are padded at the END (see
:mod:`ssmts.data.container`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Hashable, NamedTuple, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from ssmts.data.container import (DataMeta, SeriesData, SourceMeta, TimeIndexMeta, _plain,
                                  infer_time_meta)

__all__ = ["to_series_data", "future_times", "from_predictions"]


class _Parts(NamedTuple):
    """What a reader hands to :func:`_assemble`: one block per series."""

    stamps: list  # pd.Index per series, length L_s
    values: list  # float64 (L_s, C) per series
    rows: list  # int (L_s,) input row / position of each step, for messages
    where: str  # "row" or "position along 'time'"
    source: SourceMeta
    time_name: Hashable | None


# ---------------------------------------------------------------------------
# in
# ---------------------------------------------------------------------------
def to_series_data(y: Any, *, id_col: Hashable | None = None, time_col: Hashable | None = None,
                   target_cols: Sequence[Hashable] | None = None, time_dim: Hashable | None = None,
                   series_dim: Hashable | None = None, name: str = "y",
                   like: TimeIndexMeta | None = None) -> SeriesData:
    """Read any supported container into a :class:`SeriesData` (the input is never mutated).

    Parameters
    ----------
    y : pd.DataFrame, pd.Series, xr.DataArray, xr.Dataset or array-like
        Wide DataFrame (time index, one column per variable); long DataFrame
        when ``id_col`` or ``time_col`` is given (they may also be index
        levels); DataArray / Dataset with a time dimension; numpy (T,), (T, C)
        or (n_series, T, C) of numbers.
    id_col, time_col : label, optional
        Long format: series id column and time column (``time_col`` None with
        ``id_col`` given: time is the DataFrame's index).
    target_cols : sequence of labels, optional
        Columns / data variables to use (default: all but id and time).
    time_dim, series_dim : str, optional
        xarray dimension names (default: "time", resp. "series" when present).
    name : str
        Argument name used in error messages.
    like : TimeIndexMeta, optional
        The time metadata of data already seen (new rows for ``update``): stamps must
        be of its kind and time zone (an error names both otherwise), numeric time is
        measured from its origins (so a single new row needs no frequency), and a
        column may be all NaN (masked, as missing values are in fit).

    Returns
    -------
    SeriesData
        values float64 (n_series, T, C) with NaN kept, mask True where observed.

    Raises
    ------
    ValueError
        Empty input, non-numeric columns (named), inf values, an all-NaN column,
        missing / non-increasing / repeated timestamps (row and stamp named).
    TypeError
        An unsupported container type.
    """
    if isinstance(y, pd.Series):
        parts = _read_series(y, name)
    elif isinstance(y, pd.DataFrame):
        long = id_col is not None or time_col is not None
        parts = (_read_long(y, id_col, time_col, target_cols, name) if long
                 else _read_wide(y, target_cols, name))
    elif isinstance(y, xr.DataArray):
        parts = _read_dataarray(y, time_dim, series_dim, name)
    elif isinstance(y, xr.Dataset):
        parts = _read_dataset(y, target_cols, time_dim, series_dim, name)
    elif isinstance(y, (np.ndarray, list, tuple)):
        parts = _read_ndarray(y, name)
    else:
        raise TypeError(f"{name}: unsupported type {type(y).__name__}; pass a pandas DataFrame / "
                        "Series, an xarray DataArray / Dataset or a numpy array")
    return _assemble(parts, name, like)


def _numeric(df: pd.DataFrame, name: str) -> np.ndarray:
    """float64 copy of a DataFrame's values; names non-numeric and duplicate columns."""
    if df.columns.has_duplicates:
        dup = df.columns[df.columns.duplicated()].unique().tolist()
        raise ValueError(f"{name}: column names must be unique; {dup} appear more than once")
    bad = [c for c, dt in df.dtypes.items()
           if not pd.api.types.is_numeric_dtype(dt) or getattr(dt, "kind", "") == "c"
           or pd.api.types.is_bool_dtype(dt)]
    if bad:
        kinds = sorted({str(df.dtypes[c]) for c in bad})
        raise ValueError(f"{name}: columns {bad} are not numeric (dtype {', '.join(kinds)}); "
                         "convert them to numbers (e.g. .astype(float) for 0/1 flags) or drop "
                         "them")
    return np.array(df.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)  # copy


def _check_plain_index(index: pd.Index, name: str) -> None:
    if isinstance(index, pd.MultiIndex):
        raise ValueError(f"{name}: has a MultiIndex {list(index.names)}; for several series pass "
                         "id_col= and time_col= naming its levels (long format)")


def _read_wide(y: pd.DataFrame, target_cols, name: str) -> _Parts:
    _check_plain_index(y.index, name)
    if isinstance(y.columns, pd.MultiIndex):
        raise ValueError(f"{name}: MultiIndex columns are not supported; flatten them, or use "
                         "long format with id_col= and time_col=")
    df = y if target_cols is None else y[_existing(y, target_cols, "target_cols", name)]
    vals = _numeric(df, name)
    src = SourceMeta("dataframe_wide", ids=(0,), columns=tuple(df.columns),
                     columns_name=y.columns.name, dtypes=tuple(str(d) for d in df.dtypes))
    return _Parts([y.index], [vals], [np.arange(len(y))], "row", src, y.index.name)


def _read_series(y: pd.Series, name: str) -> _Parts:
    _check_plain_index(y.index, name)
    vals = _numeric(y.to_frame(name=0), name)
    src = SourceMeta("series", ids=(0,), columns=(y.name,), name=y.name, dtypes=(str(y.dtype),))
    return _Parts([y.index], [vals], [np.arange(len(y))], "row", src, y.index.name)


def _existing(df, cols, arg: str, name: str) -> list:
    cols = [cols] if isinstance(cols, (str, int)) else list(cols)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{arg}: {missing} not found in {name}'s columns {list(df.columns)}")
    return cols


def _sort_key(index: pd.Index) -> np.ndarray:
    if isinstance(index, (pd.DatetimeIndex, pd.PeriodIndex)):
        return index.asi8
    return np.asarray(index, dtype=np.float64)


def _read_long(y: pd.DataFrame, id_col, time_col, target_cols, name: str) -> _Parts:
    levels = tuple(c for c in (id_col, time_col)
                   if c is not None and c in (y.index.names or []) and c not in y.columns)
    df = y.reset_index(list(levels)) if levels else y  # a new frame; y untouched
    for arg, col in (("id_col", id_col), ("time_col", time_col)):
        if col is not None and col not in df.columns:
            raise ValueError(f"{arg}: {col!r} is not a column of {name} "
                             f"(columns {list(df.columns)})")
    if time_col is None:
        _check_plain_index(df.index, name)
        times, time_name = df.index, df.index.name
    else:
        times, time_name = pd.Index(df[time_col]), time_col
    targets = (_existing(df, target_cols, "target_cols", name) if target_cols is not None
               else [c for c in df.columns if c not in (id_col, time_col)])
    vals = _numeric(df[targets], name)  # (n_rows, C)
    if id_col is not None:
        codes, uniques = pd.factorize(df[id_col], sort=False)
        if np.any(codes < 0):
            row = int(np.argmax(codes < 0))
            raise ValueError(f"{name}: id_col {id_col!r} is missing at row {row}; "
                             "drop or fill those rows")
        ids, id_dtype = tuple(_plain(u) for u in uniques), str(df[id_col].dtype)
    else:
        codes, ids, id_dtype = np.zeros(len(df), dtype=np.int64), (0,), None
    _check_time_index(times, np.arange(len(df)), "row", name, time_col)
    order = np.lexsort((_sort_key(times), codes))  # by id, then time; stable
    bounds = np.searchsorted(codes[order], np.arange(len(ids) + 1))
    rows = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    src = SourceMeta("dataframe_long", ids=ids, columns=tuple(targets), columns_name=y.columns.name,
                     id_col=id_col, time_col=time_col, index_levels=levels,
                     dtypes=tuple(str(df[c].dtype) for c in targets), id_dtype=id_dtype)
    return _Parts([times[r] for r in rows], [vals[r] for r in rows], rows, "row", src, time_name)


def _pick_time_dim(dims: tuple, time_dim, indexes, name: str):
    if time_dim is not None:
        if time_dim not in dims:
            raise ValueError(f"time_dim: {time_dim!r} is not a dimension of {name} {dims}")
        return time_dim
    if "time" in dims:
        return "time"
    timed = [d for d in dims if isinstance(indexes(d), (pd.DatetimeIndex, pd.PeriodIndex))]
    if len(timed) == 1 or len(dims) == 1:
        return timed[0] if timed else dims[0]
    raise ValueError(f"{name}: cannot tell which dimension is time among {dims}; pass time_dim=")


def _split_dims(dims: tuple, tdim, series_dim, name: str, max_other: int):
    if series_dim is not None and series_dim not in dims:
        raise ValueError(f"series_dim: {series_dim!r} is not a dimension of {name} {dims}")
    others = [d for d in dims if d not in (tdim, series_dim)]
    if len(others) > max_other and series_dim is None and "series" in others:
        series_dim = "series"
        others.remove("series")
    if len(others) > max_other:
        raise ValueError(f"{name}: dimensions {others} besides time {tdim!r}; pass series_dim= "
                         "naming the series dimension (at most one variable dimension remains)")
    return series_dim, (others[0] if others else None)


def _check_dtype_kind(dtype, what: str, name: str) -> None:
    if np.dtype(dtype).kind not in "biuf":
        raise ValueError(f"{name}: {what} is not numeric (dtype {dtype}); convert it to numbers")


def _read_dataarray(da: xr.DataArray, time_dim, series_dim, name: str) -> _Parts:
    dims = tuple(da.dims)
    tdim = _pick_time_dim(dims, time_dim, da.get_index, name)
    sdim, vdim = _split_dims(dims, tdim, series_dim, name, max_other=1)
    _check_dtype_kind(da.dtype, f"DataArray {da.name!r}", name)
    arr = np.array(da.transpose(*[d for d in (sdim, tdim, vdim) if d is not None]).values,
                   dtype=np.float64)  # copy, (n?, T, C?)
    arr = arr if sdim is not None else arr[None]  # (n, T, C?)
    arr = arr if vdim is not None else arr[..., None]  # (n, T, C)
    tindex = da.get_index(tdim)
    ids = tuple(_plain(i) for i in da.get_index(sdim)) if sdim is not None else (0,)
    cols = tuple(_plain(c) for c in da.get_index(vdim)) if vdim is not None else (da.name,)
    src = SourceMeta("dataarray", ids=ids, columns=cols, name=da.name, time_dim=tdim,
                     series_dim=sdim, var_dim=vdim, dims=dims,
                     coord_dims=tuple(d for d in (sdim, vdim) if d is not None and d in da.coords),
                     dtypes=(str(da.dtype),) * len(cols))
    rows = np.arange(len(tindex))
    return _Parts([tindex] * len(ids), list(arr), [rows] * len(ids),
                  f"position along {tdim!r}", src, tdim)


def _read_dataset(ds: xr.Dataset, target_cols, time_dim, series_dim, name: str) -> _Parts:
    names = list(ds.data_vars) if target_cols is None else list(target_cols)
    missing = [v for v in names if v not in ds.data_vars]
    if missing or not names:
        raise ValueError(f"{name}: data variables {missing or '(none)'} not found; it has "
                         f"{list(ds.data_vars)}")
    dims = tuple(ds[names[0]].dims)
    bad = [v for v in names if set(ds[v].dims) != set(dims)]
    if bad:
        raise ValueError(f"{name}: data variables {bad} do not share the dimensions {dims} of "
                         f"{names[0]!r}; pass only variables that share them (ds[[...]])")
    for v in names:
        _check_dtype_kind(ds[v].dtype, f"data variable {v!r}", name)
    tdim = _pick_time_dim(dims, time_dim, ds.get_index, name)
    sdim, _ = _split_dims(dims, tdim, series_dim, name, max_other=0)
    order = [d for d in (sdim, tdim) if d is not None]
    arr = np.stack([np.asarray(ds[v].transpose(*order).values, dtype=np.float64) for v in names],
                   axis=-1)  # (n?, T, C)
    arr = arr if sdim is not None else arr[None]  # (n, T, C)
    tindex = ds.get_index(tdim)
    ids = tuple(_plain(i) for i in ds.get_index(sdim)) if sdim is not None else (0,)
    src = SourceMeta("dataset", ids=ids, columns=tuple(names), time_dim=tdim, series_dim=sdim,
                     dims=dims,
                     coord_dims=(sdim,) if sdim is not None and sdim in ds.coords else (),
                     dtypes=tuple(str(ds[v].dtype) for v in names))
    rows = np.arange(len(tindex))
    return _Parts([tindex] * len(ids), list(arr), [rows] * len(ids),
                  f"position along {tdim!r}", src, tdim)


def _read_ndarray(y, name: str) -> _Parts:
    a = np.asarray(y)
    _check_dtype_kind(a.dtype, "the array", name)
    if a.ndim not in (1, 2, 3):
        raise ValueError(f"{name}: expected an array of shape (T,), (T, C) or (n_series, T, C), "
                         f"got shape {a.shape}")
    kind, dtype = f"ndarray{a.ndim}", str(a.dtype)
    a = np.array(a, dtype=np.float64)  # copy
    a = a.reshape(1, -1, 1) if a.ndim == 1 else (a[None] if a.ndim == 2 else a)  # (n, T, C)
    n, T, C = a.shape
    src = SourceMeta(kind, ids=tuple(range(n)), columns=tuple(range(C)), dtypes=(dtype,) * C)
    return _Parts([pd.RangeIndex(T)] * n, list(a), [np.arange(T)] * n, "row", src, None)


def _check_time_index(idx: pd.Index, rows, where: str, name: str, what=None) -> None:
    """Supported dtype and no missing stamps."""
    ok = isinstance(idx, (pd.DatetimeIndex, pd.PeriodIndex)) or idx.dtype.kind in "iuf"
    label = f"time column {what!r}" if what is not None else "the time index"
    if not ok:
        raise ValueError(f"{name}: {label} has dtype {idx.dtype}; parse it with pd.to_datetime "
                         "(or use periods / numbers)")
    if idx.hasnans:
        bad = int(np.argmax(np.asarray(idx.isna())))
        raise ValueError(f"{name}: {label} is missing (NaT/NaN) at {where} {rows[bad]}; "
                         "drop those rows")


def _check_increasing(idx: pd.Index, rows, where: str, name: str, label: str) -> None:
    bad = np.flatnonzero(np.asarray(idx[1:] <= idx[:-1]))
    if bad.size:
        i = int(bad[0]) + 1
        how = ("repeats" if idx[i] == idx[i - 1] else "comes before")
        raise ValueError(f"{name}: timestamps must be strictly increasing{label}; "
                         f"{where} {rows[i]} ({idx[i]}) {how} {where} {rows[i - 1]} "
                         f"({idx[i - 1]}); sort the data and drop duplicates")


def _check_values(parts: _Parts, name: str, allow_empty: bool = False) -> None:
    cols = parts.source.columns
    for s, (v, rows) in enumerate(zip(parts.values, parts.rows)):
        if np.isinf(v).any():
            t, c = np.argwhere(np.isinf(v))[0]
            raise ValueError(f"{name}: column {cols[c]!r} holds inf at {parts.where} {rows[t]} "
                             f"({parts.stamps[s][t]}); replace it with NaN to mask it")
    if allow_empty:
        return
    seen = np.zeros(len(cols), dtype=bool)
    for v in parts.values:
        seen |= ~np.isnan(v).all(axis=0)
    if not seen.all():
        empty = [cols[c] for c in np.flatnonzero(~seen)]
        raise ValueError(f"{name}: columns {empty} hold no values (all NaN); drop them")


def _kind(idx: pd.Index) -> str:
    if isinstance(idx, pd.DatetimeIndex):
        return "datetime"
    if isinstance(idx, pd.PeriodIndex):
        return "period"
    return "float" if idx.dtype.kind == "f" else "integer"


def _like_stamps(like: TimeIndexMeta, stamps: list, name: str) -> list:
    """Stamps of new rows checked against (and converted to) the fitted time metadata."""
    if len(stamps) != len(like.origin):
        raise ValueError(f"{name}: has {len(stamps)} series, the data seen before had "
                         f"{len(like.origin)}")
    want = {"range": "integer"}.get(like.kind, like.kind)
    out = []
    for idx in stamps:
        got = _kind(idx)
        if got != want and not (want == "float" and got == "integer"):
            raise ValueError(f"{name}: the time index holds {got} stamps but the model was "
                             f"fitted on {want} stamps; pass new rows indexed like y")
        if like.kind == "datetime" and (idx.tz is None) != (like.tz is None):
            zone = lambda z: "tz-naive" if z is None else f"in {z}"  # noqa: E731
            raise ValueError(f"{name}: timestamps are {zone(idx.tz)} but the data seen before "
                             f"are {zone(like.tz)}; convert them (tz_localize / tz_convert) "
                             "to match")
        out.append(like.coerce_stamps(idx, name) if like.kind in ("datetime", "period")
                   else idx)
    return out


def _assemble(parts: _Parts, name: str, like: TimeIndexMeta | None = None) -> SeriesData:
    """Validate blocks, infer the time meta, pad at the end into one SeriesData."""
    lengths = np.array([len(v) for v in parts.values], dtype=np.int64)
    C = len(parts.source.columns)
    if lengths.size == 0 or lengths.min() == 0 or C == 0:
        raise ValueError(f"{name}: is empty ({int(lengths.sum())} time steps, {C} columns); "
                         "pass at least one column and two time steps")
    multi = len(parts.values) > 1 and parts.source.kind == "dataframe_long"
    for s, (idx, rows) in enumerate(zip(parts.stamps, parts.rows)):
        _check_time_index(idx, rows, parts.where, name)
        label = f" within each series (series {parts.source.ids[s]!r})" if multi else ""
        _check_increasing(idx, rows, parts.where, name, label)
    if like is None:
        _check_values(parts, name)
        meta = infer_time_meta(parts.stamps, parts.time_name)
    else:
        _check_values(parts, name, allow_empty=True)
        parts = parts._replace(stamps=_like_stamps(like, list(parts.stamps), name))
        meta = dataclasses.replace(like, last=tuple(idx[-1] for idx in parts.stamps))
    n, T = len(lengths), int(lengths.max())
    values = np.full((n, T, C), np.nan)
    time = np.empty((n, T))
    for s, (idx, v) in enumerate(zip(parts.stamps, parts.values)):
        L = lengths[s]
        values[s, :L] = v
        time[s, :L] = meta.to_steps(idx, s)
        time[s, L:] = time[s, L - 1] + np.arange(1, T - L + 1)  # end padding, gap 1
    return SeriesData(values, ~np.isnan(values), time, lengths, tuple(parts.stamps), meta,
                      parts.source)


# ---------------------------------------------------------------------------
# future stamps
# ---------------------------------------------------------------------------
def _meta(data) -> DataMeta:
    if isinstance(data, SeriesData):
        return data.meta
    if isinstance(data, DataMeta):
        return data
    raise TypeError(f"data: expected a SeriesData or DataMeta, got {type(data).__name__}")


def future_times(data: SeriesData | DataMeta, h: int | None = None,
                 at: Any = None) -> tuple[np.ndarray, tuple]:
    """Future stamps to forecast at, and their numeric time.

    Parameters
    ----------
    data : SeriesData or DataMeta
        What was fitted (only the metadata is used).
    h : int, optional
        Number of steps; regular data only, unless ``at`` is given.
    at : array-like of stamps, optional
        Future stamps (shared by every series), strictly increasing and after
        each series' last stamp; required for irregular data.

    Returns
    -------
    times : float64 array, shape (n_series, h)
        Numeric time (steps since each series' origin, like ``SeriesData.time``).
    stamps : tuple of pd.Index, n_series entries of length h
    """
    meta = _meta(data).index
    n = len(meta.origin)
    if at is None:
        if h is None or isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1:
            raise ValueError(f"h: expected a positive int number of steps, got {h!r}")
        stamps = tuple(meta.next_stamps(s, int(h)) for s in range(n))
    else:
        idx = meta.coerce_stamps(at)
        if len(idx) == 0 or (h is not None and h != len(idx)):
            raise ValueError(f"at: got {len(idx)} stamps but h={h}; give h stamps (or leave h out)")
        _check_increasing(idx, np.arange(len(idx)), "position", "at", "")
        for s in range(n):
            if idx[0] <= meta.last[s]:
                raise ValueError(f"at: the first future stamp {idx[0]} is not after the last stamp "
                                 f"{meta.last[s]} of series {_meta(data).source.ids[s]!r}")
        stamps = (idx,) * n
    times = np.stack([meta.to_steps(st, s) for s, st in enumerate(stamps)])  # (n, h)
    return times, stamps


# ---------------------------------------------------------------------------
# out
# ---------------------------------------------------------------------------
def from_predictions(pred: Any, data: SeriesData | DataMeta, stamps: Sequence[pd.Index] | pd.Index,
                     quantiles: Sequence[float] | None = None) -> Any:
    """Put a forecast array back into the caller's container type.

    Parameters
    ----------
    pred : float array, shape (n_series, h, C), or (n_q, n_series, h, C) with ``quantiles``
    data : SeriesData or DataMeta
        What was fitted (only the metadata is used).
    stamps : tuple of pd.Index (n_series entries of length h), or one pd.Index for all
        Future stamps, as returned by :func:`future_times`.
    quantiles : sequence of float, length n_q, optional
        Levels of a leading quantile axis.

    Returns
    -------
    Same type as the fitted input:

    * wide DataFrame indexed by the future stamps, same columns (with quantiles:
      MultiIndex columns (column, quantile));
    * Series with the same name (with quantiles: DataFrame, one column per level);
    * long DataFrame with id_col, time_col and the targets (index levels restored;
      with quantiles: a "quantile" column, rows ordered series, quantile, time);
    * DataArray / Dataset with the time coordinate and the series dimension, same
      dimension order (with quantiles: a leading "quantile" dimension);
    * numpy array (h,), (h, C) or (n_series, h, C) (with quantiles: leading n_q axis).
    """
    meta = _meta(data)
    src = meta.source
    n, C = len(src.ids), len(src.columns)
    q = None if quantiles is None else [float(x) for x in quantiles]
    pred = np.asarray(pred, dtype=np.float64)
    want_nd = 3 if q is None else 4
    if pred.ndim != want_nd or pred.shape[-3] != n or pred.shape[-1] != C or (
            q is not None and pred.shape[0] != len(q)):
        lead = "" if q is None else f"{len(q)}, "
        raise ValueError(f"pred: expected shape ({lead}{n}, h, {C}) (quantiles, series, steps, "
                         f"columns), got {pred.shape}")
    h = pred.shape[-2]
    stamps = (stamps,) * n if isinstance(stamps, pd.Index) else tuple(stamps)
    if len(stamps) != n or any(len(st) != h for st in stamps):
        raise ValueError(f"stamps: expected {n} indexes of length {h} (from future_times)")
    builder = {"dataframe_wide": _to_wide, "series": _to_series, "dataframe_long": _to_long,
               "dataarray": _to_xarray, "dataset": _to_xarray}.get(src.kind, _to_ndarray)
    return builder(pred, src, meta.index.name, stamps, q)


def _to_wide(pred, src: SourceMeta, tname, stamps, q):
    cols = pd.Index(list(src.columns), name=src.columns_name, tupleize_cols=False)
    if q is None:
        return pd.DataFrame(pred[0], index=stamps[0], columns=cols)
    flat = pred[:, 0].transpose(1, 2, 0).reshape(pred.shape[2], -1)  # (h, C * n_q)
    mcols = pd.MultiIndex.from_product([cols, q], names=[src.columns_name, "quantile"])
    return pd.DataFrame(flat, index=stamps[0], columns=mcols)


def _to_series(pred, src: SourceMeta, tname, stamps, q):
    if q is None:
        return pd.Series(pred[0, :, 0], index=stamps[0], name=src.name)
    return pd.DataFrame(pred[:, 0, :, 0].T, index=stamps[0],  # (h, n_q)
                        columns=pd.Index(q, name="quantile"))


def _to_long(pred, src: SourceMeta, tname, stamps, q):
    frames = []
    for s, sid in enumerate(src.ids):
        for k in range(1 if q is None else len(q)):
            block = pred[s] if q is None else pred[k, s]  # (h, C)
            f = pd.DataFrame(block, columns=pd.Index(list(src.columns), tupleize_cols=False))
            if q is not None:
                f.insert(0, "quantile", q[k])
            f.insert(0, "__time__", stamps[s])
            if src.id_col is not None:
                f.insert(0, src.id_col, [sid] * len(f))
            frames.append(f)
    out = pd.concat(frames, ignore_index=True)
    if src.id_col is not None and src.id_dtype is not None:
        try:
            out[src.id_col] = out[src.id_col].astype(src.id_dtype)
        except (TypeError, ValueError):
            pass  # keep the python labels
    out.columns.name = src.columns_name
    if src.time_col is None:
        return out.set_index("__time__").rename_axis(tname)
    out = out.rename(columns={"__time__": src.time_col})
    return out.set_index(list(src.index_levels)) if src.index_levels else out


def _to_xarray(pred, src: SourceMeta, tname, stamps, q):
    if any(not st.equals(stamps[0]) for st in stamps):
        raise ValueError("stamps: an xarray forecast shares one time coordinate, but the series "
                         "have different future stamps; pass at= to forecast at common stamps")
    sdim = src.series_dim if src.series_dim is not None else "__series__"
    coords = {src.time_dim: stamps[0].rename(None)}
    if src.series_dim in src.coord_dims:
        coords[sdim] = list(src.ids)
    lead = [] if q is None else ["quantile"]
    if q is not None:
        coords["quantile"] = q
    order = lead + list(src.dims)
    if src.kind == "dataset":
        dvars = {c: (lead + [sdim, src.time_dim], pred[..., j]) for j, c in enumerate(src.columns)}
        ds = xr.Dataset(dvars, coords=coords)  # each var (n_q?, n, h)
        ds = ds.isel({sdim: 0}, drop=True) if src.series_dim is None else ds
        return ds.transpose(*order)
    vdim = src.var_dim if src.var_dim is not None else "__var__"
    if src.var_dim in src.coord_dims:
        coords[vdim] = list(src.columns)
    da = xr.DataArray(pred, dims=lead + [sdim, src.time_dim, vdim], coords=coords, name=src.name)
    drop = {d: 0 for d, keep in ((sdim, src.series_dim), (vdim, src.var_dim)) if keep is None}
    return da.isel(drop, drop=True).transpose(*order)


def _to_ndarray(pred, src: SourceMeta, tname, stamps, q):
    if src.kind == "ndarray1":
        return pred[..., 0, :, 0].copy()  # (n_q?, h)
    if src.kind == "ndarray2":
        return pred[..., 0, :, :].copy()  # (n_q?, h, C)
    return pred.copy()  # (n_q?, n, h, C)
