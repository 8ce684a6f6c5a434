"""The one internal container for time-series data, and its JSON-able metadata.

Every user container (pandas wide or long, Series, xarray, numpy) is turned into
a :class:`SeriesData` by :func:`ssmts.data.adapters.to_series_data`; forecasts go
back to the caller's type through the metadata kept here (:class:`TimeIndexMeta`
says how numeric time maps to the caller's index, :class:`SourceMeta` what the
container looked like). Both metadata classes round-trip through plain JSON, so
a fitted estimator can save them beside its weights without pickling.

Numeric time
------------
``time[s, t]`` is measured in *steps* from the series' origin (the first stamp
given for series ``s``):

* regular data (a pandas frequency, a RangeIndex, or stamps on a fixed grid):
  the grid position, ``0, 1, 2, ...``; a stamp missing from the grid shows up
  as a gap of 2 (the data is not re-gridded; timestamps are data);
* irregular data: elapsed time divided by the median gap, so gaps are ~1.

Stamps are differenced in integer seconds and nanoseconds, then float64, never
through int64 nanoseconds since the origin (which overflow past 292 years), so
any span pandas holds works and ``gaps`` are exact to float64 rounding. Calendar
grids are built only up to the stamps asked for; future stamps past pandas'
last timestamp of y's unit (2262-04-11 for nanoseconds) raise a ``ValueError``.

``gaps[s, t] = time[s, t] - time[s, t - 1]`` and the first gap of each series is
``lead_gap[s]`` (1.0 for a series as given; the real gap for a slice taken from
the middle of a series). Series of different lengths are padded at the END:
values NaN, mask False, time continuing in steps of 1; ``lengths`` gives the
real length of each series and padding is not counted by ``n_masked``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Hashable, Sequence

import numpy as np

# re-exported: TimeIndexMeta and infer_time_meta were defined here first
from ssmts.data.timeindex import (TimeIndexMeta, _is_tick, _plain, _unplain,  # noqa: F401
                                  infer_time_meta)

__all__ = ["TimeIndexMeta", "SourceMeta", "DataMeta", "SeriesData", "infer_time_meta"]

INDEX_KINDS = ("datetime", "period", "range", "float", "integer")
SOURCE_KINDS = ("dataframe_wide", "series", "dataframe_long", "dataarray", "dataset",
                "ndarray1", "ndarray2", "ndarray3")


@dataclass(frozen=True)
class SourceMeta:
    """What the caller's container looked like, to give forecasts back in kind.

    Attributes
    ----------
    kind : str
        One of ``"dataframe_wide"``, ``"series"``, ``"dataframe_long"``,
        ``"dataarray"``, ``"dataset"``, ``"ndarray1"``, ``"ndarray2"``, ``"ndarray3"``.
    ids : tuple, length n_series
        Series labels (long-format ids, xarray series coordinate, or 0..n-1).
    columns : tuple, length C
        Variable labels (DataFrame columns, Series / DataArray name, Dataset
        data variables, variable coordinate, or 0..C-1).
    name : label or None
        pd.Series / xr.DataArray name.
    columns_name : label or None
        ``DataFrame.columns.name``.
    id_col, time_col : label or None
        Long-format column names (``time_col`` None: time came from the index).
    index_levels : tuple
        Long-format names that came from the DataFrame's index (restored there).
    time_dim, series_dim, var_dim : str or None
        xarray dimension names.
    dims : tuple
        xarray dimension order of the input.
    coord_dims : tuple
        xarray dimensions (besides time) that carried a coordinate.
    dtypes : tuple of str
        Input dtype of each column (values are float64 inside).
    id_dtype : str or None
        dtype of the ids (long format).
    """

    kind: str
    ids: tuple
    columns: tuple
    name: Hashable | None = None
    columns_name: Hashable | None = None
    id_col: Hashable | None = None
    time_col: Hashable | None = None
    index_levels: tuple = ()
    time_dim: Hashable | None = None
    series_dim: Hashable | None = None
    var_dim: Hashable | None = None
    dims: tuple = ()
    coord_dims: tuple = ()
    dtypes: tuple = ()
    id_dtype: str | None = None

    def to_dict(self) -> dict:
        """Plain JSON-able dict (``json.dumps`` works); inverse of :meth:`from_dict`."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "SourceMeta":
        """Rebuild from :meth:`to_dict` output (JSON lists come back as tuples)."""
        tuples = {"ids", "columns", "index_levels", "dims", "coord_dims", "dtypes"}
        kw = {k: (tuple(_unplain(v) for v in d[k]) if k in tuples else _unplain(d[k]))
              for k in d}
        return cls(**kw)


