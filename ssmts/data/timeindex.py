"""Time indexes: how numeric time (in steps) maps to the caller's stamps.

:class:`TimeIndexMeta` turns stamps into steps and back, generates future stamps
and round-trips through plain JSON; :func:`infer_time_meta` builds it from the
caller's indexes. The numeric-time conventions are described in
:mod:`ssmts.data.container`.

Stamps are differenced in integer seconds and nanoseconds, then float64, never
through int64 nanoseconds since the origin (which overflow past 292 years), so
any span pandas holds works and gaps are exact to float64 rounding. Calendar
grids are built only up to the stamps asked for; future stamps past pandas'
last timestamp of y's unit (2262-04-11 for nanoseconds) raise a ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np
import pandas as pd
from pandas.errors import OutOfBoundsDatetime, OutOfBoundsTimedelta
from pandas.tseries.frequencies import to_offset

__all__ = ["TimeIndexMeta", "infer_time_meta"]

def _plain(x: Any) -> Any:
    """A JSON-able version of a label (numpy scalar -> python, tuple -> list, else str)."""
    if isinstance(x, np.generic):
        x = x.item()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, (tuple, list)):
        return [_plain(v) for v in x]
    return str(x)


def _unplain(x: Any) -> Any:
    """Inverse of :func:`_plain` for labels: JSON lists come back as (hashable) tuples."""
    return tuple(_unplain(v) for v in x) if isinstance(x, list) else x


def _is_tick(freq: str | None) -> bool:
    return freq is not None and isinstance(to_offset(freq), pd.offsets.Tick)


# pandas' datetime units, finest first, and their ticks per second
_UNITS = ("ns", "us", "ms", "s")
_PER_SECOND = {"ns": 10**9, "us": 10**6, "ms": 10**3, "s": 1}
_OUT_OF_BOUNDS = (OutOfBoundsDatetime, OutOfBoundsTimedelta, OverflowError)


def _last_timestamp(unit: str | None) -> str:
    """The last stamp pandas can hold in datetime64 ``unit`` (ns: 2262-04-11 23:47:16...)."""
    return str(np.datetime64(np.iinfo(np.int64).max, unit or "ns")).replace("T", " ")


def _split_seconds(idx: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """(whole seconds, nanoseconds within that second) since the epoch (UTC), int64 each.

    Exact for stamps of any unit, so differences never overflow int64 the way
    nanoseconds do for spans over 292 years.
    """
    per = _PER_SECOND[idx.unit]
    a = idx.asi8
    return a // per, (a % per) * (10**9 // per)


def _elapsed_ns(stamps: pd.DatetimeIndex, origin: pd.Timestamp) -> np.ndarray:
    """float64 (n,) nanoseconds from ``origin`` to each stamp, for spans of any length.

    Integer arithmetic first: exact while the span fits int64 nanoseconds
    (292 years), one float64 rounding (relative 1e-16) beyond.
    """
    sec, sub = _split_seconds(pd.DatetimeIndex(stamps))
    sec0, sub0 = _split_seconds(pd.DatetimeIndex([origin]))
    d_sec, d_sub = sec - sec0[0], sub - sub0[0]  # int64 (n,) each, no overflow
    if d_sec.size == 0 or np.abs(d_sec).max() < 9 * 10**9:  # |ns| < 9e18 fits int64
        return (d_sec * 10**9 + d_sub).astype(np.float64)
    return d_sec.astype(np.float64) * 1e9 + d_sub.astype(np.float64)


def _gaps_ns(idx: pd.DatetimeIndex) -> np.ndarray:
    """int64 (n - 1,) nanoseconds between consecutive stamps (any unit, any span)."""
    sec, sub = _split_seconds(idx)
    d_sec = np.diff(sec)
    if d_sec.size and np.abs(d_sec).max() >= 9 * 10**9:
        i = int(np.argmax(np.abs(d_sec) >= 9 * 10**9))
        raise ValueError(f"time index: the stamps {idx[i]} and {idx[i + 1]} are more than 292 "
                         "years apart, a gap longer than a pandas Timedelta holds; split the "
                         "series there")
    return d_sec * 10**9 + np.diff(sub)


def _coarsest(*units: str) -> str:
    """The coarsest of pandas datetime units (the one with the widest range)."""
    return max(units, key=_UNITS.index)


def _encode_stamp(kind: str, x: Any) -> Any:
    if kind == "datetime":  # in UTC: local mean time offsets (+00:53:28) do not parse back
        return (x if x.tz is None else x.tz_convert("UTC")).isoformat()
    if kind == "period":
        return int(x.ordinal)
    return _plain(x)


def _decode_stamp(kind: str, x: Any, freq, tz, resolution) -> Any:
    if kind == "datetime":
        ts = pd.Timestamp(x)
        ts = ts.tz_convert(tz) if tz is not None else ts
        return ts.as_unit(resolution) if resolution else ts
    if kind == "period":
        return pd.Period(ordinal=int(x), freq=freq)
    return x


@dataclass(frozen=True)
class TimeIndexMeta:
    """How numeric time (in steps) maps to the caller's time index.

    Attributes
    ----------
    kind : str
        One of ``"datetime"``, ``"period"``, ``"range"``, ``"float"``, ``"integer"``.
    origin, last : tuple, length n_series
        Per series, the stamp at numeric time 0 and the last observed stamp
        (``pd.Timestamp``, ``pd.Period``, int or float by ``kind``).
    unit : pd.Timedelta or float
        Length of one step: the frequency (datetime with a fixed frequency),
        the median gap (irregular, or a calendar frequency such as "MS", where
        it is only nominal), the RangeIndex step, the grid step, or 1.0 for periods.
    freq : str or None
        pandas offset alias of a datetime / period frequency, else None.
    tz : str or None
        Time zone of datetime stamps.
    name : label or None
        Name of the caller's time index (or time column / dimension).
    regular : bool
        True when stamps lie on a grid (a frequency, a RangeIndex or a fixed
        step), so future stamps can be generated; False means ``at=`` is needed.
    resolution : str or None
        datetime64 unit of the caller's stamps ("ns", "us", ...).
    """

    kind: str
    origin: tuple
    last: tuple
    unit: Any
    freq: str | None = None
    tz: str | None = None
    name: Hashable | None = None
    regular: bool = True
    resolution: str | None = None

    # -- numeric time --------------------------------------------------------
    def to_steps(self, stamps: pd.Index, series: int) -> np.ndarray:
        """Numeric time of ``stamps`` for series ``series``.

        Parameters
        ----------
        stamps : pd.Index, length n, of this meta's kind (see :meth:`coerce_stamps`)
        series : int, position of the series

        Returns
        -------
        float64 array, shape (n,), steps since ``origin[series]``
        """
        origin = self.origin[series]
        if self.kind == "datetime":
            stamps = pd.DatetimeIndex(stamps)
            if self.freq is not None and not _is_tick(self.freq):
                return self._calendar_steps(stamps, origin)
            return _elapsed_ns(stamps, origin) / float(self.unit.value)  # float64 throughout
        if self.kind == "period":
            return (stamps.asi8 - origin.ordinal).astype(np.float64) / origin.freq.n
        return (np.asarray(stamps, dtype=np.float64) - float(origin)) / float(self.unit)

    def _calendar_steps(self, stamps: pd.DatetimeIndex, origin: pd.Timestamp) -> np.ndarray:
        """Grid positions for a calendar frequency (months, years, business days, DST days).

        The grid (``origin`` stepped by ``freq``, as ``pd.date_range`` makes it) is
        built only up to the last stamp asked for, plus one step when that stays
        within pandas' bounds; a stamp between grid points gets a fractional
        position, one past the last representable grid point (or before the
        origin) its elapsed time over the nominal ``unit``. Spans of any length
        work: nothing goes through int64 nanoseconds.

        Returns
        -------
        float64 array, shape (n,), grid steps since ``origin``
        """
        e = _elapsed_ns(stamps, origin)  # (n,) float64
        unit_ns = max(float(self.unit.value), 1.0)
        out = e / unit_ns  # before the origin: nominal steps
        ahead = e >= 0
        if not ahead.any():
            return out
        off = to_offset(self.freq)
        res = _coarsest(origin.unit, stamps.unit)  # a unit that holds origin and stamps
        start = origin.as_unit(res)
        end = stamps[ahead].max().as_unit(res)
        if start.tz is not None:
            end = end.tz_convert(start.tz)
        # pd.date_range computes one point past its end, so stop it two steps short of
        # ``end`` (near pandas' last timestamp that point may not exist) and step on by hand
        try:
            near = end - 2 * off
        except _OUT_OF_BOUNDS:  # ``end`` within two steps of pandas' first timestamp
            near = start
        grid = pd.date_range(start, end=near, freq=off, unit=res) if near > start else []
        grid = pd.DatetimeIndex(grid, dtype=pd.DatetimeIndex([start]).dtype)
        if len(grid) == 0 or grid[0] != start:  # an origin off the offset is still step 0
            grid = pd.DatetimeIndex([start]).append(grid)
        extra = []
        while (extra[-1] if extra else grid[-1]) < end:  # a few steps
            try:
                extra.append((extra[-1] if extra else grid[-1]) + off)
            except _OUT_OF_BOUNDS:
                break  # the next grid point is past pandas' bounds: extrapolate below
        grid = grid.append(pd.DatetimeIndex(extra, dtype=grid.dtype)) if extra else grid
        g = _elapsed_ns(grid, origin)  # (m,) float64, increasing, g[0] == 0
        pos = np.interp(e[ahead], g, np.arange(len(g), dtype=np.float64))
        past = e[ahead] > g[-1]
        pos[past] = len(g) - 1 + (e[ahead][past] - g[-1]) / unit_ns
        out[ahead] = pos
        return out

    def next_stamps(self, series: int, h: int) -> pd.Index:
        """The ``h`` grid stamps after ``last[series]``; regular data only.

        Returns
        -------
        pd.Index of this meta's kind, length h (DatetimeIndex with ``freq`` set,
        PeriodIndex, RangeIndex with the original step, or numeric Index)
        """
        if not self.regular:
            raise ValueError(
                "y has irregular timestamps (no frequency or fixed step), so the future "
                "stamps cannot be generated; pass the future timestamps as at=[...]")
        last = self.last[series]
        if self.kind == "datetime":
            try:
                return pd.date_range(last, periods=h + 1, freq=self.freq, name=self.name,
                                     unit=self.resolution)[1:]
            except _OUT_OF_BOUNDS as exc:
                res = self.resolution or "ns"
                coarser = {"ns": "'us'", "us": "'ms'", "ms": "'s'"}.get(res)
                hint = (f", or give y's index a coarser unit (y.index.as_unit({coarser}))"
                        if coarser else "")
                raise ValueError(
                    f"h={h} steps of {self.freq} from {last} go past pandas' last timestamp "
                    f"{_last_timestamp(res)} (datetime64[{res}] stamps); forecast fewer "
                    f"steps{hint}") from exc
        if self.kind == "period":
            return pd.period_range(last, periods=h + 1, freq=self.freq, name=self.name)[1:]
        if self.kind == "range":
            step = int(self.unit)
            return pd.RangeIndex(last + step, last + step * (h + 1), step, name=self.name)
        steps = last + self.unit * np.arange(1, h + 1)  # (h,)
        dtype = np.int64 if self.kind == "integer" else np.float64
        return pd.Index(steps.astype(dtype), name=self.name)

    def coerce_stamps(self, at: Any, argname: str = "at") -> pd.Index:
        """Turn user-given stamps into a pd.Index of this meta's kind (tz checked)."""
        try:
            if self.kind == "datetime":
                idx = pd.DatetimeIndex(at)
            elif self.kind == "period":
                idx = pd.PeriodIndex(at, freq=self.freq)
            else:
                idx = pd.Index(np.asarray(at))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{argname}: cannot read the timestamps as {self.kind} stamps like "
                             f"y's ({exc})") from exc
        if self.kind == "datetime":
            if (idx.tz is None) != (self.tz is None):
                got = "tz-naive" if idx.tz is None else f"in {idx.tz}"
                raise ValueError(f"{argname}: timestamps are {got} but y's are "
                                 f"{'in ' + self.tz if self.tz else 'tz-naive'}; make them match")
            idx = idx.tz_convert(self.tz) if self.tz is not None else idx
            idx = self._in_resolution(idx)
        elif self.kind not in ("datetime", "period") and idx.dtype.kind not in "iuf":
            raise ValueError(f"{argname}: expected numeric time values like y's index, got "
                             f"dtype {idx.dtype}")
        return idx.rename(self.name)

    def _in_resolution(self, idx: pd.DatetimeIndex) -> pd.DatetimeIndex:
        """``idx`` in y's datetime unit when that loses nothing, else as given."""
        if not self.resolution or idx.unit == self.resolution:
            return idx
        try:
            conv = idx.as_unit(self.resolution)
        except _OUT_OF_BOUNDS:
            return idx  # beyond what y's unit holds: keep the caller's unit
        return conv if conv.as_unit(idx.unit).equals(idx) else idx

    # -- JSON ----------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-able dict (``json.dumps`` works); inverse of :meth:`from_dict`."""
        unit = int(self.unit.value) if self.kind == "datetime" else _plain(self.unit)
        return {"kind": self.kind, "origin": [_encode_stamp(self.kind, o) for o in self.origin],
                "last": [_encode_stamp(self.kind, o) for o in self.last], "unit": unit,
                "freq": self.freq, "tz": self.tz, "name": _plain(self.name),
                "regular": bool(self.regular), "resolution": self.resolution}

    @classmethod
    def from_dict(cls, d: dict) -> "TimeIndexMeta":
        """Rebuild from :meth:`to_dict` output."""
        kind, freq, tz, res = d["kind"], d["freq"], d["tz"], d["resolution"]
        unit = pd.Timedelta(int(d["unit"]), unit="ns") if kind == "datetime" else d["unit"]
        dec = [tuple(_decode_stamp(kind, x, freq, tz, res) for x in d[k])
               for k in ("origin", "last")]
        return cls(kind=kind, origin=dec[0], last=dec[1], unit=unit, freq=freq, tz=tz,
                   name=_unplain(d["name"]), regular=bool(d["regular"]), resolution=res)


