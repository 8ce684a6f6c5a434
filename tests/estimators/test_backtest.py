"""backtest: the batched SSMForecaster backtest equals a loop of predict(context), and the
grid forecasters' loop; origins from int / fraction / stamp starts; argument errors."""

import time
import warnings

import numpy as np
import pandas as pd
import pytest

from ssmts.estimators import SeasonalNaiveForecaster, SSMForecaster

TINY = dict(lookback=16, horizon=4, d_model=8, n_layers=1, d_state=4, max_epochs=1,
            val_size=0, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def y():
    rng = np.random.default_rng(0)
    t = np.arange(120)
    return pd.DataFrame({"a": np.sin(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(120) + 3,
                         "b": np.cos(t / 5) + 2},
                        index=pd.date_range("2024-01-01", periods=120, freq="h"))


@pytest.fixture(scope="module", params=["mse", "quantile"])
def ssm(request, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SSMForecaster(loss=request.param, **TINY).fit(y.iloc[:80])


def _loop(est, y, origins, horizon, levels=None):
    """Reference: predict(y[:o], h) from each origin, as long arrays per (origin, step, col)."""
    fc, qs = [], []
    for o in origins:
        hh = min(horizon, len(y) - o)
        fc.append(est.predict(y.iloc[:o], h=hh).to_numpy().ravel())
        if levels is not None:
            q = est.predict_quantiles(y.iloc[:o], h=hh, quantiles=levels)
            qs.append(q.to_numpy().reshape(hh, y.shape[1], len(levels)).reshape(-1, len(levels)))
    return np.concatenate(fc), (None if levels is None else np.concatenate(qs))


@pytest.mark.parametrize("horizon,stride", [(4, 11), (7, 33)])  # 7 > net horizon: rollout
def test_ssm_batched_equals_predict_loop(ssm, y, horizon, stride):
    bt = ssm.backtest(y, start=20, horizon=horizon, stride=stride, batch=8)
    origins = list(range(20, 120, stride))
    levels = ssm._quantile_levels()
    fc, qs = _loop(ssm, y, origins, horizon, levels)
    np.testing.assert_allclose(bt["forecast"].to_numpy(), fc, rtol=1e-4, atol=1e-5)
    steps = [min(horizon, 120 - o) for o in origins]
    assert len(bt) == 2 * sum(steps)
    assert list(bt.columns[:6]) == ["origin", "time", "step", "column", "forecast", "truth"]
    assert bt["origin"].iloc[0] == y.index[19] and bt["time"].iloc[0] == y.index[20]
    np.testing.assert_array_equal(bt["truth"].to_numpy()[:2], y.iloc[20].to_numpy())
    assert bt["step"].max() == horizon and bt["origin"].nunique() == len(origins)
    if levels is not None:
        got = bt[[f"q{q:g}" for q in levels]].to_numpy()
        np.testing.assert_allclose(got, qs, rtol=1e-4, atol=1e-5)
    else:
        assert not any(c.startswith("q") for c in bt.columns)


def test_start_int_fraction_stamp(ssm, y):
    a = ssm.backtest(y, start=60, horizon=4, stride=10)
    b = ssm.backtest(y, start=0.5, horizon=4, stride=10)
    c = ssm.backtest(y, start=y.index[60], horizon=4, stride=10)
    d = ssm.backtest(y, start=str(y.index[60]), horizon=4, stride=10)
    for other in (b, c, d):
        pd.testing.assert_frame_equal(a, other)
    assert a["origin"].iloc[0] == y.index[59]


def test_refit_loop(y, capsys):
    f = SeasonalNaiveForecaster(12).fit(y)
    bt = f.backtest(y, start=100, horizon=3, stride=8, refit=True)
    ref = [SeasonalNaiveForecaster(12).fit(y.iloc[:o]).predict(min(3, 120 - o)).to_numpy()
           for o in (100, 108, 116)]
    np.testing.assert_allclose(bt["forecast"].to_numpy(), np.concatenate(ref).ravel())
    assert "refit 3/3" in capsys.readouterr().err


def test_seasonal_naive_equals_loop(y):
    f = SeasonalNaiveForecaster(12).fit(y.iloc[:80])
    bt = f.backtest(y, start=30, horizon=5, stride=7, quantiles=[0.1, 0.9])
    origins = list(range(30, 120, 7))
    fc, qs = _loop(f, y, origins, 5, [0.1, 0.9])
    np.testing.assert_allclose(bt["forecast"].to_numpy(), fc)
    np.testing.assert_allclose(bt[["q0.1", "q0.9"]].to_numpy(), qs)
    s = SeasonalNaiveForecaster(12).fit(y["a"]).backtest(y["a"], 0.5, 5)  # a Series
    assert set(s["column"]) == {"a"} and len(s) == sum(min(5, 120 - o) for o in range(60, 120))


def test_several_series(y):
    long = pd.concat({"s1": y, "s2": y * 2}, names=["id", "ts"]).reset_index()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = SSMForecaster(id_col="id", time_col="ts", **TINY).fit(long)
    bt = f.backtest(long, start=100, horizon=4, stride=5)
    assert list(bt.columns[:2]) == ["series", "origin"] and set(bt["series"]) == {"s1", "s2"}
    one = bt[bt["series"] == "s2"]
    ctx = long[long["ts"] < y.index[100]]
    p = f.predict(ctx, h=4)
    want = p[p["id"] == "s2"][["a", "b"]].to_numpy().ravel()
    np.testing.assert_allclose(one["forecast"].to_numpy()[:8], want, rtol=1e-4, atol=1e-5)


def test_bad_arguments(ssm, y):
    f = SeasonalNaiveForecaster(12).fit(y)
    for est in (ssm, f):
        with pytest.raises(ValueError, match="start"):
            est.backtest(y, start=120, horizon=4)
        with pytest.raises(ValueError, match="start"):
            est.backtest(y, start=0, horizon=4)
        with pytest.raises(ValueError, match="start"):
            est.backtest(y, start=1.5, horizon=4)
        with pytest.raises(ValueError, match="start"):
            est.backtest(y, start=pd.Timestamp("2030-01-01"), horizon=4)
        with pytest.raises(ValueError, match="horizon"):
            est.backtest(y, start=50, horizon=0)
        with pytest.raises(ValueError, match="stride"):
            est.backtest(y, start=50, horizon=4, stride=0)
        with pytest.raises(ValueError, match="columns"):
            est.backtest(y[["b", "a"]], start=50, horizon=4)
    with pytest.raises(ValueError, match="lookback"):
        ssm.backtest(y, start=5, horizon=4)
    with pytest.raises(ValueError, match="refit"):
        f.backtest(y, start=50, horizon=4, refit="yes")


def test_timing_batched_vs_loop(y):
    """Printed, not asserted: ~200 origins, batched vs a loop of predict(context)."""
    idx = pd.date_range("2024-01-01", periods=240, freq="h")
    big = pd.DataFrame(np.sin(np.arange(240)[:, None] / 6 + np.arange(2)), index=idx,
                       columns=["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = SSMForecaster(**TINY).fit(big.iloc[:120])
    t0 = time.perf_counter()
    bt = f.backtest(big, start=40, horizon=4)
    t1 = time.perf_counter()
    for o in range(40, 240, 20):  # every 20th origin, scaled up to all 200
        f.predict(big.iloc[:o], h=min(4, 240 - o))
    t2 = time.perf_counter()
    print(f"\nbacktest of {bt['origin'].nunique()} origins: batched {t1 - t0:.3f} s, loop "
          f"of predict(context) {20 * (t2 - t1):.2f} s (10 origins timed, x20)")


# --------------------------------------------------------------------------- scoring
def _frame():
    """A hand-made backtest frame: 2 origins x 2 steps x 1 column, quantiles 0.1 / 0.9."""
    return pd.DataFrame({"origin": [0, 0, 1, 1], "step": [1, 2, 1, 2], "column": ["a"] * 4,
                         "forecast": [1.0, 2.0, 3.0, 4.0], "truth": [2.0, 2.0, 1.0, np.nan],
                         "q0.1": [0.0, 1.0, 2.0, 3.0], "q0.9": [3.0, 3.0, 4.0, 5.0]})


def test_score_backtest_by_hand():
    from ssmts.metrics import score_backtest

    df = _frame()  # errors (truth observed): -1, 0, 2
    s = score_backtest(df, metrics=("mse", "mae", "rmse", "mase"), y_train=[0.0, 2.0, 1.0, 3.0])
    assert s["mse"] == pytest.approx(5 / 3) and s["mae"] == pytest.approx(1.0)
    assert s["rmse"] == pytest.approx(np.sqrt(5 / 3))
    assert s["mase"] == pytest.approx(1.0 / (5 / 3))  # naive MAE of y_train: (2+1+2)/3
    # pinball 0.1: e = t - q = 2, 1, -1 -> 0.2, 0.1, 0.9; 0.9: e = -1, -1, -3 -> .1, .1, .3
    assert s["pinball_q0.1"] == pytest.approx(1.2 / 3)
    assert s["pinball_q0.9"] == pytest.approx(0.5 / 3)
    assert s["pinball"] == pytest.approx((1.2 / 3 + 0.5 / 3) / 2)
    assert s["coverage_0.8"] == pytest.approx(2 / 3)  # 1 lies below [2, 4]
    by = score_backtest(df, metrics="mae", by="step")
    assert list(by.index) == [1, 2] and by.loc[1, "mae"] == pytest.approx(1.5)
    assert by.loc[2, "mae"] == pytest.approx(0.0)
    ytr = pd.DataFrame({"a": [0.0, 2.0, 1.0, 3.0]})  # per-column scales
    assert score_backtest(df, ("mase",), y_train=ytr)["mase"] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="y_train"):
        score_backtest(df, metrics=("mase",))
    with pytest.raises(ValueError, match="metrics: unknown"):
        score_backtest(df, metrics=("r2",))
    with pytest.raises(ValueError, match="by:"):
        score_backtest(df, by="nope")


def test_backtest_scores_and_new_scorers(y):
    from sklearn.model_selection import GridSearchCV, TimeSeriesSplit

    from ssmts import metrics

    f = SeasonalNaiveForecaster(12).fit(y.iloc[:100])
    bt = f.backtest(y, start=100, horizon=20, stride=20, quantiles=[0.05, 0.95])
    fold = y.iloc[100:]
    s = metrics.score_backtest(bt, y_train=y.iloc[:100], metrics=("mae", "mase"))
    assert s["mae"] == pytest.approx(-metrics.get_scorer("neg_mean_absolute_error")(f, fold))
    ms = metrics.mase_scorer(y, season=1)
    want = metrics.mase(fold.to_numpy(), f.predict(20).to_numpy(), y.iloc[:100].to_numpy())
    assert ms(f, fold) == pytest.approx(-want)
    q = f.predict_quantiles(20, quantiles=[0.9]).to_numpy()
    assert metrics.pinball_scorer(0.9)(f, fold) == pytest.approx(
        -metrics.pinball(fold.to_numpy(), q, 0.9))
    cov = s.get("coverage_0.9", metrics.score_backtest(bt)["coverage_0.9"])
    assert metrics.coverage_scorer(0.9)(f, fold) == pytest.approx(-abs(cov - 0.9))
    for scorer in (ms, metrics.pinball_scorer(0.5), metrics.coverage_scorer(0.8)):
        gs = GridSearchCV(SeasonalNaiveForecaster(), {"season_length": [1, 12]},
                          cv=TimeSeriesSplit(3, test_size=12), scoring=scorer).fit(y)
        assert np.all(np.isfinite(gs.cv_results_["mean_test_score"]))
    with pytest.raises(ValueError, match="level"):
        metrics.pinball_scorer(1.5)
    with pytest.raises(ValueError, match="coverage"):
        metrics.coverage_scorer(0.0)


def test_ssm_with_covariates(y):
    X = pd.DataFrame({"x": np.cos(np.arange(120) / 3)}, index=y.index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = SSMForecaster(**TINY).fit(y.iloc[:80], X.iloc[:80])
    bt = f.backtest(y, start=30, horizon=6, stride=30, X=X)
    want = [f.predict(y.iloc[:o], h=min(6, 120 - o), X=X).to_numpy().ravel()
            for o in (30, 60, 90)]
    np.testing.assert_allclose(bt["forecast"].to_numpy(), np.concatenate(want), rtol=1e-4,
                               atol=1e-5)
    with pytest.raises(ValueError, match="X"):
        f.backtest(y, start=30, horizon=6)


def test_grid_holes_and_irregular(y):
    holes = y.drop(y.index[[50, 51, 77]])  # a regular grid with holes: steps are rows
    f = SeasonalNaiveForecaster(1).fit(holes)
    bt = f.backtest(holes, start=49, horizon=2, stride=100)
    assert list(bt["time"].unique()) == [holes.index[49], holes.index[50]]
    np.testing.assert_allclose(bt["forecast"], np.tile(holes.iloc[48].to_numpy(), 2))
    irr = y.iloc[np.r_[0:40, 41:43, 45:120]].copy()
    irr.index = irr.index + pd.to_timedelta(np.arange(len(irr)) % 3, unit="min")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = SSMForecaster(**TINY).fit(irr)
    with pytest.raises(ValueError, match="irregular"):
        s.backtest(irr, start=30, horizon=4)


def test_ssm_refit_one_origin(y):
    f = SSMForecaster(**TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f.fit(y.iloc[:80])
        bt = f.backtest(y, start=110, horizon=4, stride=100, refit=True)
        ref = SSMForecaster(**TINY).fit(y.iloc[:110]).predict(4)
    np.testing.assert_allclose(bt["forecast"].to_numpy(), ref.to_numpy().ravel(), rtol=1e-5)
    assert pd.api.types.is_datetime64_any_dtype(bt["origin"])
