"""ForecastPipeline: target transformers then a forecaster; forecasts in y's original units."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from ssmts import metrics
from ssmts.estimators import ForecastPipeline, SeasonalNaiveForecaster, SSMForecaster


@pytest.fixture(scope="module")
def y():
    rng = np.random.default_rng(0)
    t = np.arange(96)
    return pd.DataFrame({"a": 1000 + 50 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 2, 96),
                         "b": 0.01 * np.cos(2 * np.pi * t / 24)},
                        index=pd.date_range("2024", periods=96, freq="h"))


def test_forecasts_come_back_in_original_units(y):
    pipe = ForecastPipeline([("s", StandardScaler()), ("f", SeasonalNaiveForecaster(24))]).fit(y)
    p = pipe.predict(3)  # an int h, which sklearn's Pipeline would hand to the scaler
    direct = SeasonalNaiveForecaster(24).fit(y).predict(3)
    pd.testing.assert_frame_equal(p, direct, check_freq=False)
    lo, hi = pipe.predict_interval(3, coverage=0.8)
    assert (lo.to_numpy() <= p.to_numpy() + 1e-9).all() and (hi.to_numpy() >= p.to_numpy()).all()
    q = pipe.predict_quantiles(3, quantiles=[0.1, 0.5, 0.9])
    np.testing.assert_allclose(q.xs(0.5, axis=1, level=-1).to_numpy(), p.to_numpy())
    assert list(q.columns) == [(c, lv) for c in ("a", "b") for lv in (0.1, 0.5, 0.9)]


def test_update_score_and_context(y):
    pipe = ForecastPipeline([("log", FunctionTransformer(np.log1p, np.expm1)),
                             ("f", SeasonalNaiveForecaster(24))]).fit(y.iloc[:72][["a"]])
    s = pipe.score(y.iloc[72:][["a"]])
    want = -np.mean((SeasonalNaiveForecaster(24).fit(y.iloc[:72][["a"]]).predict(24)
                     .to_numpy() - y.iloc[72:][["a"]].to_numpy()) ** 2)
    assert s == pytest.approx(want, rel=1e-9)
    pipe.update(y.iloc[72:80][["a"]])
    assert pipe.predict(1).index[0] == y.index[80]
    assert pipe.predict(y.iloc[:90][["a"]], h=2).index[0] == y.index[90]


def test_grid_search_and_clone(y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = ForecastPipeline([("s", StandardScaler()),
                                 ("f", SSMForecaster(lookback=16, horizon=4, d_model=8,
                                                     n_layers=1, d_state=4, max_epochs=1,
                                                     val_size=0, random_state=0))])
        gs = GridSearchCV(pipe, {"f__lr": [1e-3, 1e-2]}, cv=TimeSeriesSplit(2, test_size=12),
                          scoring=metrics.get_scorer("neg_mean_absolute_error")).fit(y)
    assert np.all(np.isfinite(gs.cv_results_["mean_test_score"]))
    p = gs.best_estimator_.predict(4)
    assert np.abs(p["a"].to_numpy() - 1000).max() < 200  # original units, not scaled ones
    assert clone(pipe).get_params()["f__lr"] == 1e-2


def test_refuses_what_it_cannot_invert(y):
    pipe = ForecastPipeline([("f1", FunctionTransformer(np.log1p)),
                             ("f", SeasonalNaiveForecaster(24))]).fit(y[["a"]])
    with pytest.raises(ValueError, match="inverse_transform.*invertible"):
        pipe.predict(2)
    with pytest.raises(TypeError, match="pandas"):
        ForecastPipeline([("s", StandardScaler()), ("f", SeasonalNaiveForecaster())]).fit(
            y.to_numpy())