@dataclass(frozen=True)
class DataMeta:
    """All a fitted estimator must keep to make future stamps and output containers."""

    index: TimeIndexMeta
    source: SourceMeta

    def to_dict(self) -> dict:
        """Plain JSON-able dict with keys "index" and "source"."""
        return {"index": self.index.to_dict(), "source": self.source.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "DataMeta":
        """Rebuild from :meth:`to_dict` output."""
        return cls(TimeIndexMeta.from_dict(d["index"]), SourceMeta.from_dict(d["source"]))


@dataclass(frozen=True, eq=False)
class SeriesData:
    """Values, timestamps, mask and ids of one or several multivariate series.

    Attributes
    ----------
    values : float64 array, shape (n_series, T, C)
        NaN where missing (and in end padding); never zero-filled.
    mask : bool array, shape (n_series, T, C)
        True where observed.
    time : float64 array, shape (n_series, T)
        Numeric time in steps since each series' origin (see module docstring).
    lengths : int64 array, shape (n_series,)
        Real length of each series; positions ``>= lengths[s]`` are padding.
    stamps : tuple of pd.Index, n_series entries, entry s of length lengths[s]
        The caller's timestamps of each series.
    index_meta : TimeIndexMeta
    source : SourceMeta
    lead_gap : float64 array, shape (n_series,)
        Gap before the first step of each series (1.0 unless sliced).

    Arrays are made read-only; slicing methods return new objects.
    """

    values: np.ndarray
    mask: np.ndarray
    time: np.ndarray
    lengths: np.ndarray
    stamps: tuple
    index_meta: TimeIndexMeta
    source: SourceMeta
    lead_gap: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        dtypes = {"values": np.float64, "mask": bool, "time": np.float64, "lengths": np.int64,
                  "lead_gap": np.float64}
        if self.lead_gap is None:
            object.__setattr__(self, "lead_gap", np.ones(np.shape(self.values)[0]))
        for key, dtype in dtypes.items():  # read-only views; the caller's arrays keep their flags
            arr = np.asarray(getattr(self, key), dtype=dtype).view()
            arr.setflags(write=False)
            object.__setattr__(self, key, arr)
        if self.values.ndim != 3:
            raise ValueError(f"values: expected shape (n_series, T, C), got {self.values.shape}")
        n, T, C = self.values.shape
        shapes = {"mask": (self.mask.shape, (n, T, C)), "time": (self.time.shape, (n, T)),
                  "lengths": (self.lengths.shape, (n,)), "lead_gap": (self.lead_gap.shape, (n,))}
        for key, (got, want) in shapes.items():
            if got != want:
                raise ValueError(f"{key}: expected shape {want} to match values {(n, T, C)}, "
                                 f"got {got}")
        if len(self.stamps) != n or len(self.source.ids) != n or len(self.source.columns) != C:
            raise ValueError("stamps, source.ids and source.columns must match values' shape "
                             f"{(n, T, C)}")

    @property
    def meta(self) -> DataMeta:
        """The JSON-able metadata (index and source)."""
        return DataMeta(self.index_meta, self.source)

    @property
    def ids(self) -> tuple:
        """Series labels, length n_series."""
        return self.source.ids

    @property
    def columns(self) -> tuple:
        """Variable labels, length C."""
        return self.source.columns

    @property
    def n_series(self) -> int:
        return self.values.shape[0]

    @property
    def n_steps(self) -> int:
        """T, the padded length."""
        return self.values.shape[1]

    @property
    def n_channels(self) -> int:
        return self.values.shape[2]

    @property
    def valid(self) -> np.ndarray:
        """bool array, shape (n_series, T): True inside each series (not padding)."""
        return np.arange(self.n_steps)[None, :] < self.lengths[:, None]

    @property
    def gaps(self) -> np.ndarray:
        """float64 array, shape (n_series, T): time[t] - time[t-1], first = lead_gap."""
        return np.concatenate([self.lead_gap[:, None], np.diff(self.time, axis=1)], axis=1)

    @property
    def n_masked(self) -> int:
        """Number of missing values inside the series (end padding not counted)."""
        return int((~self.mask & self.valid[:, :, None]).sum())

    @property
    def n_observed(self) -> int:
        """Number of observed values."""
        return int(self.mask.sum())

    def slice_steps(self, start: Sequence[int], stop: Sequence[int]) -> "SeriesData":
        """Per-series positions ``start[s]:stop[s]`` as a new (re-padded) SeriesData.

        Parameters
        ----------
        start, stop : int sequences, length n_series, with 0 <= start < stop <= lengths[s]

        Numeric time keeps its origin; ``lead_gap`` becomes the real gap before
        ``start`` and ``index_meta.last`` the last stamp of each slice.
        """
        start, stop = np.asarray(start, dtype=np.int64), np.asarray(stop, dtype=np.int64)
        if start.shape != (self.n_series,) or stop.shape != (self.n_series,):
            raise ValueError(f"start, stop: expected {self.n_series} entries each")
        if np.any(start < 0) or np.any(stop > self.lengths) or np.any(stop <= start):
            raise ValueError("start, stop: need 0 <= start < stop <= lengths for every series; "
                             f"got start={start.tolist()}, stop={stop.tolist()}, "
                             f"lengths={self.lengths.tolist()}")
        lengths = stop - start
        T = int(lengths.max())
        vals = np.full((self.n_series, T, self.n_channels), np.nan)
        mask = np.zeros(vals.shape, dtype=bool)
        time = np.empty((self.n_series, T))
        gaps = self.gaps
        for s in range(self.n_series):
            a, b, L = start[s], stop[s], lengths[s]
            vals[s, :L], mask[s, :L] = self.values[s, a:b], self.mask[s, a:b]
            time[s, :L] = self.time[s, a:b]
            time[s, L:] = time[s, L - 1] + np.arange(1, T - L + 1)
        stamps = tuple(st[a:b] for st, a, b in zip(self.stamps, start, stop))
        meta = dataclasses.replace(self.index_meta, last=tuple(st[-1] for st in stamps))
        lead = gaps[np.arange(self.n_series), start]  # (n_series,)
        return SeriesData(vals, mask, time, lengths, stamps, meta, self.source, lead)
