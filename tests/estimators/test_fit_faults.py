"""Faults during fit: diverging losses, exceptions and Ctrl-C from callbacks, global state.

Every fault must leave the estimator exactly as it was (parameters, every fitted
attribute, its forecasts) and the caller's process as it was (global random
generators, environment, SIGINT handler).
"""

from __future__ import annotations

import os
import random
import signal
import warnings

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ssmts.training.module as tm
from ssmts.estimators import (SeasonalNaiveForecaster, SSMForecaster, StatsmodelsForecaster,
                              TrainingDiverged)

TINY = dict(lookback=8, horizon=4, d_model=8, n_layers=1, d_state=4, max_epochs=2,
            val_size=0, random_state=0, device="cpu", batch_size=16)


def frame(T=80, seed=0, cols=("a", "b"), start="2024-01-01"):
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=T, freq="h")
    t = np.arange(T)
    return pd.DataFrame({c: np.sin(t / (3 + k)) + 0.1 * rng.standard_normal(T) + k
                         for k, c in enumerate(cols)}, index=idx)


def fitted_state(est) -> dict:
    """Every fitted attribute, with tensors / arrays copied, and a forecast."""
    out = {}
    for k, v in vars(est).items():
        if k.endswith("_") and not k.startswith("_"):
            out[k] = v
    out["__predict"] = np.asarray(est.predict(3), dtype=np.float64).copy()
    out["__weights"] = {k: t.clone() for k, t in est.net_.state_dict().items()}
    out["__params"] = est.get_params()
    return out


def assert_same(est, before: dict) -> None:
    after = {k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_")}
    assert set(after) == {k for k in before if not k.startswith("__")}
    for k, v in after.items():
        assert v is before[k], k  # the very same objects: nothing was replaced
    assert est.get_params() == before["__params"]
    for k, t in est.net_.state_dict().items():
        assert torch.equal(t, before["__weights"][k]), k
    np.testing.assert_array_equal(np.asarray(est.predict(3), dtype=np.float64),
                                  before["__predict"])


@pytest.fixture(scope="module")
def base():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SSMForecaster(**TINY).fit(frame())


class Raise(L.Callback):
    """Raise ``exc`` at the given training batch."""

    def __init__(self, exc: BaseException, at: int = 2):
        self.exc, self.at = exc, at

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step >= self.at:
            raise self.exc


def _refit_with(base, **params):
    est = base  # refit the shared fitted model on other data; it must survive
    old = {k: est.get_params()[k] for k in params}
    est.set_params(**params)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(frame(T=70, seed=1, cols=("x", "y", "z")))
    finally:
        est.set_params(**old)


def test_exception_from_callback_mid_epoch_leaves_estimator(base):
    before = fitted_state(base)
    with pytest.raises(RuntimeError, match="boom"):
        _refit_with(base, trainer_kwargs={"callbacks": [Raise(RuntimeError("boom"))]})
    base.set_params(trainer_kwargs=None)
    assert_same(base, before)


def test_keyboard_interrupt_reaches_caller_and_leaves_estimator(base):
    before = fitted_state(base)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        _refit_with(base, trainer_kwargs={"callbacks": [Raise(KeyboardInterrupt())]})
    base.set_params(trainer_kwargs=None)
    assert_same(base, before)
    assert signal.getsignal(signal.SIGINT) is handler  # Lightning set SIG_IGN; given back


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_is_divergence(base, monkeypatch, bad):
    calls = {"n": 0}
    real = tm.masked_loss

    def loss(*a, **k):
        calls["n"] += 1
        out = real(*a, **k)
        return out * bad if calls["n"] == 3 else out

    monkeypatch.setattr(tm, "masked_loss", loss)
    before = fitted_state(base)
    with pytest.raises(TrainingDiverged, match=r"epoch 0, step 2 with lr=0\.01.*lower lr"):
        _refit_with(base)
    assert_same(base, before)


def test_high_lr_diverges_with_a_message(base):
    before = fitted_state(base)
    with pytest.raises(TrainingDiverged) as info:
        _refit_with(base, lr=1e4, max_epochs=3)
    msg = str(info.value)
    assert "lr=10000" in msg and "epoch" in msg and "lr=1000" in msg
    assert "non-finite value" not in msg and "remove or mask" not in msg  # not blamed on data
    assert_same(base, before)


def test_loss_worse_than_naive_warns():
    with pytest.warns(UserWarning, match=r"worse than a naive \(last value\) forecast"):
        SSMForecaster(**{**TINY, "lr": 10.0}).fit(frame())


def test_fit_leaves_global_state_alone():
    np.random.seed(123)
    random.seed(7)
    torch.manual_seed(99)
    states = (np.random.get_state()[1].copy(), random.getstate(), torch.get_rng_state().clone())
    env = {k: os.environ.get(k) for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS",
                                          "CUBLAS_WORKSPACE_CONFIG")}
    det = torch.are_deterministic_algorithms_enabled()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = SSMForecaster(**TINY).fit(frame()).predict(3)
        b = SSMForecaster(**TINY).fit(frame()).predict(3)
    pd.testing.assert_frame_equal(a, b)  # the seed still makes fits repeatable
    np.testing.assert_array_equal(np.random.get_state()[1], states[0])
    assert random.getstate() == states[1]
    assert torch.equal(torch.get_rng_state(), states[2])
    assert {k: os.environ.get(k) for k in env} == env
    assert torch.are_deterministic_algorithms_enabled() == det


