"""SeriesData and its JSON-able metadata."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ssmts.data import (DataMeta, SeriesData, SourceMeta, TimeIndexMeta, from_predictions,
                        future_times, to_series_data)

RNG = np.random.default_rng(1)


def _inputs():
    """(name, y, kwargs) covering every index kind and container kind."""
    n = 12
    ts = pd.date_range("2021-10-28 01:30", periods=n, freq="D", tz="Europe/Paris", unit="ns")
    irregular = pd.DatetimeIndex(pd.Timestamp("2020-01-01")
                                 + pd.to_timedelta(np.cumsum(RNG.uniform(1, 9, n)), unit="min"))
    long = pd.DataFrame({"store": np.repeat([7, 3], n), "day": np.tile(np.arange(n) * 3, 2),
                         "sales": RNG.normal(size=2 * n)})
    return [
        ("tz-daily", pd.DataFrame({"a": RNG.normal(size=n)}, index=ts.rename("when")), {}),
        ("irregular", pd.Series(RNG.normal(size=n), index=irregular, name="s"), {}),
        ("period-weekly", pd.Series(RNG.normal(size=n), index=pd.period_range(
            "2020-01-06", periods=n, freq="W")), {}),
        ("float-irregular",
         pd.Series(RNG.normal(size=n), index=np.cumsum(RNG.uniform(0.5, 2, n))), {}),
        ("long-integer", long, {"id_col": "store", "time_col": "day"}),
        ("dataarray", xr.DataArray(RNG.normal(size=(2, n)), dims=("site", "time"),
                                   coords={"site": ["x", "y"]}), {"series_dim": "site"}),
        ("ndarray3", RNG.normal(size=(2, n, 3)), {}),
    ]


@pytest.mark.parametrize("case", _inputs(), ids=lambda c: c[0])
def test_meta_json_round_trip_gives_same_future(case):
    _, y, kw = case
    data = to_series_data(y, **kw)
    text = json.dumps(data.meta.to_dict())
    meta = DataMeta.from_dict(json.loads(text))
    assert meta == data.meta
    if data.index_meta.regular:
        t0, s0 = future_times(data, h=4)
        t1, s1 = future_times(meta, h=4)
    else:  # irregular: future stamps must be given
        at = [data.index_meta.last[0] + k * data.index_meta.unit for k in (1, 2.5)]
        t0, s0 = future_times(data, at=at)
        t1, s1 = future_times(meta, at=at)
    np.testing.assert_array_equal(t0, t1)
    assert all(a.equals(b) and a.dtype == b.dtype for a, b in zip(s0, s1))
    pred = RNG.normal(size=(data.n_series, len(s0[0]), data.n_channels))
    out0, out1 = from_predictions(pred, data, s0), from_predictions(pred, meta, s1)
    assert type(out0) is type(out1) is type(y)


def test_numeric_time_matches_stamps():
    """Numeric time of stamps read back equals the container's time (two computations)."""
    for _, y, kw in _inputs():
        data = to_series_data(y, **kw)
        for s in range(data.n_series):
            L = data.lengths[s]
            np.testing.assert_allclose(data.index_meta.to_steps(data.stamps[s], s),
                                       data.time[s, :L], rtol=0, atol=1e-12)
            assert data.time[s, 0] == 0.0


def test_period_multi_unit_and_integer_grid():
    y = pd.Series(RNG.normal(size=6), index=pd.period_range("2020-01", periods=6, freq="2M"))
    data = to_series_data(y)
    np.testing.assert_array_equal(data.time[0], np.arange(6.0))
    _, st = future_times(data, h=2)
    assert list(st[0].astype(str)) == ["2021-01", "2021-03"]
    yi = pd.Series(RNG.normal(size=5), index=pd.Index([2000, 2005, 2010, 2020, 2025]))
    di = to_series_data(yi)  # a 5-year grid with a hole
    assert di.index_meta.regular and di.index_meta.unit == 5
    np.testing.assert_array_equal(di.gaps[0], [1, 1, 1, 2, 1])
    assert list(future_times(di, h=2)[1][0]) == [2030, 2035]


def test_series_data_properties_and_slice():
    v = RNG.normal(size=(2, 6, 2))
    v[0, 1, 1] = np.nan
    v[1, 4:] = np.nan  # padding of a length-4 series
    time = np.array([[0, 1, 3, 4, 5, 6], [0, 2, 3, 4, 5, 6]], dtype=float)
    stamps = (pd.Index([0, 1, 3, 4, 5, 6]), pd.Index([0, 2, 3, 4]))
    meta = TimeIndexMeta("integer", (0, 0), (6, 4), 1.0, regular=False)
    src = SourceMeta("dataframe_long", ids=("p", "q"), columns=("u", "w"))
    d = SeriesData(v, ~np.isnan(v), time, np.array([6, 4]), stamps, meta, src)
    assert d.n_masked == 1 and d.n_observed == 6 * 2 + 4 * 2 - 1
    np.testing.assert_array_equal(d.gaps, [[1, 1, 2, 1, 1, 1], [1, 2, 1, 1, 1, 1]])
    sl = d.slice_steps([2, 1], [5, 4])
    np.testing.assert_array_equal(sl.lengths, [3, 3])
    np.testing.assert_array_equal(sl.gaps, [[2, 1, 1], [2, 1, 1]])  # real lead gap kept
    np.testing.assert_array_equal(sl.values, v[[[0], [1]], [[2, 3, 4], [1, 2, 3]]])
    assert sl.index_meta.last == (5, 4) and sl.index_meta.origin == (0, 0)
    assert list(sl.stamps[1]) == [2, 3, 4]
    with pytest.raises(ValueError):
        d.values[0, 0, 0] = 1.0  # read-only
    assert v.flags.writeable  # the caller's array is left as it was
    with pytest.raises(ValueError, match="start < stop"):
        d.slice_steps([0, 0], [7, 4])
    with pytest.raises(ValueError, match="mask"):
        SeriesData(v, np.ones((2, 6, 1), bool), time, np.array([6, 4]), stamps, meta, src)


def test_source_meta_labels_survive_json():
    src = SourceMeta("dataframe_wide", ids=(np.int64(3),), columns=(("a", 1), "b", 2),
                     columns_name="vars", dtypes=("float64",) * 3)
    back = SourceMeta.from_dict(json.loads(json.dumps(src.to_dict())))
    assert back.columns == (("a", 1), "b", 2) and back.ids == (3,) and back.columns_name == "vars"


def test_single_stamp_needs_frequency():
    with pytest.raises(ValueError, match="at least 2 timestamps"):
        to_series_data(pd.Series([1.0], index=pd.DatetimeIndex(["2020-01-01"])))
    one = to_series_data(pd.Series([1.0], index=pd.date_range("2020", periods=1, freq="D")))
    assert list(future_times(one, h=1)[1][0]) == [pd.Timestamp("2020-01-02")]
