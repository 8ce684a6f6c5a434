"""Property: any wide frame goes through the adapters and back unchanged.

Random wide frames, with dropped rows (gaps), NaN, time zones, units and
frequencies (and RangeIndex / integer / float indexes), some over centuries:
``to_series_data`` then ``from_predictions`` (the way the forecasters use them)
gives back the values, stamps (zone, unit), names; numeric time is the float64
difference of the stamps over the unit (grid positions for calendar frequencies).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssmts.data import DataMeta, from_predictions, future_times, to_series_data
from ssmts.data.container import _is_tick

FREQS = ("h", "D", "MS", "YS", "15min")
NUMERIC = ("range", "integer", "float")
TZS = (None, "UTC", "Europe/Berlin", "America/New_York")
UNITS = ("s", "ms", "us", "ns")
PER_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}  # nanoseconds per tick
H = 3


@st.composite
def frames(draw):
    """(wide DataFrame, positions of its rows on the full grid)."""
    kind = draw(st.sampled_from(FREQS + NUMERIC))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_slots = draw(st.integers(2, 400))
    C = draw(st.integers(1, 3))
    if kind in FREQS:
        unit, tz = draw(st.sampled_from(UNITS)), draw(st.sampled_from(TZS))
        years = {"YS": n_slots, "MS": n_slots // 12 + 1}.get(kind, 1) + H + 2
        start = pd.Timestamp(year=draw(st.integers(1678, 2261 - years)),
                             month=draw(st.integers(1, 12)), day=draw(st.integers(1, 28)),
                             hour=draw(st.integers(4, 23)), minute=15 * draw(st.integers(0, 3)))
        full = pd.date_range(start, periods=n_slots, freq=kind, tz=tz, unit=unit)
    elif kind == "range":
        step = draw(st.integers(1, 5))
        first = draw(st.integers(-50, 50))
        full = pd.RangeIndex(first, first + step * n_slots, step)
    elif kind == "integer":
        full = pd.Index(draw(st.integers(-10**6, 10**6)) + draw(st.integers(1, 1000))
                        * np.arange(n_slots, dtype=np.int64))
    else:
        full = pd.Index(draw(st.floats(-1e3, 1e3)) + draw(st.sampled_from([0.1, 0.25, 3.7]))
                        * np.arange(n_slots))
    drop = 0.0 if kind == "range" else draw(st.sampled_from([0.0, 0.2, 0.7]))
    keep = np.flatnonzero(rng.uniform(size=n_slots) >= drop)
    keep = keep if keep.size >= 2 else np.arange(2)
    values = rng.normal(scale=10.0 ** rng.integers(-3, 4), size=(keep.size, C))
    values[rng.uniform(size=values.shape) < draw(st.sampled_from([0.0, 0.1, 0.4]))] = np.nan
    values[rng.integers(0, keep.size, C), np.arange(C)] = 1.5  # no column all NaN
    columns = pd.Index(draw(st.sampled_from([["a", "b", "c"], [0, 1, 2], ["x", 7, "y z"]]))[:C],
                       name=draw(st.sampled_from([None, "var"])))
    index = full[keep] if kind != "range" else full
    index = index.rename(draw(st.sampled_from([None, "when", 0])))
    return pd.DataFrame(values, index=index, columns=columns), keep


def _reference_steps(idx: pd.Index, meta) -> np.ndarray:
    """Steps since the first stamp, float64, with Python integers for the stamps' ticks."""
    if isinstance(idx, pd.DatetimeIndex):
        per = PER_NS[idx.unit]
        ns = [(int(a) - int(idx.asi8[0])) * per for a in idx.asi8]  # exact, any span
        return np.array([x / meta.unit.value for x in ns])
    return (np.asarray(idx, dtype=np.float64) - float(idx[0])) / float(meta.unit)


@pytest.mark.property
@settings(max_examples=25, deadline=None)
@given(frames())
def test_wide_frames_round_trip_through_the_adapters(case):
    df, keep = case
    data = to_series_data(df)
    meta = data.index_meta
    # values, mask, stamps and names in
    np.testing.assert_array_equal(data.values[0], df.to_numpy())  # NaN where NaN
    np.testing.assert_array_equal(data.mask[0], ~np.isnan(df.to_numpy()))
    assert data.stamps[0].equals(df.index) and data.stamps[0].dtype == df.index.dtype
    assert data.columns == tuple(df.columns) and meta.name == df.index.name
    # ... and out, as a forecaster hands them back
    back = from_predictions(data.values, data, data.stamps)
    pd.testing.assert_frame_equal(back, df, check_freq=False)
    assert back.index.dtype == df.index.dtype and back.columns.name == df.columns.name
    # numeric time: float64 stamp differences over the unit, or calendar grid positions
    assert data.time[0, 0] == 0.0 and np.all(np.diff(data.time[0]) > 0)
    calendar = meta.kind == "datetime" and meta.freq is not None and not _is_tick(meta.freq)
    if calendar:
        np.testing.assert_array_equal(data.time[0], keep - keep[0])
    else:
        ref = _reference_steps(df.index, meta)
        np.testing.assert_allclose(data.time[0], ref, rtol=1e-13, atol=1e-12)
        np.testing.assert_allclose(np.diff(data.time[0]), np.diff(ref), rtol=1e-12, atol=1e-12)
    # future stamps keep zone, unit and name; the metadata survives JSON
    if meta.regular:
        times, stamps = future_times(data, h=H)
    else:
        at = pd.Index([meta.last[0] + k * meta.unit for k in (1, 2.5)])
        if meta.kind == "datetime":  # whole ticks of y's unit: read back in that unit
            at = at.floor(pd.Timedelta(1, unit=df.index.unit))
        elif meta.kind == "integer":
            at = pd.Index(np.floor(np.asarray(at, dtype=np.float64)).astype(np.int64))
        times, stamps = future_times(data, at=at)
    fut = stamps[0]
    assert fut.dtype == df.index.dtype and fut.name == df.index.name
    assert times[0, 0] > data.time[0, -1] and np.all(np.diff(times[0]) > 0)
    if meta.kind == "datetime" and meta.regular:
        want = pd.date_range(df.index[-1], periods=H + 1, freq=meta.freq, unit=df.index.unit)
        assert fut.equals(want[1:].rename(df.index.name))
    pred = np.arange(len(fut) * df.shape[1], dtype=np.float64).reshape(1, len(fut), -1)
    out = from_predictions(pred, data, stamps)
    assert out.index.equals(fut) and out.index.dtype == df.index.dtype
    assert list(out.columns) == list(df.columns) and out.columns.name == df.columns.name
    np.testing.assert_array_equal(out.to_numpy(), pred[0])
    again = DataMeta.from_dict(json.loads(json.dumps(data.meta.to_dict())))
    t2, s2 = future_times(again, h=H) if meta.regular else future_times(again, at=at)
    np.testing.assert_array_equal(t2, times)
    assert s2[0].equals(fut) and s2[0].dtype == fut.dtype
