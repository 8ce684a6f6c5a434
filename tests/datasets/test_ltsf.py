"""ssmts.datasets.ltsf: the long-horizon protocol's borders, windows and anchors on real data.

Needs the files in ``$SSMTS_DATA`` (default ``../shared/data`` beside the repository);
every test skips, saying so, when they are absent.
"""

import numpy as np
import pytest
from ssmts.datasets.ltsf import data_dir, load_ltsf, repeat_last, ridge_ci


def _need(name: str):
    path = data_dir() / f"{name}.csv.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found: the real data sets live outside the repository "
                    "(set SSMTS_DATA to the folder holding ETTh1.csv.gz etc.)")
    return load_ltsf(path)


@pytest.fixture(scope="module")
def etth1():
    return _need("ETTh1")


def test_etth1_borders_scaling_and_window_counts(etth1):
    assert etth1.borders == (8640, 11520, 14400)
    assert etth1.values.shape == (14400, 7)
    assert etth1.columns[-1] == "OT"
    train = etth1.values[:8640]
    np.testing.assert_allclose(train.mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(train.std(0), 1, atol=1e-10)  # population std
    assert [etth1.n_windows(s, 96) for s in ("train", "val", "test")] == [8449, 2785, 2785]
    x, y = etth1.windows("test", 96)
    assert x.shape == (2785, 96, 7) and y.shape == (2785, 96, 7)
    # first test window: inputs rows [11424, 11520), targets [11520, 11616)
    np.testing.assert_array_equal(x[0], etth1.values[11424:11520])
    np.testing.assert_array_equal(y[-1], etth1.values[14400 - 96:14400])


def test_ettm_borders_times_four():
    d = _need("ETTm1")
    assert d.borders == (34560, 46080, 57600)


def test_repeat_last_anchors(etth1):
    r = repeat_last(etth1, 96)
    assert r["n_windows"] == 2785
    assert abs(r["mse"] - 1.294) < 1e-3 and abs(r["mae"] - 0.713) < 1e-3
    ex = _need("exchange_rate")
    assert ex.borders == (5311, 6071, 7588)
    r = repeat_last(ex, 96)
    assert abs(r["mse"] - 0.081) < 1e-3 and abs(r["mae"] - 0.196) < 1e-3


def test_ridge_anchor_etth1(etth1):
    r = ridge_ci(etth1, 96)
    assert abs(r["mse"] - 0.383) < 0.015
    assert r["mse"] < repeat_last(etth1, 96)["mse"]
    assert r["weights"].shape == (96, 96)


def test_missing_file_names_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SSMTS_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="SSMTS_DATA"):
        load_ltsf("ETTh1")