def _grid(diffs: np.ndarray, exact: bool) -> tuple[float, bool]:
    """(step, on_grid): the smallest gap if it is also the median and every gap is a
    multiple of it (a grid with holes), else the median gap."""
    if diffs.size == 0:
        return 1.0, False
    mn, med = float(diffs.min()), float(np.median(diffs))
    ratio = diffs / mn
    if exact:
        on = bool(np.all(diffs % diffs.min() == 0)) and mn == med
    else:
        on = bool(np.all(np.abs(ratio - np.round(ratio)) < 1e-6)) and abs(med - mn) <= 1e-6 * mn
    if on and not exact:
        mn = float(np.median(diffs[np.round(ratio) == 1]))
    return (mn, True) if on else (med, False)


def _datetime_freq(indexes: Sequence[pd.DatetimeIndex]) -> str | None:
    """A frequency all series agree on (declared or inferred), else None."""
    declared = {idx.freqstr for idx in indexes if idx.freq is not None}
    if len(declared) == 1 and all(idx.freq is not None or len(idx) < 3 for idx in indexes):
        return declared.pop()
    found = set()
    with pd.option_context("future.infer_freq_returns_offset", True):
        for idx in indexes:
            if len(idx) >= 3:
                off = pd.infer_freq(idx)
                found.add(None if off is None else off.freqstr)
    return found.pop() if len(found) == 1 else None


