"""MeanStdScaler at any magnitude: 1e-30 to 1e200, constants, old saved scalers."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from ssmts.data import MeanStdScaler, make_scaler, scaler_from_dict
from ssmts.estimators import SSMForecaster

RNG = np.random.default_rng(7)
MAGNITUDES = [1e-30, 1e-9, 1.0, 1e30, 1e200]
# one epoch on purpose: these tests are about the data path, not about skill
pytestmark = pytest.mark.filterwarnings("ignore:fit. the final training loss:UserWarning")
TINY = dict(lookback=8, horizon=4, d_model=8, n_layers=1, d_state=8, max_epochs=1, val_size=0,
            random_state=0)


def _data(scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(values, mask), shape (2, 50, 2): an offset signal of size ``scale``, NaN holes."""
    v = scale * (RNG.normal(size=(2, 50, 2)) + np.array([3.0, -1.0]))
    mask = RNG.uniform(size=v.shape) > 0.2
    return np.where(mask, v, np.nan), mask


@pytest.mark.parametrize("by", ["series", "channel", "global"])
@pytest.mark.parametrize("scale", MAGNITUDES)
def test_statistics_and_round_trip_at_any_magnitude(scale, by):
    v, mask = _data(scale)
    sc = MeanStdScaler(by=by).fit(v)
    assert np.isfinite(sc.mean_).all() and np.isfinite(sc.std_).all()
    axes = {"series": (1,), "channel": (0, 1), "global": (0, 1, 2)}[by]
    ref = v / scale  # the same data at magnitude 1: numpy's own statistics
    np.testing.assert_allclose(sc.mean_ / scale, np.nanmean(ref, axis=axes, keepdims=True),
                               rtol=1e-13)
    np.testing.assert_allclose(sc.std_ / scale, np.nanstd(ref, axis=axes, keepdims=True),
                               rtol=1e-13)
    z = sc.transform(v)
    assert np.isnan(z[~mask]).all()
    np.testing.assert_allclose(np.nanstd(z, axis=axes), 1.0, rtol=1e-12)  # really scaled
    back = sc.inverse_transform(z)
    np.testing.assert_allclose(back[mask], v[mask], rtol=1e-15, atol=1e-15 * scale)
    again = scaler_from_dict(json.loads(json.dumps(sc.to_dict())))
    np.testing.assert_array_equal(again.transform(v), z)


@pytest.mark.parametrize("scale", MAGNITUDES)
def test_sine_is_not_a_constant_at_any_magnitude(scale):
    v = scale * np.sin(np.arange(60) / 3.0)[None, :, None]  # (1, 60, 1), mean ~0
    sc = MeanStdScaler().fit(v)
    np.testing.assert_allclose(sc.std_[0, 0, 0] / scale, np.std(v[0, :, 0] / scale), rtol=1e-13)
    np.testing.assert_allclose(sc.inverse_transform(sc.transform(v)), v, rtol=1e-15,
                               atol=1e-15 * scale)


@pytest.mark.parametrize("value, std", [(7.0, 1.0), (-250.0, 1.0), (1e200, 1.0), (0.0, 1.0),
                                        (0.25, 0.25), (1e-9, 1e-9), (-3e-30, 3e-30)])
def test_constant_groups_are_centred(value, std):
    v = np.concatenate([np.full((1, 12, 1), value), RNG.normal(size=(1, 12, 1))])  # (2, 12, 1)
    v[0, 3] = np.nan
    sc = MeanStdScaler().fit(v)
    assert sc.mean_[0, 0, 0] == value and sc.std_[0, 0, 0] == std
    z = sc.transform(v)
    assert np.all(z[0, ~np.isnan(v[0, :, 0])] == 0.0)
    np.testing.assert_array_equal(sc.inverse_transform(z)[0], v[0])


def test_constancy_is_relative_to_the_data():
    t = np.arange(40.0)
    tiny_wave = 1e-9 + 1e-18 * np.sin(t)  # a real signal, relative size 1e-9
    rounding = 1e6 * (1 + 1e-15 * np.sin(t))  # relative 1e-15: only rounding noise
    sc = MeanStdScaler().fit(np.stack([tiny_wave, rounding])[:, :, None])
    np.testing.assert_allclose(sc.std_[0, 0, 0], 1e-18 * np.std(np.sin(t)), rtol=1e-6)
    assert sc.std_[1, 0, 0] == 1.0  # constant: centred only


def test_old_saved_scaler_still_loads():
    old = {"type": "MeanStdScaler", "by": "series", "min_std": 1e-8,
           "mean": [[[2.0]]], "std": [[[0.5]]]}  # written before rtol existed
    sc = scaler_from_dict(old)
    assert sc.min_std == 1e-8 and sc.rtol == 1e-12
    np.testing.assert_array_equal(sc.transform(np.array([[[3.0]]])), [[[2.0]]])
    d = json.loads(json.dumps(make_scaler("channel").fit(np.ones((1, 3, 2))).to_dict()))
    assert {"type", "by", "min_std", "mean", "std"} <= set(d)
    with pytest.raises(ValueError, match="rtol"):
        MeanStdScaler(rtol=-1.0).fit(np.ones((1, 3, 1)))
    with pytest.raises(ValueError, match="inf"):
        MeanStdScaler().fit(np.array([[[1.0], [np.inf]]]))


@pytest.mark.parametrize("amplitude", [1e-9, 1e200])
def test_forecaster_predicts_at_the_data_magnitude(amplitude):
    t = np.arange(120)
    y = pd.Series(amplitude * np.sin(2 * np.pi * t / 12), name="y",
                  index=pd.date_range("2020-01-01", periods=120, freq="h"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        f = SSMForecaster(**TINY, stride=2, batch_size=64).fit(y)
    pred = f.predict(12).to_numpy() / amplitude  # (12,) in units of the amplitude
    assert np.isfinite(pred).all()
    assert 1e-3 < np.abs(pred).max() < 10.0, pred  # of the data's order, neither 1e6x nor 0
