"""Classical (statsmodels) forecasters and the naive baselines: the ssmts estimator API."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from ssmts.estimators.baselines import NaiveForecaster, SeasonalNaiveForecaster
from ssmts.estimators.classical import StatsmodelsForecaster
from ssmts.ssm.lti import LTISystem


@pytest.fixture(scope="module")
def co2() -> pd.DataFrame:
    """A 4-year slice of the weekly CO2 series with 2 of its natural missing weeks."""
    from statsmodels.datasets import co2

    df = co2.load_pandas().data[["co2"]]
    return df.loc["1963-01-01":"1966-12-31"]


def _seasonal(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    a = 0.02 * t + np.sin(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(n)
    b = np.cos(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(n)
    return pd.DataFrame({"a": a, "b": b}, index=pd.date_range("2010-01", periods=n, freq="MS"))


@pytest.fixture(scope="module")
def uc_fit(co2):
    train = co2.iloc[:-20]
    f = StatsmodelsForecaster("unobserved_components", seasonal_periods=52.18, harmonics=2)
    return f.fit(train), train, co2.iloc[-20:]


def test_co2_container_index_and_accuracy(uc_fit, co2):
    f, train, test = uc_fit
    assert f.n_masked_ == int(train["co2"].isna().sum()) > 0  # the natural gaps, masked
    pred = f.predict(20)
    assert isinstance(pred, pd.DataFrame) and list(pred.columns) == ["co2"]
    assert pred.index.equals(test.index) and pred.index.freq == train.index.freq
    assert np.isfinite(pred.to_numpy()).all()
    naive = SeasonalNaiveForecaster(52).fit(train)
    mse_uc, mse_naive = -f.score(test), -naive.score(test)
    print(f"20-week MSE: UC {mse_uc:.3f}, seasonal naive {mse_naive:.3f}")
    assert mse_uc < mse_naive


def test_intervals_and_quantiles_ordered(uc_fit):
    f = uc_fit[0]
    lo, hi = f.predict_interval(h=10, coverage=0.8)
    mid = f.predict(10)
    assert (lo < mid).all().all() and (mid < hi).all().all()
    wide_lo, wide_hi = f.predict_interval(h=10, coverage=0.95)
    assert (wide_lo < lo).all().all() and (wide_hi > hi).all().all()
    q = f.predict_quantiles(h=3, quantiles=[0.1, 0.5, 0.9])
    assert q.shape == (3, 3)
    np.testing.assert_allclose(q[("co2", 0.5)].to_numpy(), mid["co2"].to_numpy()[:3], rtol=1e-10)
    with pytest.raises(ValueError, match="coverage"):
        f.predict_interval(h=3, coverage=1.5)


def test_update_equals_refilter_and_at(uc_fit, co2):
    """update() (append, no refit) gives the forecasts of the same parameters on all the data."""
    f, train, test = uc_fit
    g = clone(f).fit(train)
    g.update(test.iloc[:8])
    assert g.meta_.index.last[0] == test.index[7]
    via_update = g.predict(5)
    via_context = f.predict(pd.concat([train, test.iloc[:8]]), h=5)  # fitted model on a context
    np.testing.assert_allclose(via_update.to_numpy(), via_context.to_numpy(), rtol=1e-9)
    at = test.index[[9, 12]]
    sel = g.predict(at=at)
    assert sel.index.equals(at)
    np.testing.assert_allclose(sel.to_numpy()[:, 0], via_update.to_numpy()[[1, 4], 0], rtol=1e-10)
    with pytest.raises(ValueError, match="not after"):
        g.predict(at=test.index[[3]])


@pytest.mark.parametrize("model,kw", [("ets", {"seasonal_periods": 12}),
                                      ("sarimax", {"order": (1, 0, 0), "trend": "c"})])
def test_other_models_multicolumn_roundtrip(model, kw):
    y = _seasonal(48)
    y.iloc[[5, 40], 0] = np.nan
    f = StatsmodelsForecaster(model, maxiter=30, **kw).fit(y)
    assert f.n_masked_ == 2 and f.n_features_in_ == 2
    assert list(f.feature_names_in_) == ["a", "b"] and len(f.results_[0]) == 2
    pred = f.predict(6)
    assert pred.index.equals(pd.date_range("2014-01", periods=6, freq="MS"))
    assert list(pred.columns) == ["a", "b"] and np.isfinite(pred.to_numpy()).all()
    s = f.predict(3)["b"]
    one = StatsmodelsForecaster(model, maxiter=30, **kw).fit(y["b"]).predict(3)  # per column
    assert isinstance(one, pd.Series)
    np.testing.assert_allclose(one.to_numpy(), s.to_numpy(), rtol=1e-6)


def test_numpy_and_grid_holes():
    y = _seasonal(60)["a"]
    f = StatsmodelsForecaster("sarimax", order=(1, 0, 0), trend="c").fit(y.to_numpy())
    out = f.predict(4)
    assert isinstance(out, np.ndarray) and out.shape == (4,)
    daily = y.set_axis(pd.date_range("2024-01-01", periods=60, freq="D"))
    holes = daily.drop(daily.index[[10, 11]])  # stamps missing from the daily grid
    g = StatsmodelsForecaster("sarimax", order=(1, 0, 0), trend="c").fit(holes)
    assert g.n_masked_ == 2
    full = StatsmodelsForecaster("sarimax", order=(1, 0, 0), trend="c").fit(
        daily.where(~daily.index.isin(daily.index[[10, 11]])))  # the same gaps as NaN
    assert g.predict(2).index[0] == pd.Timestamp("2024-03-01")
    np.testing.assert_allclose(g.predict(2).to_numpy(), full.predict(2).to_numpy(), rtol=1e-8)


def test_exog_sarimax():
    rng = np.random.default_rng(1)
    idx = pd.date_range("2021-01-01", periods=130, freq="D")
    X = pd.DataFrame({"x": rng.standard_normal(130)}, index=idx)
    y = pd.DataFrame({"y": 2.0 * X["x"] + 0.1 * rng.standard_normal(130)}, index=idx)
    f = StatsmodelsForecaster("sarimax", order=(1, 0, 0)).fit(y.iloc[:120], X=X.iloc[:120])
    pred = f.predict(10, X=X.iloc[120:])
    err = np.abs(pred["y"] - y["y"].iloc[120:]).max()
    print(f"max error with the known covariate: {err:.3f}")
    assert err < 0.5
    with pytest.raises(ValueError, match="covariates X"):
        f.predict(10)
    with pytest.raises(ValueError, match="takes no covariates"):
        StatsmodelsForecaster("ets").fit(y, X=X)


def test_contract_errors():
    f = StatsmodelsForecaster("sarimax", order=(2, 0, 1))
    c = clone(f)
    assert c.get_params() == f.get_params() and c.order == (2, 0, 1)
    for m in (f.predict, f.lti):
        with pytest.raises(NotFittedError):
            m()
    with pytest.raises(NotFittedError):
        NaiveForecaster().predict(3)
    irregular = pd.Series([1.0, 2.0, 3.0, 2.5, 4.0],
                          index=pd.DatetimeIndex([pd.Timestamp(x) for x in (
                              "2024-01-01", "2024-01-02", "2024-01-04 05:00", "2024-01-07",
                              "2024-01-08 13:00")]))
    with pytest.raises(ValueError, match="irregular"):
        StatsmodelsForecaster().fit(irregular)
    with pytest.raises(ValueError, match="irregular"):
        SeasonalNaiveForecaster(2).fit(irregular)
    with pytest.raises(ValueError, match="model"):
        StatsmodelsForecaster("arima").fit(_seasonal(30))
    with pytest.raises(ValueError, match="order"):
        StatsmodelsForecaster("sarimax", order=(1, 0)).fit(_seasonal(30))
    g = StatsmodelsForecaster("sarimax", order=(1, 0, 0)).fit(_seasonal(30))
    with pytest.raises(ValueError, match="columns"):
        g.update(_seasonal(31)[["a"]].iloc[30:])


@pytest.mark.parametrize("model,kw", [
    ("sarimax", {"order": (2, 0, 1)}),
    ("unobserved_components", {"seasonal_periods": 12, "harmonics": 2}),
    ("ets", {"seasonal_periods": 4}),
])
def test_lti_matches_statsmodels(model, kw):
    y = _seasonal(96, seed=3)["a"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = StatsmodelsForecaster(model, maxiter=15, **kw).fit(y)  # any parameters will do
    res = f.results_[0][0]
    sys = f.lti()
    assert isinstance(sys, LTISystem) and sys.is_discrete and sys.dt == 1.0
    np.testing.assert_allclose(sys.A, res.model.ssm["transition"].reshape(sys.A.shape), atol=0)
    steps = 15
    _, y_imp = sys.impulse(n=steps + 2)  # (steps + 2, 1, m)
    for j in range(sys.n_inputs):
        ref = np.asarray(res.impulse_responses(steps=steps, impulse=j)).reshape(-1)  # (steps + 1,)
        ref = ref * f.y_scale_[0, 0]  # statsmodels saw y / y_scale_; our outputs are in y's units
        ours = y_imp[1:, 0, j]  # statsmodels' step 0 is our step 1
        print(f"{model} shock {j}: max |diff| {np.max(np.abs(ours - ref)):.2e}")
        np.testing.assert_allclose(ours, ref, atol=1e-10)
    np.testing.assert_allclose(np.sort_complex(sys.poles()),
                               np.sort_complex(np.linalg.eigvals(sys.A)), atol=1e-8)


def test_seasonal_naive_exact_values():
    idx = pd.date_range("2024-01-01", periods=7, freq="h")
    y = pd.DataFrame({"a": [1.0, 2.0, 3.0, np.nan, 5.0, 6.0, 7.0],
                      "b": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, np.nan]}, index=idx)
    f = SeasonalNaiveForecaster(season_length=3).fit(y)
    assert f.n_masked_ == 2
    pred = f.predict(5)
    # step k reads row 6 + k - 3 * ceil(k / 3); b's row 6 is missing -> one season back (row 3)
    np.testing.assert_array_equal(pred["a"], [5.0, 6.0, 7.0, 5.0, 6.0])
    np.testing.assert_array_equal(pred["b"], [50.0, 60.0, 40.0, 50.0, 60.0])
    # observed 3-step differences: a [nan, 3, 3, nan], b [30, 30, 30, nan]
    np.testing.assert_allclose(f.sigma_[0], [3.0, 30.0])
    lo, hi = f.predict_interval(h=4, coverage=0.9)
    z = 1.6448536269514722
    np.testing.assert_allclose((hi - pred.iloc[:4])["a"], z * 3.0 * np.sqrt([1, 1, 1, 2]))
    np.testing.assert_allclose((pred.iloc[:4] - lo)["b"], z * 30.0 * np.sqrt([1, 1, 1, 2]))
    test = pd.DataFrame({"a": [4.0, 8.0], "b": [40.0, 50.0]},
                        index=pd.date_range("2024-01-01 07:00", periods=2, freq="h"))
    assert f.score(test) == pytest.approx(-(1 + 4 + 100 + 100) / 4)
    f.update(test.iloc[:1])
    np.testing.assert_array_equal(f.predict(3)["a"], [6.0, 7.0, 4.0])


def test_naive_irregular_and_context():
    y = pd.Series([1.0, 2.0, np.nan],
                  index=pd.DatetimeIndex([pd.Timestamp(x) for x in (
                      "2024-01-01", "2024-01-02 03:00", "2024-01-05")]))
    f = NaiveForecaster().fit(y)
    assert f.get_params() == {} and clone(f).get_params() == {}
    at = pd.DatetimeIndex([pd.Timestamp("2024-01-06"), pd.Timestamp("2024-01-09 12:00")])
    np.testing.assert_array_equal(f.predict(at=at).to_numpy(), [2.0, 2.0])
    with pytest.raises(ValueError, match="at="):
        f.predict(2)
    f.update(pd.Series([7.0], index=pd.DatetimeIndex([pd.Timestamp("2024-01-07 05:00")])))
    assert f.predict(at=at[1:]).iloc[0] == 7.0
    arr = NaiveForecaster().fit(np.array([1.0, 3.0, np.nan]))
    np.testing.assert_array_equal(arr.predict(2), [3.0, 3.0])


# -- seasonality followed from the index frequency (issue 14, item 16) ---------------------------
def _elnino() -> pd.Series:
    """statsmodels' El Nino sea surface temperatures as one monthly series (1950-2010)."""
    from statsmodels.datasets import elnino

    d = elnino.load_pandas().data.set_index("YEAR")  # one row a year, JAN..DEC columns
    values = d.to_numpy(dtype=np.float64).reshape(-1)  # (12 * years,) month by month
    start = f"{int(d.index[0])}-01-01"
    return pd.Series(values, index=pd.date_range(start, periods=len(values), freq="MS"),
                     name="sst")


