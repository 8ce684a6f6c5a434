"""The README's main job: ``ssmts demo`` runs end to end (quick mode)."""

from __future__ import annotations

import json
import math

import pytest


def test_run_demo_quick(tmp_path, capsys):
    try:
        from ssmts.estimators import SSMForecaster  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"SSMForecaster is not importable yet ({exc}); the demo needs it")
    from ssmts.demo import run_demo

    assert run_demo(out=str(tmp_path), quick=True) == 0
    report = json.loads((tmp_path / "metrics.json").read_text())
    names = set(report["models"])
    assert names == {"SSMForecaster (S5)", "seasonal naive (52)", "UnobservedComponents"}
    for name, row in report["models"].items():
        for key in ("mae", "mse", "fit_seconds"):
            assert math.isfinite(row[key]) and row[key] >= 0, (name, key, row[key])
        assert row["mae"] ** 2 <= row["mse"] + 1e-9  # Jensen: a cheap sanity check
    assert report["n_missing"] == 59 and report["test_weeks"] == 104
    # the SSM is fitted on the raw series, its window normalisation following the trend
    assert report["ssm_settings"]["window_norm"] == "mean"
    out = capsys.readouterr().out
    assert "59 missing weeks" in out and "MAE" in out and "fit (s)" in out
    assert "quadratic" not in out  # no detrending crutch
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "forecast.png skipped" in out
    else:
        assert (tmp_path / "forecast.png").stat().st_size > 10_000
