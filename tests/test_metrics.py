"""ssmts.metrics: metric values against hand computations, and scorers in GridSearchCV."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit

from ssmts import metrics
from ssmts.estimators import SeasonalNaiveForecaster, SSMForecaster


def test_metric_values():
    t = np.array([1.0, 2.0, np.nan, 4.0])
    p = np.array([2.0, 2.0, 9.0, 1.0])
    assert metrics.mse(t, p) == pytest.approx((1 + 0 + 9) / 3)
    assert metrics.mae(t, p) == pytest.approx((1 + 0 + 3) / 3)
    assert metrics.rmse(t, p) == pytest.approx(np.sqrt(10 / 3))
    assert metrics.smape(t, p) == pytest.approx((200 / 3 + 0 + 200 * 3 / 5) / 3)
    assert metrics.mase(t, p, y_train=[0.0, 2.0, 1.0, 3.0]) == pytest.approx((4 / 3) / (5 / 3))
    assert metrics.pinball(t, p, 0.9) == pytest.approx((0.1 * 1 + 0 + 0.9 * 3) / 3)
    assert metrics.coverage(t, p - 0.5, p + 0.5) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="y_pred: shape"):
        metrics.mae(t, p[:2])
    with pytest.raises(ValueError, match="no observed value"):
        metrics.mae([np.nan], [1.0])
    with pytest.raises(ValueError, match="constant series"):
        metrics.mase(t, p, y_train=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="level"):
        metrics.pinball(t, p, 1.5)
    with pytest.raises(ValueError, match="name: expected one of"):
        metrics.get_scorer("accuracy")


@pytest.fixture(scope="module")
def hourly():
    rng = np.random.default_rng(3)
    t = np.arange(120)
    return pd.DataFrame({"a": np.sin(2 * np.pi * t / 12) + 0.1 * rng.standard_normal(120) + 5},
                        index=pd.date_range("2024", periods=120, freq="h"))


def test_scorer_equals_metric_of_the_forecast(hourly):
    f = SeasonalNaiveForecaster(12).fit(hourly.iloc[:100])
    fold = hourly.iloc[100:]
    want = -metrics.mae(fold.to_numpy(), f.predict(20).to_numpy())
    assert metrics.get_scorer("neg_mean_absolute_error")(f, fold) == pytest.approx(want)
    # score() is the negative MSE; the MSE scorer agrees with it
    assert metrics.get_scorer("neg_mean_squared_error")(f, fold) == pytest.approx(f.score(fold))


def test_grid_search_with_a_forecast_scorer(hourly):
    """sklearn's own "neg_mean_absolute_error" gives NaN for every fold (no y); ours scores."""
    scorer = metrics.get_scorer("neg_mean_absolute_error")
    gs = GridSearchCV(SeasonalNaiveForecaster(), {"season_length": [1, 12]},
                      cv=TimeSeriesSplit(3, test_size=12), scoring=scorer).fit(hourly)
    assert np.all(np.isfinite(gs.cv_results_["mean_test_score"]))
    assert gs.best_params_ == {"season_length": 12}  # the true period wins
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gs = GridSearchCV(SSMForecaster(lookback=16, horizon=4, d_model=8, n_layers=1,
                                        d_state=4, max_epochs=1, val_size=0, random_state=0),
                          {"lr": [1e-3, 1e-2]}, cv=TimeSeriesSplit(2, test_size=12),
                          scoring=scorer).fit(hourly)
    assert np.all(np.isfinite(gs.cv_results_["mean_test_score"]))
