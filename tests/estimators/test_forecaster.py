"""SSMForecaster: containers in and out, irregular / missing data, sklearn contract, skill."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from ssmts.estimators import SSMForecaster

TINY = dict(lookback=16, horizon=4, d_model=8, n_layers=1, d_state=4, max_epochs=2,
            batch_size=64, val_size=0, random_state=0, device="cpu")


def tiny(**kw):
    return SSMForecaster(**{**TINY, **kw})


def seasonal(T=120, C=2, seed=0, period=12):
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    cols = [np.sin(2 * np.pi * t / period + k) + 0.1 * rng.standard_normal(T) + k
            for k in range(C)]
    return np.stack(cols, axis=1)  # (T, C)


@pytest.fixture(scope="module")
def hourly():
    idx = pd.date_range("2024-01-01", periods=120, freq="h", name="ts")
    return pd.DataFrame(seasonal(), index=idx, columns=["a", "b"])


@pytest.fixture(scope="module")
def fitted(hourly):
    return tiny().fit(hourly)


# --------------------------------------------------------------------------- containers
def test_wide_datetime_next_stamps(hourly, fitted):
    before = hourly.copy()
    p = fitted.predict(24)
    want = pd.date_range(hourly.index[-1], periods=25, freq="h")[1:]
    assert isinstance(p, pd.DataFrame) and p.index.equals(want) and list(p.columns) == ["a", "b"]
    assert np.isfinite(p.to_numpy()).all()
    pd.testing.assert_frame_equal(hourly, before)  # input not mutated
    assert fitted.n_features_in_ == 2 and list(fitted.feature_names_in_) == ["a", "b"]
    assert fitted.predict().shape == (4, 2)  # default h = horizon


@pytest.mark.parametrize("kind", ["period", "range", "series", "long", "dataarray", "dataset",
                                  "nd2", "nd3"])
def test_round_trip_containers(kind):
    v = seasonal(60)
    if kind == "period":
        y = pd.DataFrame(v, index=pd.period_range("2020-01", periods=60, freq="M"),
                         columns=["x", "y"])
    elif kind == "range":
        y = pd.DataFrame(v, columns=["x", "y"])
    elif kind == "series":
        y = pd.Series(v[:, 0], index=pd.date_range("2024", periods=60, freq="D"), name="x")
    elif kind == "long":
        t = pd.date_range("2024", periods=30, freq="D")
        y = pd.DataFrame({"id": ["u"] * 30 + ["w"] * 30, "t": list(t) * 2,
                          "x": v[:, 0], "y": v[:, 1]})
    elif kind == "dataarray":
        y = xr.DataArray(v, dims=("time", "var"),
                         coords={"time": pd.date_range("2024", periods=60, freq="h"),
                                 "var": ["x", "y"]}, name="obs")
    elif kind == "dataset":
        y = xr.Dataset({"x": ("time", v[:, 0]), "y": ("time", v[:, 1])},
                       coords={"time": pd.date_range("2024", periods=60, freq="h")})
    elif kind == "nd2":
        y = v
    else:
        y = np.stack([v[:30], v[30:]])  # (2, 30, 2)
    kw = dict(id_col="id", time_col="t") if kind == "long" else {}
    f = tiny(lookback=8, max_epochs=1, **kw).fit(y)
    p = f.predict(5)
    assert type(p) is type(y)
    if kind == "period":
        assert p.index.equals(pd.period_range("2025-01", periods=5, freq="M"))
    elif kind == "range":
        assert p.index.equals(pd.RangeIndex(60, 65)) and list(p.columns) == ["x", "y"]
    elif kind == "series":
        assert p.name == "x" and p.index[0] == pd.Timestamp("2024-03-01")
    elif kind == "long":
        assert len(p) == 10 and set(p["id"]) == {"u", "w"}
        assert p.loc[p["id"] == "u", "t"].iloc[0] == pd.Timestamp("2024-01-31")
    elif kind in ("dataarray", "dataset"):
        assert p.sizes["time"] == 5 and p["time"].values[0] == np.datetime64("2024-01-03T12:00")
    elif kind == "nd2":
        assert p.shape == (5, 2)
    else:
        assert p.shape == (2, 5, 2)


def test_irregular_needs_at_and_predicts_there():
    rng = np.random.default_rng(1)
    stamps = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.cumsum(rng.uniform(0.5, 2, 80)),
                                                            unit="h")
    y = pd.DataFrame(seasonal(80), index=pd.DatetimeIndex(stamps), columns=["a", "b"])
    f = tiny().fit(y)
    with pytest.raises(ValueError, match="at="):
        f.predict(3)
    at = y.index[-1] + pd.to_timedelta([0.3, 1.7, 2.2], unit="h")
    p = f.predict(at=at)
    assert p.index.equals(at) and np.isfinite(p.to_numpy()).all()
    with pytest.raises(ValueError, match="not after"):
        f.predict(at=[y.index[-2]])


def test_nan_masked_and_counted(hourly):
    y = hourly.copy()
    y.iloc[10:14, 0] = np.nan
    y.iloc[30:33, :] = np.nan  # full missing rows: skipped by the state
    with pytest.warns(UserWarning, match="10 of 240 values are missing"):
        f = tiny().fit(y)
    assert f.n_masked_ == 10 and np.all(np.isfinite(f.train_loss_))
    assert np.isfinite(f.predict(4).to_numpy()).all()


def test_bad_inputs(fitted, hourly):
    with pytest.raises(NotFittedError):
        tiny().predict(3)
    with pytest.raises(ValueError, match="lookback"):
        tiny(lookback=200).fit(hourly)
    with pytest.raises(ValueError, match="h:"):
        fitted.predict(0)
    with pytest.raises(ValueError, match="columns"):
        fitted.predict(hourly.rename(columns={"a": "z"}), h=2)
    with pytest.raises(ValueError, match="backbone"):
        tiny(backbone="lstm").fit(hourly)
    with pytest.raises(ValueError, match="loss='quantile'"):
        fitted.predict_interval(3)


# --------------------------------------------------------------------------- sklearn contract
def test_clone_params_pickle(fitted):
    c = clone(fitted)
    assert c.get_params() == fitted.get_params() and not hasattr(c, "net_")
    assert c.set_params(d_model=16).d_model == 16
    g = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(g.predict(6).to_numpy(), fitted.predict(6).to_numpy())


def test_grid_search_time_series_split(hourly):
    gs = GridSearchCV(tiny(max_epochs=1), {"d_model": [8, 16]}, cv=TimeSeriesSplit(2))
    gs.fit(hourly)
    assert gs.best_params_["d_model"] in (8, 16)
    assert np.all(np.isfinite(gs.cv_results_["mean_test_score"]))
    assert np.all(gs.cv_results_["mean_test_score"] < 0)


def test_pipeline_and_target_transformer(hourly):
    pipe = Pipeline([("sc", StandardScaler().set_output(transform="pandas")),
                     ("f", tiny(max_epochs=1))]).fit(hourly)
    p = pipe.predict(hourly, h=6)
    assert p.index[0] == hourly.index[-1] + pd.Timedelta("1h") and p.shape == (6, 2)
    # target_transformer: forecasts come back in original units
    y = hourly + 100.0
    f = tiny(target_transformer=FunctionTransformer(np.log, np.exp)).fit(y)
    p = f.predict(4)
    assert f.target_transformer_ is not f.target_transformer
    assert np.all((p.to_numpy() > 90) & (p.to_numpy() < 110))


def test_score_is_neg_mse_of_following_rows(hourly):
    f = tiny().fit(hourly.iloc[:100])
    test = hourly.iloc[100:108]
    want = -np.mean((f.predict(8).to_numpy() - test.to_numpy()) ** 2)
    assert f.score(test) == pytest.approx(want, rel=1e-6)


# --------------------------------------------------------------------------- state, update
def test_reproducible_with_random_state(hourly, fitted):
    p2 = tiny().fit(hourly).predict(8)
    np.testing.assert_array_equal(p2.to_numpy(), fitted.predict(8).to_numpy())


def test_update_moves_origin_in_new_samples(hourly):
    f = tiny().fit(hourly.iloc[:100])
    calls = []
    orig = f.net_.step
    f.net_.step = lambda *a, **k: calls.append(1) or orig(*a, **k)
    f.update(hourly.iloc[100:105])
    assert len(calls) == 5  # one recurrent step per new row, none over the history
    del f.net_.step
    p = f.predict(3)
    assert p.index[0] == hourly.index[105]
    assert len(f.context_.stamps[0]) == 16 and f.context_.stamps[0][-1] == hourly.index[104]
    with pytest.raises(ValueError, match="not after"):
        f.update(hourly.iloc[100:101])
    # updating equals stepping from scratch: origin after update == fresh origin on the
    # same last rows is not expected (longer memory), but forecasts stay finite and close
    g = tiny().fit(hourly.iloc[:100])
    assert np.isfinite(g.predict(hourly.iloc[:105], h=3).to_numpy()).all()


def test_recursive_beyond_horizon(fitted):
    p = fitted.predict(10)  # horizon 4: two recursive blocks
    assert p.shape == (10, 2) and np.isfinite(p.to_numpy()).all()
    np.testing.assert_allclose(p.to_numpy()[:4], fitted.predict(4).to_numpy(), rtol=1e-6)


# --------------------------------------------------------------------------- quantiles, exog
def test_quantile_interval(hourly):
    f = tiny(loss="quantile", quantiles=[0.05, 0.25, 0.5, 0.75, 0.95]).fit(hourly)
    lo, hi = f.predict_interval(6, coverage=0.9)
    assert (lo.to_numpy() <= hi.to_numpy()).all() and lo.index.equals(hi.index)
    q = f.predict_quantiles(6, quantiles=[0.1, 0.5, 0.9])
    arr = q.to_numpy().reshape(6, 2, 3)  # (h, column, quantile)
    assert np.all(np.diff(arr, axis=-1) >= 0)
    np.testing.assert_allclose(arr[..., 1], f.predict(6).to_numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="trained range"):
        f.predict_interval(6, coverage=0.99)


def test_exogenous(hourly):
    Xall = pd.DataFrame({"hour": np.sin(np.arange(130) / 3.0)},
                        index=pd.date_range("2024-01-01", periods=130, freq="h"))
    f = tiny().fit(hourly, X=Xall.iloc[:120])
    p = f.predict(5, X=Xall.iloc[120:])
    assert p.shape == (5, 2) and np.isfinite(p.to_numpy()).all()
    with pytest.raises(ValueError, match="missing"):
        f.predict(5, X=Xall.iloc[:120])  # wrong time span
    with pytest.raises(ValueError, match="covariate"):
        f.predict(5)
    with pytest.raises(ValueError, match="rows"):
        f.predict(5, X=np.ones((3, 1)))  # wrong shape


# --------------------------------------------------------------------------- skill
def _skill(T, period, lookback, epochs, stride, backbone="s5", lr=5e-3):
    rng = np.random.default_rng(3)
    t = np.arange(T)
    clean = np.sin(2 * np.pi * t / period) + 0.5 * np.sin(4 * np.pi * t / period)
    y = pd.Series(clean + 0.3 * rng.standard_normal(T),
                  index=pd.date_range("2024", periods=T, freq="h"), name="y")
    train, test = y.iloc[:-period], y.iloc[-period:]
    f = SSMForecaster(backbone=backbone, lookback=lookback, horizon=period, d_model=16,
                      n_layers=1, d_state=8, max_epochs=epochs, batch_size=32, stride=stride,
                      val_size=0, dropout=0.0, random_state=0, device="cpu", lr=lr).fit(train)
    mse = float(np.mean((f.predict(period).to_numpy() - test.to_numpy()) ** 2))
    naive = float(np.mean((train.to_numpy()[-period:] - test.to_numpy()) ** 2))
    print(f"model MSE {mse:.4f}  seasonal naive {naive:.4f}")
    return mse, naive


def test_beats_seasonal_naive_small():
    """The default backbone (S5) and learning rate learn a seasonal series in 10 epochs."""
    mse, naive = _skill(T=400, period=12, lookback=36, epochs=10, stride=1, backbone="s5",
                        lr=SSMForecaster().lr)
    assert mse < naive


@pytest.mark.slow
def test_beats_seasonal_naive_hourly_1500():
    mse, naive = _skill(T=1500, period=24, lookback=96, epochs=15, stride=1,
                        lr=SSMForecaster().lr)
    assert mse < naive


# --------------------------------------------------------------------------- window norm
def _trend(T=240, seed=5):
    rng = np.random.default_rng(seed)
    t = np.arange(T, dtype=float)
    v = np.stack([0.05 * t + 0.3 * np.sin(t / 2) + 0.05 * rng.standard_normal(T),
                  -0.03 * t + 0.05 * rng.standard_normal(T)], axis=1)  # (T, 2)
    return pd.DataFrame(v, index=pd.date_range("2024", periods=T, freq="h"), columns=["u", "d"])


def test_window_norm_follows_a_trend():
    """Train on the first 200 rows of a linear trend, forecast the next 12: with window
    normalisation the forecast continues the trend; with the global scaler alone the
    levels were never seen and the forecast falls far short."""
    y = _trend()
    train, test = y.iloc[:228], y.iloc[228:]
    kw = dict(lookback=24, horizon=12, d_model=16, n_layers=1, d_state=8, max_epochs=4,
              batch_size=32, val_size=0, random_state=0, device="cpu", dropout=0.0)
    mse = {}
    for norm in ("mean", "last", None):
        f = SSMForecaster(window_norm=norm, **kw).fit(train)
        mse[norm] = float(np.mean((f.predict(12).to_numpy() - test.to_numpy()) ** 2))
    print("test MSE by window_norm:", mse)
    assert mse["mean"] < 0.1 * mse[None] and mse["last"] < 0.1 * mse[None]
    assert mse["mean"] < 0.5  # the trend moves 0.6 / 0.36 over the horizon


def test_window_stats_ignore_masked_values(hourly):
    """The origin's statistics are those of the observed context values only, and a
    value hidden under NaN cannot change them or the forecast."""
    y = hourly.copy()
    y.iloc[-10:-7, 0] = np.nan
    with pytest.warns(UserWarning, match="missing"):
        f = tiny(window_norm="mean").fit(y)
    tail = f.scaler_.transform(y.to_numpy()[None])[0, -16:]  # (lookback, C) scaled
    np.testing.assert_allclose(f.origin_["loc"].numpy()[0], np.nanmean(tail, axis=0),
                               rtol=1e-5)
    np.testing.assert_allclose(f.origin_["scale"].numpy()[0], np.nanstd(tail, axis=0),
                               rtol=1e-4)
    f_last = tiny(window_norm="last")
    with pytest.warns(UserWarning):
        f_last.fit(y)
    want_last = [tail[-1, 0], tail[-1, 1]]
    np.testing.assert_allclose(f_last.origin_["loc"].numpy()[0], want_last, rtol=1e-5)
    p1 = f.predict(y, h=4).to_numpy()
    p2 = f.predict(y.fillna(1e6).where(y.notna()), h=4).to_numpy()
    np.testing.assert_array_equal(p1, p2)


def test_window_norm_save_load_and_update(hourly, tmp_path):
    f = tiny(window_norm="last", window_affine=True).fit(hourly.iloc[:110])
    f.save(tmp_path / "m")
    g = SSMForecaster.load(tmp_path / "m")
    assert g.window_norm == "last" and g.window_affine and g.net_.norm_weight is not None
    np.testing.assert_array_equal(g.predict(6).to_numpy(), f.predict(6).to_numpy())
    loc = f.origin_["loc"].clone()
    f.update(hourly.iloc[110:115])  # O(new rows): the origin keeps its statistics
    assert torch.equal(f.origin_["loc"], loc)
    g.update(hourly.iloc[110:115])
    np.testing.assert_array_equal(g.predict(8).to_numpy(), f.predict(8).to_numpy())
