"""Adapters: every container in, forecasts back out in the same container."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from ssmts.data import align_exog, from_predictions, future_times, to_series_data

RNG = np.random.default_rng(0)


def _fake(data, h):
    """A recognisable forecast: value = 100 * series + 10 * column + step."""
    s, t, c = np.meshgrid(np.arange(data.n_series), np.arange(h), np.arange(data.n_channels),
                          indexing="ij")
    return 100.0 * s + 10.0 * c + t  # (n_series, h, C)


def _round_trip(y, h=24, **kw):
    data = to_series_data(y, **kw)
    times, stamps = future_times(data, h=h)
    return data, times, stamps, from_predictions(_fake(data, h), data, stamps)


# --- round trips -------------------------------------------------------------
def test_wide_datetime_hourly_next_24_stamps():
    idx = pd.date_range("2021-03-01", periods=40, freq="h", name="ts")
    df = pd.DataFrame(RNG.normal(size=(40, 3)), index=idx, columns=["a", "b", "c"])
    data, times, _, out = _round_trip(df)
    np.testing.assert_array_equal(data.values[0], df.to_numpy())
    np.testing.assert_array_equal(data.time[0], np.arange(40.0))
    want = pd.date_range(idx[-1] + pd.Timedelta("1h"), periods=24, freq="h", name="ts")
    assert isinstance(out, pd.DataFrame) and out.index.equals(want)
    assert out.index.freqstr == "h" and out.index.name == "ts"
    assert list(out.columns) == ["a", "b", "c"]
    np.testing.assert_array_equal(times[0], np.arange(40.0, 64.0))
    np.testing.assert_array_equal(out["b"].to_numpy(), 10.0 + np.arange(24))


def test_wide_period_monthly():
    idx = pd.period_range("2019-01", periods=30, freq="M")
    df = pd.DataFrame({"x": RNG.normal(size=30)}, index=idx)
    data, times, _, out = _round_trip(df, h=6)
    assert out.index.equals(pd.period_range("2021-07", periods=6, freq="M"))
    np.testing.assert_array_equal(times[0], np.arange(30.0, 36.0))


def test_wide_rangeindex_step_2():
    df = pd.DataFrame(RNG.normal(size=(20, 2)), index=pd.RangeIndex(10, 50, 2), columns=[0, 1])
    data, times, _, out = _round_trip(df, h=5)
    assert isinstance(out.index, pd.RangeIndex)
    assert list(out.index) == [50, 52, 54, 56, 58] and out.index.step == 2
    np.testing.assert_array_equal(data.time[0], np.arange(20.0))


def test_wide_float_index_regular():
    t = 1.25 + 0.1 * np.arange(30)  # rounding noise in the gaps
    df = pd.DataFrame({"v": RNG.normal(size=30)}, index=pd.Index(t, name="sec"))
    data, times, stamps, out = _round_trip(df, h=4)
    assert data.index_meta.regular
    np.testing.assert_allclose(data.time[0], np.arange(30.0), atol=1e-9)
    np.testing.assert_allclose(out.index.to_numpy(), t[-1] + 0.1 * np.arange(1, 5), atol=1e-12)
    assert out.index.name == "sec"


def test_series_keeps_name_and_monthly_start_calendar_steps():
    idx = pd.date_range("2020-01-01", periods=14, freq="MS")
    y = pd.Series(RNG.normal(size=14), index=idx, name="sales")
    data, times, _, out = _round_trip(y, h=3)
    np.testing.assert_allclose(data.time[0], np.arange(14.0))  # months are steps, not days
    assert isinstance(out, pd.Series) and out.name == "sales"
    assert out.index.equals(pd.date_range("2021-03-01", periods=3, freq="MS"))
    np.testing.assert_allclose(times[0], [14.0, 15.0, 16.0])


def test_tz_aware_daily_across_dst():
    idx = pd.date_range("2021-03-25", periods=6, freq="D", tz="Europe/Paris")
    y = pd.Series(RNG.normal(size=6), index=idx)
    data, times, _, out = _round_trip(y, h=3)
    np.testing.assert_allclose(data.gaps[0], 1.0)  # the 23 h day is still one step
    assert out.index.equals(pd.date_range(idx[-1], periods=4, freq="D")[1:])
    assert str(out.index.tz) == "Europe/Paris"


def test_long_two_series_of_different_lengths_shuffled():
    a = pd.DataFrame({"id": "a", "t": pd.date_range("2020-01-01", periods=7, freq="D"),
                      "y1": RNG.normal(size=7), "y2": RNG.normal(size=7)})
    b = pd.DataFrame({"id": "b", "t": pd.date_range("2020-01-03", periods=4, freq="D"),
                      "y1": RNG.normal(size=4), "y2": RNG.normal(size=4)})
    df = pd.concat([a, b], ignore_index=True).sample(frac=1.0, random_state=1)
    data, _, stamps, out = _round_trip(df, h=3, id_col="id", time_col="t")
    assert data.ids == ("b", "a") or data.ids == ("a", "b")
    sa = data.ids.index("a")
    np.testing.assert_array_equal(data.values[sa], a[["y1", "y2"]].to_numpy())
    sb = data.ids.index("b")
    assert data.lengths.tolist()[sb] == 4 and np.isnan(data.values[sb, 4:]).all()
    assert not data.mask[sb, 4:].any() and data.n_masked == 0  # padding is not "missing"
    assert list(out.columns) == ["id", "t", "y1", "y2"]
    got_b = out[out["id"] == "b"]["t"]
    assert list(got_b) == list(pd.date_range("2020-01-07", periods=3, freq="D"))
    assert list(out[out["id"] == "a"]["t"]) == list(pd.date_range("2020-01-08", periods=3))
    np.testing.assert_array_equal(out[out["id"] == "a"]["y2"], 100.0 * sa + 10 + np.arange(3))


def test_long_from_multiindex_levels_restored():
    idx = pd.MultiIndex.from_product([["u", "v"], pd.RangeIndex(5)], names=["sid", "k"])
    df = pd.DataFrame({"z": RNG.normal(size=10)}, index=idx)
    data, _, _, out = _round_trip(df, h=2, id_col="sid", time_col="k")
    assert out.index.names == ["sid", "k"]
    assert list(out.index) == [("u", 5), ("u", 6), ("v", 5), ("v", 6)]


def test_dataarray_time_variable():
    da = xr.DataArray(RNG.normal(size=(30, 2)), dims=("time", "variable"),
                      coords={"time": pd.date_range("2020", periods=30, freq="h"),
                              "variable": ["p", "q"]}, name="obs")
    data, _, _, out = _round_trip(da, h=5)
    assert isinstance(out, xr.DataArray) and out.dims == ("time", "variable")
    assert list(out["variable"].values) == ["p", "q"] and out.name == "obs"
    assert pd.DatetimeIndex(out["time"].values).equals(
        pd.date_range("2020-01-02 06:00", periods=5, freq="h"))


def test_dataarray_series_time_variable():
    da = xr.DataArray(RNG.normal(size=(3, 12, 2)), dims=("series", "time", "variable"),
                      coords={"series": ["s0", "s1", "s2"]})
    data, _, _, out = _round_trip(da, h=4)
    assert data.ids == ("s0", "s1", "s2")
    np.testing.assert_array_equal(data.values, da.values)
    assert out.dims == ("series", "time", "variable") and out.shape == (3, 4, 2)
    assert list(out["time"].values) == [12, 13, 14, 15]
    np.testing.assert_array_equal(out.sel(series="s2").values, _fake(data, 4)[2])


def test_dataset_data_vars_as_columns():
    t = pd.date_range("2020", periods=10, freq="D")
    ds = xr.Dataset({"temp": ("time", RNG.normal(size=10)), "rain": ("time", RNG.normal(size=10))},
                    coords={"time": t})
    data, _, _, out = _round_trip(ds, h=3)
    assert data.columns == ("temp", "rain")
    assert isinstance(out, xr.Dataset) and list(out.data_vars) == ["temp", "rain"]
    assert out["rain"].dims == ("time",)
    np.testing.assert_array_equal(out["rain"].values, 10.0 + np.arange(3))


@pytest.mark.parametrize("shape", [(25,), (25, 3), (2, 25, 3)])
def test_numpy_arrays(shape):
    y = RNG.normal(size=shape)
    data, _, _, out = _round_trip(y, h=6)
    assert isinstance(out, np.ndarray)
    assert out.shape == (6,) + shape[1:] if len(shape) < 3 else out.shape == (2, 6, 3)
    assert data.values.reshape(-1).tolist() == y.reshape(-1).tolist()


def test_quantile_outputs():
    df = pd.DataFrame(RNG.normal(size=(10, 2)), columns=["a", "b"],
                      index=pd.date_range("2020", periods=10, freq="D"))
    data = to_series_data(df)
    _, stamps = future_times(data, h=3)
    pred = np.stack([_fake(data, 3) + k for k in range(3)])  # (3 quantiles, 1, 3, 2)
    out = from_predictions(pred, data, stamps, quantiles=[0.1, 0.5, 0.9])
    assert out.columns.names == [None, "quantile"]
    np.testing.assert_array_equal(out[("b", 0.9)], 10.0 + np.arange(3) + 2)
    da = xr.DataArray(df.to_numpy(), dims=("time", "var"), coords={"time": df.index})
    dd = to_series_data(da)
    outx = from_predictions(pred, dd, future_times(dd, h=3)[1], quantiles=[0.1, 0.5, 0.9])
    assert outx.dims == ("quantile", "time", "var")
    np.testing.assert_array_equal(outx.sel(quantile=0.5).values, pred[1, 0])


# --- irregular time, NaN -----------------------------------------------------
def test_irregular_gaps_and_future_needs_at():
    secs = np.cumsum(RNG.uniform(30, 300, size=20)).round()
    idx = pd.to_datetime("2022-05-01") + pd.to_timedelta(secs, unit="s")
    df = pd.DataFrame({"v": RNG.normal(size=20)}, index=idx)
    data = to_series_data(df)
    med = np.median(np.diff(secs))
    assert not data.index_meta.regular
    np.testing.assert_allclose(data.gaps[0, 1:], np.diff(secs) / med)
    assert data.gaps[0, 0] == 1.0
    with pytest.raises(ValueError, match="at="):
        future_times(data, h=3)
    at = idx[-1] + pd.to_timedelta([10, 50, 400], unit="s")
    times, stamps = future_times(data, at=at)
    np.testing.assert_allclose(times[0], (secs[-1] - secs[0] + np.array([10, 50, 400])) / med)
    out = from_predictions(_fake(data, 3), data, stamps)
    assert out.index.equals(pd.DatetimeIndex(at))
    with pytest.raises(ValueError, match="not after the last"):
        future_times(data, at=[idx[-2], idx[-1] + pd.Timedelta("1h")])
    with pytest.raises(ValueError, match="strictly increasing"):
        future_times(data, at=at[::-1])


def test_grid_with_a_missing_stamp_stays_regular():
    idx = pd.date_range("2020", periods=12, freq="h").delete(5)
    data = to_series_data(pd.Series(RNG.normal(size=11), index=idx))
    assert data.index_meta.regular and data.index_meta.freq == "h"
    np.testing.assert_array_equal(data.gaps[0], [1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 1])
    _, stamps = future_times(data, h=2)
    assert list(stamps[0]) == list(pd.date_range("2020-01-01 12:00", periods=2, freq="h"))


def test_nan_masked_and_counted_not_filled():
    v = RNG.normal(size=(15, 2))
    v[[2, 3, 9], [0, 0, 1]] = np.nan
    data = to_series_data(pd.DataFrame(v, columns=["a", "b"]))
    assert data.n_masked == 3 and data.n_observed == 27
    assert np.isnan(data.values[0, [2, 3], 0]).all() and not data.mask[0, 9, 1]
    np.testing.assert_array_equal(data.mask[0], ~np.isnan(v))


# --- errors ------------------------------------------------------------------
def test_duplicate_timestamp_names_the_row():
    idx = pd.date_range("2016-03-02", periods=6, freq="h").tolist()
    idx[4] = idx[3]
    df = pd.DataFrame({"a": RNG.normal(size=6)}, index=pd.DatetimeIndex(idx))
    with pytest.raises(ValueError, match=r"row 4 \(2016-03-02 03:00:00\) repeats row 3"):
        to_series_data(df)
    with pytest.raises(ValueError, match="comes before row"):
        to_series_data(df.iloc[::-1])


def test_long_duplicate_names_original_rows():
    df = pd.DataFrame({"id": ["a", "a", "b", "a"], "t": [0, 1, 0, 1], "y": [1.0, 2, 3, 4]})
    with pytest.raises(ValueError, match=r"series 'a'.*row 3 \(1\) repeats row 1"):
        to_series_data(df, id_col="id", time_col="t")


@pytest.mark.parametrize("col, bad, match", [
    ("txt", ["x"] * 8, r"\['txt'\] are not numeric"),
    ("a", [1.0, 2, np.inf, 4, 5, 6, 7, 8], r"'a' holds inf at row 2"),
    ("a", [np.nan] * 8, r"\['a'\] hold no values"),
])
def test_bad_columns_are_named(col, bad, match):
    df = pd.DataFrame({"a": RNG.normal(size=8), "b": RNG.normal(size=8)})
    df[col] = bad
    with pytest.raises(ValueError, match=match):
        to_series_data(df)


def test_other_errors():
    with pytest.raises(ValueError, match="empty"):
        to_series_data(pd.DataFrame({"a": []}, index=pd.DatetimeIndex([])))
    with pytest.raises(ValueError, match="pd.to_datetime"):
        to_series_data(pd.Series([1.0, 2.0], index=["2020-01-01", "2020-01-02"]))
    with pytest.raises(ValueError, match="series_dim"):
        to_series_data(xr.DataArray(np.ones((2, 3, 4)), dims=("a", "time", "b")))
    with pytest.raises(TypeError, match="unsupported type"):
        to_series_data({"a": [1, 2]})
    with pytest.raises(ValueError, match="id_col"):
        to_series_data(pd.DataFrame({"t": [0, 1], "y": [1.0, 2]}), id_col="id", time_col="t")


def test_inputs_not_mutated():
    df = pd.DataFrame({"a": [1.0, np.nan, 3, 4], "b": [1, 2, 3, 4]},
                      index=pd.date_range("2020", periods=4, freq="D"))
    before = df.copy(deep=True)
    arr = RNG.normal(size=(2, 6, 1))
    arr_before = arr.copy()
    long = pd.DataFrame({"id": [1, 0, 1, 0], "t": [1, 1, 0, 0], "y": [1.0, 2, 3, 4]})
    long_before = long.copy(deep=True)
    ds = xr.Dataset({"v": ("time", np.arange(5.0))})
    ds_before = copy.deepcopy(ds)
    for y, kw in ((df, {}), (arr, {}), (long, {"id_col": "id", "time_col": "t"}), (ds, {})):
        data = to_series_data(y, **kw)
        assert not np.shares_memory(data.values, arr)
        assert not data.values.flags.writeable  # the container is read-only, the input is not
    pd.testing.assert_frame_equal(df, before)
    pd.testing.assert_frame_equal(long, long_before)
    np.testing.assert_array_equal(arr, arr_before)
    xr.testing.assert_identical(ds, ds_before)
    assert arr.flags.writeable


# --- covariates --------------------------------------------------------------
def test_align_exog_past_and_future():
    idx = pd.date_range("2020", periods=30, freq="h")
    y = pd.DataFrame({"y": RNG.normal(size=20)}, index=idx[:20])
    X = pd.DataFrame({"x1": RNG.normal(size=30), "x2": RNG.normal(size=30)}, index=idx)
    data = to_series_data(y)
    past = align_exog(X, data)
    np.testing.assert_array_equal(past[0], X.to_numpy()[:20])
    _, stamps = future_times(data, h=5)
    fut = align_exog(X, data, future=True, stamps=stamps)
    np.testing.assert_array_equal(fut[0], X.to_numpy()[20:25])
    with pytest.raises(ValueError, match=r"4 timestamp\(s\) needed are missing"):
        align_exog(X.iloc[:21], data, future=True, stamps=stamps)
    with pytest.raises(ValueError, match="differ from those at fit"):
        align_exog(X, data, columns=["x2", "x1"])


def test_align_exog_long_by_id_and_numpy_by_position():
    y = pd.DataFrame({"id": ["a"] * 4 + ["b"] * 3, "t": [0, 1, 2, 3, 0, 1, 2],
                      "y": RNG.normal(size=7)})
    X = pd.DataFrame({"id": ["b"] * 3 + ["a"] * 4, "t": [0, 1, 2, 0, 1, 2, 3],
                      "x": [10.0, 11, 12, 0, 1, 2, 3]})
    data = to_series_data(y, id_col="id", time_col="t")
    ex = align_exog(X, data)
    np.testing.assert_array_equal(ex[0, :, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(ex[1, :3, 0], [10, 11, 12])
    assert np.isnan(ex[1, 3, 0])  # y's end padding
    with pytest.raises(ValueError, match="no series 'b'"):
        align_exog(X[X["id"] == "a"], data)
    d2 = to_series_data(RNG.normal(size=(8, 2)))
    np.testing.assert_array_equal(align_exog(np.arange(8.0), d2)[0, :, 0], np.arange(8.0))
    with pytest.raises(ValueError, match="needs 3 rows"):
        align_exog(np.ones((4, 1)), d2, future=True, stamps=future_times(d2, h=3)[1])
