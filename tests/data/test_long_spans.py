"""Calendar and irregular data over centuries: grid positions, exact gaps, pandas' bounds.

Spans over 292 years overflow int64 nanoseconds, and a calendar grid built twice
the span long runs past pandas' last timestamp (2262-04-11 in nanoseconds);
neither may reach the estimators.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from ssmts.data import future_times, make_windows, to_series_data
from ssmts.estimators import SSMForecaster
from ssmts.estimators.baselines import SeasonalNaiveForecaster
from ssmts.training import ForecastDataModule

# one epoch on purpose: these tests are about the data path, not about skill
pytestmark = pytest.mark.filterwarnings("ignore:fit. the final training loss:UserWarning")
TINY = dict(lookback=8, horizon=4, d_model=8, n_layers=1, d_state=8, max_epochs=1, val_size=0,
            random_state=0)
FEW = dict(stride=4, batch_size=128)  # one or two batches: the fit is about the data, not skill


def _series(idx: pd.DatetimeIndex, seed: int = 0) -> pd.Series:
    return pd.Series(np.random.default_rng(seed).normal(size=len(idx)).cumsum(), index=idx,
                     name="y")


LONG = {  # name -> (index, h)
    "yearly-1700": (pd.date_range("1700", periods=300, freq="YS"), 5),
    "monthly-1749": (pd.date_range("1749-01", periods=3200, freq="MS"), 5),
    "yearly-1800-2029": (pd.date_range("1800", "2029", freq="YS"), 5),
    "nile-1871-1970": (pd.date_range("1871", "1970", freq="YS"), 150),
    "yearly-1700-ns": (pd.date_range("1700", periods=300, freq="YS", unit="ns"), 5),
}


# --- the data layer ---------------------------------------------------------------
@pytest.mark.parametrize("name", list(LONG))
def test_calendar_steps_are_grid_positions_over_centuries(name):
    idx, h = LONG[name]
    data = to_series_data(_series(idx))
    np.testing.assert_array_equal(data.time[0], np.arange(len(idx), dtype=np.float64))
    times, stamps = future_times(data, h=h)
    want = pd.date_range(idx[-1], periods=h + 1, freq=idx.freq, unit=idx.unit)[1:]
    assert stamps[0].equals(want) and stamps[0].unit == idx.unit
    np.testing.assert_array_equal(times[0], len(idx) + np.arange(h, dtype=np.float64))
    t_at, _ = future_times(data, at=["2150-01-01"])
    n_months = (2150 - idx[-1].year) * 12 + 1 - idx[-1].month
    assert t_at[0, 0] == len(idx) - 1 + n_months // (1 if idx.freqstr == "MS" else 12)


def test_yearly_stamps_with_a_hole_over_centuries():
    idx = pd.date_range("1700", periods=320, freq="YS").delete(310)  # a missing year
    data = to_series_data(pd.Series(np.arange(319.0), index=idx.copy()))  # hole: no freq
    assert not data.index_meta.regular  # 365- and 366-day gaps: no fixed step
    assert np.all(data.gaps > 0.99) and np.all(data.gaps < 2.01)
    y = pd.Series(np.arange(320.0), index=pd.date_range("1700", periods=320, freq="YS"))
    meta = to_series_data(y).index_meta  # the full grid: years are steps
    np.testing.assert_array_equal(meta.to_steps(idx, 0), np.delete(np.arange(320.0), 310))


def test_forecast_past_pandas_last_timestamp_names_the_limit():
    y = _series(pd.date_range("1961", periods=30, freq="YS", unit="ns"))  # ends in 1990
    data = to_series_data(y)
    with pytest.raises(ValueError, match=r"h=400 steps of YS.* from 1990-01-01.*2262-04-11"):
        future_times(data, h=400)
    with pytest.raises(ValueError, match="2262-04-11"):
        SeasonalNaiveForecaster().fit(y).predict(400)
    _, stamps = future_times(data, h=272)  # up to 2262-01-01: still fine
    assert stamps[0][-1] == pd.Timestamp("2262-01-01")
    coarse = to_series_data(y.set_axis(y.index.as_unit("s")))  # the hint in the message
    _, stamps = future_times(coarse, h=400)
    assert stamps[0][-1] == pd.Timestamp("2390-01-01") and stamps[0].unit == "s"


def test_calendar_stamp_near_the_last_timestamp():
    """A stamp whose next grid point pandas cannot hold gets a position, not an error."""
    y = _series(pd.date_range("1990", periods=20, freq="YS", unit="ns"))
    meta = to_series_data(y).index_meta
    at = pd.DatetimeIndex(["2262-01-01", "2262-04-01"]).as_unit("ns")
    steps = meta.to_steps(at, 0)
    assert steps[0] == 272.0 and 272.2 < steps[1] < 272.3


# --- the estimators -----------------------------------------------------------------
@pytest.mark.parametrize("name", list(LONG))
def test_seasonal_naive_fits_and_predicts_long_spans(name):
    idx, h = LONG[name]
    y = _series(idx)
    f = SeasonalNaiveForecaster(season_length=2).fit(y)
    pred = f.predict(h)
    want = pd.date_range(idx[-1], periods=h + 1, freq=idx.freq, unit=idx.unit)[1:]
    assert pred.index.equals(want) and pred.name == "y"
    np.testing.assert_array_equal(pred.to_numpy()[:4], y.to_numpy()[[-2, -1, -2, -1]])
    at = f.predict(at=["2150-01-01"])
    assert at.index[0] == pd.Timestamp("2150-01-01") and np.isfinite(at.to_numpy()).all()


@pytest.mark.parametrize("name", ["yearly-1700", "yearly-1800-2029", "nile-1871-1970"])
def test_ssm_forecaster_fits_and_predicts_long_spans(name):
    idx, h = LONG[name]
    f = SSMForecaster(**TINY, **FEW).fit(_series(idx))
    pred = f.predict(h)
    want = pd.date_range(idx[-1], periods=h + 1, freq=idx.freq, unit=idx.unit)[1:]
    assert pred.index.equals(want) and np.isfinite(pred.to_numpy()).all()
    at = f.predict(at=["2150-01-01"])
    assert at.index[0] == pd.Timestamp("2150-01-01") and np.isfinite(at.to_numpy()).all()


def test_ssm_forecaster_fits_monthly_from_1749():
    idx, _ = LONG["monthly-1749"]
    f = SSMForecaster(**TINY, stride=16, batch_size=256).fit(_series(idx))
    pred = f.predict(6)
    assert pred.index[0] == idx[-1] + pd.offsets.MonthBegin(1)
    assert np.isfinite(pred.to_numpy()).all()


# --- irregular centuries: exact gaps (defect 2) -------------------------------------
def _sunspots_with_holes() -> pd.Series:
    """statsmodels' yearly sunspots (1700-2008), 20% of the rows dropped, four NaN."""
    sm = pytest.importorskip("statsmodels.api")
    df = sm.datasets.sunspots.load_pandas().data
    y = pd.Series(df.SUNACTIVITY.to_numpy(), name="sunspots",
                  index=pd.to_datetime(df.YEAR.astype(int).astype(str)))
    rng = np.random.default_rng(0)
    y = y.iloc[np.sort(rng.choice(len(y), int(0.8 * len(y)), replace=False))].copy()
    y.iloc[rng.choice(len(y), 4, replace=False)] = np.nan
    return y