def test_default_follows_monthly_season_on_elnino():
    y = _elnino()
    train, test = y.iloc[:-24], y.iloc[-24:]
    seasonal = StatsmodelsForecaster().fit(train)
    flat = StatsmodelsForecaster(seasonal_periods=1).fit(train)
    assert seasonal.seasonal_periods_ == 12 and seasonal.harmonics_ is None
    assert flat.seasonal_periods_ == 1
    mae = float(np.mean(np.abs(seasonal.predict(24) - test)))
    mae_flat = float(np.mean(np.abs(flat.predict(24) - test)))
    print(f"El Nino, last 24 months: MAE default (12-month season) {mae:.3f}, "
          f"seasonal_periods=1 {mae_flat:.3f}")
    assert mae < 0.5 * mae_flat


def test_seasonal_periods_one_is_the_old_non_seasonal_model():
    from statsmodels.tsa.statespace.structural import UnobservedComponents

    y = _seasonal(60)["a"]
    ref = UnobservedComponents(y.to_numpy(), level="local linear trend").fit(disp=False, maxiter=50)
    for off in (1, 0):
        f = StatsmodelsForecaster(seasonal_periods=off, maxiter=50).fit(y)
        assert f.seasonal_periods_ == 1 and f.harmonics_ is None
        np.testing.assert_allclose(f.predict(6).to_numpy(), ref.forecast(6), rtol=1e-8)
    ets = StatsmodelsForecaster("ets", seasonal_periods=1, maxiter=30).fit(y)
    assert ets.seasonal_periods_ == 1 and not ets.results_[0][0].model.seasonal