def test_s4_is_dplr_and_layer_kwargs_reach_the_layer():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = SSMForecaster(**{**TINY, "backbone": "s4", "layer_kwargs": {"rank": 2}}).fit(frame())
        g = SSMForecaster(**{**TINY, "backbone": "s4d"}).fit(frame())
    layer = f.net_.backbone.blocks[0].layer
    assert layer.mode == "dplr" and layer.P.shape[1] == 2  # P: (H, rank, N/2, 2)
    assert g.net_.backbone.blocks[0].layer.mode == "diag"
    assert np.isfinite(f.predict(4).to_numpy()).all()


# ----------------------------------------------------------------------------- properties
_BAD = [dict(lr=-1.0), dict(d_state=7), dict(val_size=2.0), dict(lookback=500),
        dict(layer_kwargs={"nope": 1})]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(i=st.integers(0, len(_BAD) - 1), bad_data=st.booleans())
@pytest.mark.property
def test_failed_fit_leaves_params_and_attributes(base, i, bad_data):
    """Whatever makes fit fail (a parameter, or the data), nothing fitted changes."""
    before = fitted_state(base)
    old = {k: base.get_params()[k] for k in _BAD[i]}
    est = base.set_params(**(_BAD[i] if not bad_data else {}))
    y = frame(T=40).assign(a="x") if bad_data else frame(T=70)
    try:
        with pytest.raises((ValueError, TypeError)):
            est.fit(y)
    finally:
        base.set_params(**old)
    assert_same(base, before)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), mag=st.sampled_from([1e-30, 1e-9, 1.0, 1e6, 1e30, 1e200]),
       nan_frac=st.sampled_from([0.0, 0.1, 0.4]), freq=st.sampled_from(["h", "D", "MS", "YS"]),
       start=st.sampled_from(["1700-01-01", "2000-01-01"]), tz=st.sampled_from([None, "UTC"]))
@pytest.mark.property
def test_accepted_input_never_gives_non_finite_forecasts(seed, mag, nan_frac, freq, start, tz):
    rng = np.random.default_rng(seed)
    T = 48
    idx = pd.date_range(start, periods=T, freq=freq, tz=tz)
    v = mag * (rng.standard_normal((T, 2)).cumsum(axis=0) + 3)
    v[rng.random((T, 2)) < nan_frac] = np.nan
    v[0] = mag  # every column keeps values
    df = pd.DataFrame(v, index=idx, columns=["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for est in (SSMForecaster(**{**TINY, "max_epochs": 1}), SeasonalNaiveForecaster(2),
                    StatsmodelsForecaster("ets", seasonal_periods=1, maxiter=10)):
            p = np.asarray(est.fit(df).predict(5), dtype=np.float64)
            assert np.isfinite(p).all(), (type(est).__name__, mag, freq, p)
            assert np.abs(p).max() < 1e4 * mag, (type(est).__name__, mag, p)