def test_ssm_forecaster_fits_irregular_sunspots_with_nan():
    y = _sunspots_with_holes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the four NaN are reported
        f = SSMForecaster(**TINY).fit(y)
    assert f.n_masked_ == 4
    pred = f.predict(at=pd.to_datetime(["2009", "2011", "2020"]))
    assert np.isfinite(pred.to_numpy()).all()


def _irregular_300_years(unit: str) -> pd.DatetimeIndex:
    """Yearly stamps 1700-1999 at random days and hours, a fifth of them dropped."""
    rng = np.random.default_rng(3)
    years = np.sort(rng.choice(np.arange(1700, 2000), 240, replace=False))
    days = pd.to_timedelta(rng.integers(0, 365, years.size), unit="D") \
        + pd.to_timedelta(rng.integers(0, 86400, years.size), unit="s")
    return (pd.to_datetime(years.astype(str)) + days).as_unit(unit)


@pytest.mark.parametrize("unit", ["ns", "us", "s"])
def test_gaps_fed_to_the_network_equal_float64_gaps(unit):
    idx = _irregular_300_years(unit)
    data = to_series_data(pd.Series(np.sin(np.arange(len(idx))), index=idx))
    meta = data.index_meta
    assert not meta.regular
    secs = idx.as_unit("s").asi8  # whole seconds, exact
    exact = np.diff(secs).astype(np.float64) * 1e9 / float(meta.unit.value)  # (L - 1,) float64
    assert np.all(exact > 0)
    np.testing.assert_allclose(data.gaps[0, 1:], exact, rtol=1e-12)
    np.testing.assert_allclose(np.diff(data.time[0]), exact, rtol=1e-12)
    ref = np.concatenate([[1.0], exact])  # (L,) the gap before each row, lead gap 1
    lookback, horizon, n_val = 8, 4, 20
    width, L = lookback + horizon, len(idx)
    win, _ = make_windows(data, lookback, horizon)
    cols = (win["target_start"] - lookback)[:, None] + np.arange(width)  # (n_win, width)
    np.testing.assert_allclose(win["context_gaps"], ref[cols[:, :lookback]], rtol=1e-12)
    np.testing.assert_allclose(win["future_gaps"], ref[cols[:, lookback:]], rtol=1e-12)
    # what the network gets: the float64 gaps cast to float32 after differencing
    dm = ForecastDataModule(data, lookback, horizon, batch_size=16, val_size=n_val)
    tr = np.arange(L - n_val - width + 1)[:, None] + np.arange(width)  # train windows
    va = np.arange(L - n_val - lookback, L - width + 1)[:, None] + np.arange(width)
    for part, cols in ((dm.train_t, tr), (dm.val_t, va)):
        for key, sl in (("context_gaps", slice(0, lookback)),
                        ("future_gaps", slice(lookback, None))):
            got = part[key]
            assert got.dtype == torch.float32
            want = data.gaps[0][cols[:, sl]]  # float64
            np.testing.assert_array_equal(got.numpy(), want.astype(np.float32))
            np.testing.assert_allclose(got.numpy(), ref[cols[:, sl]], rtol=1.2e-7)  # 1 ulp