def _season_of(y, model="unobserved_components", **kw) -> StatsmodelsForecaster:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 3 iterations: not converged
        return StatsmodelsForecaster(model, maxiter=3, **kw).fit(y)


@pytest.mark.parametrize("freq,n,season,harmonics", [
    ("MS", 30, 12.0, None), ("ME", 30, 12.0, None), ("QS", 12, 4.0, None),
    ("W-SAT", 110, 52.18, 3), ("W", 110, 52.18, 3), ("D", 20, 7.0, None), ("B", 20, 5.0, None),
    ("h", 50, 24.0, 3), ("2h", 30, 12.0, None), ("YS", 12, 1.0, None), ("YE", 12, 1.0, None),
    ("2D", 30, 1.0, None), ("15min", 30, 1.0, None)])
def test_seasonal_periods_follow_the_frequency(freq, n, season, harmonics):
    y = pd.Series(np.random.default_rng(0).standard_normal(n),
                  index=pd.date_range("2020-01-01", periods=n, freq=freq))
    f = _season_of(y)
    assert f.seasonal_periods_ == season and f.harmonics_ == harmonics
    res = f.results_[0][0].model
    if harmonics is not None:
        assert res.freq_seasonal_periods == [season] and res.freq_seasonal_harmonics == [harmonics]
    elif season > 1:
        assert res.seasonal_periods == season
    else:
        assert not res.seasonal and not res.freq_seasonal


