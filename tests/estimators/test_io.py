"""save / load: identical predictions, clear errors for tampered or truncated files."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from ssmts.estimators import SSMForecaster
from ssmts.estimators._io import _config_sha

KW = dict(lookback=12, horizon=3, d_model=8, n_layers=1, d_state=4, max_epochs=1,
          batch_size=64, val_size=0, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    rng = np.random.default_rng(0)
    y = pd.DataFrame(rng.standard_normal((60, 2)).cumsum(0), columns=["p", "q"],
                     index=pd.date_range("2024-01-01", periods=60, freq="h", tz="Europe/Paris"))
    y.iloc[5, 1] = np.nan
    with pytest.warns(UserWarning):
        f = SSMForecaster(backbone="mamba", loss="quantile", quantiles=[0.1, 0.5, 0.9],
                          **KW).fit(y)
    f.update(y.iloc[:0].reindex(pd.date_range(y.index[-1], periods=3, freq="h")[1:]).fillna(0.5))
    path = tmp_path_factory.mktemp("m") / "model"
    f.save(path)
    return f, path


def test_round_trip_identical(saved):
    f, path = saved
    g = SSMForecaster.load(path)
    assert g.get_params() == f.get_params() and g.n_masked_ == 1
    pd.testing.assert_frame_equal(f.predict(7), g.predict(7))
    pd.testing.assert_frame_equal(f.predict_quantiles(3), g.predict_quantiles(3))
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["version"] and len(cfg["weights_sha256"]) == 64 and cfg["format"] == 3
    assert cfg["config_sha256"] == _config_sha(cfg)


def _copy(path, tmp_path):
    dst = tmp_path / "copy"
    dst.mkdir()
    for name in ("model.safetensors", "config.json"):
        (dst / name).write_bytes((path / name).read_bytes())
    return dst


def test_truncated_weights(saved, tmp_path):
    dst = _copy(saved[1], tmp_path)
    raw = (dst / "model.safetensors").read_bytes()
    (dst / "model.safetensors").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match=r"model\.safetensors.*truncated or modified"):
        SSMForecaster.load(dst)


def test_tampered_header(saved, tmp_path):
    dst = _copy(saved[1], tmp_path)
    raw = bytearray((dst / "model.safetensors").read_bytes())
    raw[8:12] = b"XXXX"  # inside the JSON header
    (dst / "model.safetensors").write_bytes(bytes(raw))
    cfg = json.loads((dst / "config.json").read_text())
    import hashlib
    cfg["weights_sha256"] = hashlib.sha256(bytes(raw)).hexdigest()  # hashes forged too
    cfg["config_sha256"] = _config_sha(cfg)
    (dst / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"model\.safetensors.*header is corrupt"):
        SSMForecaster.load(dst)


def test_corrupt_config(saved, tmp_path):
    dst = _copy(saved[1], tmp_path)
    text = (dst / "config.json").read_text()
    (dst / "config.json").write_text(text[: len(text) // 3])
    with pytest.raises(ValueError, match=r"config\.json.*not valid JSON"):
        SSMForecaster.load(dst)
    with pytest.raises(ValueError, match="not found"):
        SSMForecaster.load(tmp_path / "nowhere")


def test_target_transformer_refuses_to_save(saved, tmp_path):
    f = SSMForecaster(target_transformer=StandardScaler(), **KW).fit(np.random.rand(40, 1))
    with pytest.raises(ValueError, match="target_transformer"):
        f.save(tmp_path / "x")


def test_save_load_stamps_past_2262(tmp_path):
    """Microsecond stamps (pandas' default) reach past 2262; saving must not overflow ns."""
    import warnings

    idx = pd.date_range("2200", periods=60, freq="YS", unit="us")
    y = pd.Series(np.sin(np.arange(60) / 3), index=idx, name="v")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = SSMForecaster(lookback=8, horizon=4, d_model=8, n_layers=1, d_state=4, max_epochs=1,
                          val_size=0, random_state=0).fit(y)
    f.save(tmp_path / "m")
    g = SSMForecaster.load(tmp_path / "m")
    pd.testing.assert_series_equal(g.predict(3), f.predict(3))
    assert g.context_.stamps[0].equals(f.context_.stamps[0])