_TOO_SHORT = ("y: every series has a single timestamp, so the time step is unknown; "
              "pass at least 2 timestamps per series (or an index with a frequency)")


def infer_time_meta(indexes: Sequence[pd.Index], name: Hashable | None = None) -> TimeIndexMeta:
    """Build the :class:`TimeIndexMeta` of validated, strictly increasing indexes.

    Parameters
    ----------
    indexes : sequence of pd.Index, one per series, all of one kind, non-empty
    name : label or None, the time index / column / dimension name

    Raises ``ValueError`` for an unsupported index dtype (strings, timedeltas).
    """
    first = indexes[0]
    origin = tuple(idx[0] for idx in indexes)
    last = tuple(idx[-1] for idx in indexes)
    if isinstance(first, pd.DatetimeIndex):
        tz = None if first.tz is None else str(first.tz)
        diffs = np.concatenate([_gaps_ns(idx) for idx in indexes])  # pooled gaps, int64 ns
        step, on_grid = _grid(diffs, exact=True)
        freq = _datetime_freq(indexes)
        if freq is None and on_grid:
            freq = to_offset(pd.Timedelta(int(step), unit="ns")).freqstr
        if diffs.size == 0 and freq is None:
            raise ValueError(_TOO_SHORT)
        if _is_tick(freq):
            unit = pd.Timedelta(to_offset(freq))
        else:  # nominal step of a calendar frequency, or the median gap
            if diffs.size:
                unit = pd.Timedelta(int(np.median(diffs)), unit="ns")
            else:
                two = pd.date_range(first[0], periods=2, freq=freq)
                unit = pd.Timedelta(two[1] - two[0])
        return TimeIndexMeta("datetime", origin, last, unit, freq, tz, name, freq is not None,
                             str(first.unit))
    if isinstance(first, pd.PeriodIndex):
        return TimeIndexMeta("period", origin, last, 1.0, first.freqstr, None, name, True)
    if isinstance(first, pd.RangeIndex) and all(isinstance(i, pd.RangeIndex) for i in indexes):
        step = first.step if len(first) > 1 else 1
        return TimeIndexMeta("range", tuple(int(o) for o in origin), tuple(int(x) for x in last),
                             int(step), None, None, name, True)
    if first.dtype.kind in "iu":
        diffs = np.concatenate([np.diff(np.asarray(i, dtype=np.int64)) for i in indexes])
        if diffs.size == 0:
            raise ValueError(_TOO_SHORT)
        step, on_grid = _grid(diffs, exact=True)
        unit = int(step) if on_grid else float(step)
        return TimeIndexMeta("integer", tuple(int(o) for o in origin), tuple(int(x) for x in last),
                             unit, None, None, name, on_grid)
    if first.dtype.kind == "f":
        diffs = np.concatenate([np.diff(np.asarray(i, dtype=np.float64)) for i in indexes])
        if diffs.size == 0:
            raise ValueError(_TOO_SHORT)
        step, on_grid = _grid(diffs, exact=False)
        return TimeIndexMeta("float", tuple(float(o) for o in origin),
                             tuple(float(x) for x in last), float(step), None, None, name, on_grid)
    raise ValueError(
        f"time index of dtype {first.dtype} is not supported; use datetimes (pd.to_datetime), "
        "periods, or numbers (a RangeIndex, integers or floats)")