def test_seasonal_periods_without_a_frequency_and_for_ets_and_sarimax():
    rng = np.random.default_rng(1)
    for y in (pd.Series(rng.standard_normal(40)),  # RangeIndex
              pd.Series(rng.standard_normal(40), index=np.arange(0, 80, 2)),  # integer index
              rng.standard_normal(40)):  # numpy
        assert _season_of(y).seasonal_periods_ == 1
    monthly = pd.Series(rng.standard_normal(30),
                        index=pd.period_range("2020-01", periods=30, freq="M"))
    assert _season_of(monthly).seasonal_periods_ == 12  # a PeriodIndex too
    weekly = pd.Series(rng.standard_normal(110),
                       index=pd.date_range("2020-01-04", periods=110, freq="W-SAT"))
    ets = _season_of(weekly, "ets")
    assert ets.seasonal_periods_ == 52 and ets.results_[0][0].model.seasonal_periods == 52
    assert _season_of(monthly, "sarimax").seasonal_periods_ == 1
    assert _season_of(monthly, "sarimax", seasonal_order=(1, 0, 0, 12)).seasonal_periods_ == 12
    long_h = _season_of(weekly, seasonal_periods=52.18, harmonics=2)
    assert long_h.seasonal_periods_ == 52.18 and long_h.harmonics_ == 2
    dummy = _season_of(monthly, seasonal_periods=6)
    assert dummy.seasonal_periods_ == 6 and dummy.harmonics_ is None


