"""The README's main job: ``ssmts demo`` (quick mode), and its validation protocol."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ssmts import demo


def _check_model_entry(name: str, row: dict, split: dict) -> None:
    assert row["candidates"], name
    for c in row["candidates"]:
        assert set(c) >= {"settings", "label", "validation_mae", "validation_mse", "fitted_on",
                          "forecast_from", "fit_seconds"}, (name, c)
        assert math.isfinite(c["validation_mae"]) and c["validation_mae"] >= 0
        assert c["validation_mae"] ** 2 <= c["validation_mse"] + 1e-9  # Jensen
        # selection fits end before the validation weeks, which end before the test weeks
        assert c["fitted_on"]["end"] < split["validation"]["start"] == c["forecast_from"]
    assert split["validation"]["end"] < split["test"]["start"]
    best = row["chosen_index"]
    assert row["chosen"] == row["candidates"][best]["settings"]
    assert row["candidates"][best]["validation_mae"] == min(
        c["validation_mae"] for c in row["candidates"])
    t = row["test"]
    assert t["fitted_on"]["end"] == split["validation"]["end"]  # refitted on train + validation
    assert t["forecast_from"] == split["test"]["start"]
    for key in ("mae", "mse", "fit_seconds"):
        assert math.isfinite(t[key]) and t[key] >= 0, (name, key, t[key])
    assert t["mae"] ** 2 <= t["mse"] + 1e-9
    assert len(t["seeds"]) == len(t["per_seed"]) >= 1


def test_run_demo_quick(tmp_path, capsys):
    try:
        from ssmts.estimators import SSMForecaster  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"SSMForecaster is not importable yet ({exc}); the demo needs it")

    assert demo.run_demo(out=str(tmp_path), quick=True) == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["quick"] is True and report["selection_metric"] == "validation MAE"
    split = report["split"]
    assert split["test"]["weeks"] == 104 and split["validation"]["weeks"] == 104
    assert split["train"]["end"] < split["validation"]["start"]
    assert set(report["models"]) == {"SSMForecaster (S5)", "seasonal naive (52)",
                                     "UnobservedComponents"}
    for name, row in report["models"].items():
        _check_model_entry(name, row, split)
    ssm = report["models"]["SSMForecaster (S5)"]
    assert ssm["test"]["seeds"] == [0] and ssm["test"]["mae_std"] is None  # quick: one seed
    assert ssm["chosen"]["window_norm"] == "mean"  # raw series, window normalisation
    assert sorted(report["ranking"]) == sorted(report["models"])
    maes = [report["models"][n]["test"]["mae"] for n in report["ranking"]]
    assert maes == sorted(maes)
    assert "ETS (52-week season)" in report["omitted"]
    assert report["n_missing"] == 59
    out = capsys.readouterr().out
    assert "59 missing weeks" in out and "<- chosen" in out and "validation MAE" in out
    assert "smoke test" in out and "rank" in out and "lowest test MAE" in out
    assert "quadratic" not in out  # no detrending crutch
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "forecast.png skipped" in out
    else:
        assert (tmp_path / "forecast.png").stat().st_size > 10_000


def test_full_run_candidates_and_seeds():
    """The full run's plan: 3 SSM candidates and 3 seeds, 4 UC and 2 ETS candidates."""
    models, omitted = demo._models(quick=False)
    by_name = {m.name: m for m in models}
    if "SSMForecaster (S5)" in by_name:
        ssm = by_name["SSMForecaster (S5)"]
        assert len(ssm.candidates) == 3 and ssm.seeds == (0, 1, 2)
        assert {(c["lookback"], c["lr"]) for c in ssm.candidates} == {
            (52, 1e-2), (104, 1e-2), (104, 3e-3)}
    assert len(by_name["UnobservedComponents"].candidates) == 4
    assert len(by_name["ETS (52-week season)"].candidates) == 2
    assert all(m.seeds == (0,) for m in models if not m.name.startswith("SSM"))
    assert "ETS (52-week season)" not in omitted


def test_no_test_week_reaches_the_choice():
    """Poisoned test weeks change the test scores only, never the validation scores or choice."""
    from ssmts.estimators.baselines import SeasonalNaiveForecaster
    from ssmts.estimators.classical import StatsmodelsForecaster

    df = demo._load_co2()
    train, val, test = demo._split(df, quick=True)
    model = demo._Model(
        "toy", [{"kind": "naive"}, {"kind": "uc"}],
        lambda s, seed: (SeasonalNaiveForecaster(52) if s["kind"] == "naive" else
                         StatsmodelsForecaster(seasonal_periods=52.18, harmonics=2,
                                               trend="smooth trend", maxiter=30)),
        lambda s: s["kind"])
    quiet = lambda line: None  # noqa: E731
    clean, _ = demo._evaluate(model, train, val, test, log=quiet)
    poisoned_test = test.assign(co2=test["co2"] + 1000.0)
    poisoned, _ = demo._evaluate(model, train, val, poisoned_test, log=quiet)
    for a, b in zip(clean["candidates"], poisoned["candidates"]):
        assert a["validation_mae"] == b["validation_mae"]
    assert clean["chosen"] == poisoned["chosen"]
    assert poisoned["test"]["mae"] > 900 > clean["test"]["mae"]
    with pytest.raises(RuntimeError, match="not the scored weeks"):  # a gap is caught
        demo._evaluate(model, train, val, test.iloc[1:], log=quiet)


def test_split_is_consecutive():
    idx = pd.date_range("2000-01-01", periods=600, freq="W-SAT")
    df = pd.DataFrame({"co2": np.arange(600.0)}, index=idx)
    train, val, test = demo._split(df, quick=False)
    assert len(test) == len(val) == 104 and len(train) == 392
    assert train.index[-1] < val.index[0] and val.index[-1] < test.index[0]
    assert pd.concat([train, val, test]).index.equals(idx)
