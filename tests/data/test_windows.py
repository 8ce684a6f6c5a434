"""Training windows, train/val split and scalers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ssmts.data import (IdentityScaler, MeanStdScaler, align_exog, make_scaler, make_windows,
                        scaler_from_dict, to_series_data, train_val_split)

RNG = np.random.default_rng(2)


def _long(lengths=(30, 17)):
    """Long data whose value encodes (series, position): 1000 * s + t."""
    frames = [pd.DataFrame({"id": f"s{s}", "t": np.arange(L) * 2.0 + 0.5 * s,
                            "v": 1000.0 * s + np.arange(L), "w": -1000.0 * s - np.arange(L)})
              for s, L in enumerate(lengths)]
    return to_series_data(pd.concat(frames, ignore_index=True), id_col="id", time_col="t")


def test_window_shapes_order_and_no_crossing():
    data = _long()
    w, dropped = make_windows(data, lookback=5, horizon=3, stride=2)
    n_expected = sum((L - 8) // 2 + 1 for L in (30, 17))
    assert dropped == 0 and len(w["series"]) == n_expected
    assert w["context"].shape == (n_expected, 5, 2) and w["target"].shape == (n_expected, 3, 2)
    assert w["context_gaps"].shape == (n_expected, 5) and w["future_gaps"].shape == (n_expected, 3)
    assert w["context_mask"].dtype == bool and w["context_mask"].all()
    full = np.concatenate([w["context"], w["target"]], axis=1)[..., 0]  # (n_win, 8)
    series, pos = np.divmod(full, 1000.0)
    assert (series == w["series"][:, None]).all()  # one series per window
    np.testing.assert_array_equal(np.diff(pos, axis=1), 1.0)  # consecutive steps
    np.testing.assert_array_equal(pos[:, 5], w["target_start"])
    for s, L in enumerate((30, 17)):  # the last window ends at each series' end
        assert pos[w["series"] == s, -1].max() == L - 1
    np.testing.assert_array_equal(w["future_gaps"], 1.0)  # t step 2 -> gaps of one step


def test_windows_skip_padding_of_short_series():
    data = _long((30, 9))
    w, _ = make_windows(data, lookback=6, horizon=3)
    assert (w["series"] == 1).sum() == 1  # only 9 real steps: one window, no padding used
    with pytest.raises(ValueError, match="longest series has 30"):
        make_windows(data, lookback=28, horizon=3)
    with pytest.raises(ValueError, match="horizon"):
        make_windows(data, lookback=2, horizon=0)


def test_all_missing_target_is_dropped_and_counted():
    v = RNG.normal(size=(20, 2))
    v[10:13] = np.nan  # a three-step hole in both channels
    v[15, 0] = np.nan
    data = to_series_data(v)
    w, dropped = make_windows(data, lookback=4, horizon=2)
    starts = np.arange(0, 15)  # every window of width 6 (stride 1)
    all_missing = [s for s in starts if np.isnan(v[s + 4:s + 6]).all()]
    assert dropped == len(all_missing) == 2
    assert len(w["series"]) == 15 - 2
    assert w["target_mask"].any(axis=(1, 2)).all()
    ctx_nan = np.isnan(w["context"])
    np.testing.assert_array_equal(ctx_nan, ~w["context_mask"])  # NaN kept, masked, not filled
    w0, _ = make_windows(data, lookback=4, horizon=2, fill_value=0.0)
    assert not np.isnan(w0["context"]).any()
    np.testing.assert_array_equal(w0["context_mask"], w["context_mask"])


def test_irregular_gaps_and_exog_in_windows():
    secs = np.cumsum(RNG.uniform(1, 5, size=12))
    idx = pd.Timestamp("2020") + pd.to_timedelta(secs, unit="s")
    y = pd.DataFrame({"y": RNG.normal(size=12)}, index=idx)
    X = pd.DataFrame({"x": np.arange(12.0)}, index=idx)
    data = to_series_data(y)
    ex = align_exog(X, data)
    w, _ = make_windows(data, lookback=3, horizon=2, exog=ex)
    held = (idx - idx[0]).total_seconds().to_numpy()  # the stamps as stored (us rounding)
    gaps = np.concatenate([[1.0], np.diff(held) / np.median(np.diff(held))])
    for i, start in enumerate(w["target_start"]):
        np.testing.assert_allclose(w["context_gaps"][i], gaps[start - 3:start])
        np.testing.assert_allclose(w["future_gaps"][i], gaps[start:start + 2])
        np.testing.assert_array_equal(w["future_exog"][i, :, 0], [start, start + 1])
        np.testing.assert_array_equal(w["context_exog"][i, :, 0], np.arange(start - 3, start))
    with pytest.raises(ValueError, match="exog"):
        make_windows(data, 3, 2, exog=ex[:, :5])


def test_train_val_split_keeps_lookback():
    data = _long((30, 17))
    train, val = train_val_split(data, val_size=4, lookback=5)
    np.testing.assert_array_equal(train.lengths, [26, 13])
    np.testing.assert_array_equal(val.lengths, [9, 9])
    np.testing.assert_array_equal(val.values[1, :, 0], 1000.0 + np.arange(8, 17))
    assert train.index_meta.last == (50.0, 24.5)
    w, _ = make_windows(val, lookback=5, horizon=2)
    pos = w["target"][..., 0] % 1000.0
    assert (pos[w["series"] == 0] >= 26).all() and (pos[w["series"] == 1] >= 13).all()
    tr, va = train_val_split(data, val_size=0.25)
    np.testing.assert_array_equal(va.lengths, [8, 4])  # round(30 / 4), round(17 / 4)
    np.testing.assert_array_equal(va.gaps[:, 0], 1.0)  # real gap before the split, one step
    with pytest.raises(ValueError, match="too few"):
        train_val_split(data, val_size=10, lookback=7)


@pytest.mark.parametrize("by", ["series", "channel", "global"])
def test_mean_std_scaler_nan_aware_and_invertible(by):
    v = RNG.normal(loc=[[[5.0, -3.0]]], scale=[[[2.0, 0.5]]], size=(3, 40, 2))
    mask = RNG.uniform(size=v.shape) > 0.2
    v_nan = np.where(mask, v, np.nan)
    sc = MeanStdScaler(by=by).fit(v_nan)
    axes = {"series": (1,), "channel": (0, 1), "global": (0, 1, 2)}[by]
    ref_mean = np.nanmean(v_nan, axis=axes, keepdims=True)  # numpy's own NaN statistics
    np.testing.assert_allclose(sc.mean_, ref_mean, rtol=1e-12)
    sc2 = MeanStdScaler(by=by).fit(np.where(mask, v, 1e6), mask)  # mask hides garbage
    np.testing.assert_allclose(sc2.std_, sc.std_, rtol=1e-12)
    z = sc.transform(v_nan)
    assert np.isnan(z[~mask]).all()
    np.testing.assert_allclose(np.nanmean(z, axis=axes), 0.0, atol=1e-12)
    np.testing.assert_allclose(sc.inverse_transform(z)[mask], v[mask], rtol=1e-12)
    q = np.stack([v, v + 1.0])  # (n_q, n_series, T, C), a quantile axis in front
    back = sc.inverse_transform(q)
    np.testing.assert_allclose(back[1] - back[0], np.broadcast_to(sc.std_, z.shape), rtol=1e-12)
    again = scaler_from_dict(json.loads(json.dumps(sc.to_dict())))
    np.testing.assert_array_equal(again.transform(v_nan), z)


def test_scaler_windows_constant_and_identity():
    v = np.concatenate([np.full((1, 10, 1), 7.0), RNG.normal(size=(1, 10, 1))])  # (2, 10, 1)
    sc = MeanStdScaler().fit(v)
    assert sc.std_[0, 0, 0] == 1.0 and sc.mean_[0, 0, 0] == 7.0  # constant series: centred only
    win = v[[1, 0, 1], :4]  # (3 windows, 4, 1)
    np.testing.assert_allclose(sc.transform(win, series=[1, 0, 1]), sc.transform(v)[[1, 0, 1], :4])
    with pytest.raises(ValueError, match="series="):
        sc.transform(np.ones((3, 4, 1)))
    with pytest.raises(ValueError, match="not fitted"):
        MeanStdScaler().transform(v)
    ident = make_scaler(None).fit(v)
    assert isinstance(ident, IdentityScaler) and np.array_equal(ident.inverse_transform(v), v)
    assert isinstance(scaler_from_dict(ident.to_dict()), IdentityScaler)
    with pytest.raises(ValueError, match="scaler"):
        make_scaler("minmax")