def test_short_series_warns_and_fits_without_season():
    y = pd.Series(np.arange(20.0), index=pd.date_range("2020-01", periods=20, freq="MS"))
    with pytest.warns(UserWarning, match="fewer than two seasons"):
        f = _season_of(y)
    assert f.seasonal_periods_ == 1


@pytest.mark.parametrize("kw,match", [
    ({"seasonal_periods": -3}, "seasonal_periods"), ({"seasonal_periods": 1.5}, "seasonal_periods"),
    ({"seasonal_periods": "12"}, "seasonal_periods"),
    ({"seasonal_periods": True}, "seasonal_periods"),
    ({"seasonal_periods": 1, "harmonics": 2}, "harmonics"),
    ({"seasonal_periods": 12, "harmonics": 7}, "half the season"),
    ({"harmonics": 0}, "harmonics"),
    ({"model": "ets", "seasonal_periods": 52.18}, "whole number")])
def test_season_errors(kw, match):
    y = _seasonal(40)["a"]
    with pytest.raises(ValueError, match=match):
        StatsmodelsForecaster(**{"maxiter": 3, **kw}).fit(y)


def test_level_heavy_series_fits_like_unscaled_statsmodels():
    """y_scale_ follows the changes, not the level: weekly CO2 (~350 ppm, changes ~0.5)
    gets the fit statsmodels finds on the raw values (scaled by its level, the
    optimiser stopped after a few iterations with a validation MAE up to 2.5x worse)."""
    from statsmodels.datasets import co2
    from statsmodels.tsa.statespace.structural import UnobservedComponents

    df = co2.load_pandas().data[["co2"]].asfreq("W-SAT")
    train, val = df.iloc[:-208], df.iloc[-208:-104]
    f = StatsmodelsForecaster(seasonal_periods=52.18, harmonics=3, trend="smooth trend").fit(train)
    assert f.converged_.all() and 0.25 <= f.y_scale_[0, 0] <= 2
    raw = UnobservedComponents(train["co2"].to_numpy(), level="smooth trend",
                               freq_seasonal=[{"period": 52.18, "harmonics": 3}]).fit(disp=False)
    ok = val["co2"].notna().to_numpy()
    ours = np.abs(f.predict(104)["co2"].to_numpy() - val["co2"].to_numpy())[ok].mean()
    theirs = np.abs(raw.forecast(104) - val["co2"].to_numpy())[ok].mean()
    print(f"CO2 validation MAE: StatsmodelsForecaster {ours:.3f}, raw statsmodels {theirs:.3f}")
    assert abs(ours - theirs) < 0.05
