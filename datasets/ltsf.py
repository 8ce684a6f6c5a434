"""Long-horizon forecasting sets (ETTh1/2, ETTm1/2, exchange_rate, ...) under the standard protocol.

The protocol (``../shared/data/README.md``), lookback L (96 in the published tables):

* ETT hourly files (name starting with ``ETTh``): train rows [0, 8640), validation
  [8640 - L, 11520), test [11520 - L, 14400); rows from 14400 on are never used.
  ETT 15-minute files (``ETTm``): the same borders times 4.
* Any other file: ``n_train = int(0.7 N)``, ``n_test = int(0.2 N)``, validation the
  rest; train [0, n_train), val [n_train - L, n_train + n_val), test [N - n_test - L, N).
* One StandardScaler (population std) fitted on the training rows of all channels,
  applied to the whole file; metrics are on the scaled values, over every window
  (stride 1), horizon step and channel.

``load_ltsf`` returns an :class:`LTSFData` with the scaled array, the borders and
window helpers; :func:`repeat_last` and :func:`ridge_ci` are the two anchors (the
last value repeated; a channel-independent ridge from L inputs to H outputs on
mean-removed windows, regularisation chosen on validation), both in closed form
with numpy.

The data files are never copied into the repository: ``load_ltsf`` takes a path, or
a name looked up in ``$SSMTS_DATA`` (default ``../shared/data`` beside the repository).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

__all__ = [
    "RIDGE_ALPHAS",
    "SPLITS",
    "LTSFData",
    "data_dir",
    "find_file",
    "load_ltsf",
    "repeat_last",
    "ridge_ci",
]

SPLITS = ("train", "val", "test")
RIDGE_ALPHAS = (1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5)
_ETT_HOURLY = (12 * 30 * 24, 16 * 30 * 24, 20 * 30 * 24)  # 8640, 11520, 14400
_CHUNK = 4096


def data_dir() -> Path:
    """``$SSMTS_DATA``, else ``../shared/data`` beside the repository (may not exist)."""
    env = os.environ.get("SSMTS_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def find_file(name_or_path) -> Path:
    """A data file from a path, or from a set name (``"ETTh1"``, ``"exchange_rate"``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    base = data_dir()
    for cand in (base / p.name, base / f"{p.name}.csv.gz", base / f"{p.name}.csv"):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"{name_or_path!r}: no such file, and no {p.name}[.csv.gz] in the "
                            f"data folder {base} (set SSMTS_DATA to the folder holding the "
                            "files, or pass a path)")


def _stem(path: Path) -> str:
    name = path.name
    for suf in (".gz", ".csv"):
        name = name.removesuffix(suf)
    return name


def borders_for(name: str, n_rows: int) -> tuple[int, int, int]:
    """(end of train, end of val, end of test) rows of the protocol for a file name."""
    if name.startswith("ETTh"):
        b = _ETT_HOURLY
    elif name.startswith("ETTm"):
        b = tuple(4 * x for x in _ETT_HOURLY)
    else:
        n_train, n_test = int(0.7 * n_rows), int(0.2 * n_rows)
        n_val = n_rows - n_train - n_test
        b = (n_train, n_train + n_val, n_rows)
    if b[2] > n_rows:
        raise ValueError(f"{name}: {n_rows} rows, fewer than the protocol's test end {b[2]}")
    return b


@dataclasses.dataclass
class LTSFData:
    """A set scaled under the protocol.

    Attributes
    ----------
    name : str, set name (file name without .csv[.gz])
    values : float64 array (n_rows, C), scaled rows [0, borders[2]) (rows after are dropped)
    columns : tuple of str
    borders : (train_end, val_end, test_end)
    lookback : int
    mean, std : float64 arrays (C,), the scaler (population std of the training rows)
    dates : numpy datetime64 array (n_rows,), the file's stamps
    """

    name: str
    values: np.ndarray
    columns: tuple
    borders: tuple
    lookback: int
    mean: np.ndarray
    std: np.ndarray
    dates: np.ndarray

    @property
    def n_channels(self) -> int:
        return self.values.shape[1]

    def rows(self, split: str) -> tuple[int, int]:
        """[start, stop) rows whose windows make up ``split`` (context rows included)."""
        b1, b2, b3 = self.borders
        L = self.lookback
        r = {"train": (0, b1), "val": (b1 - L, b2), "test": (b2 - L, b3)}
        if split not in r:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        return r[split]

    def n_windows(self, split: str, horizon: int) -> int:
        a, b = self.rows(split)
        return max(0, b - a - self.lookback - horizon + 1)

    def windows(self, split: str, horizon: int, start: int = 0, stop: int | None = None):
        """Inputs (n, L, C) and targets (n, H, C) of the split, stride 1, every window.

        Read-only views into ``values`` (no copy); ``start`` / ``stop`` select windows.
        """
        a, b = self.rows(split)
        L, H = self.lookback, int(horizon)
        n = self.n_windows(split, H)
        if n <= 0:
            raise ValueError(f"{self.name} {split}: rows [{a}, {b}) hold no window of "
                             f"lookback {L} + horizon {H}")
        w = np.lib.stride_tricks.sliding_window_view(self.values[a:b], L + H, axis=0)
        w = w[:n][start:stop].transpose(0, 2, 1)  # (n, L + H, C)
        return w[:, :L], w[:, L:]

    def series_windows(self, split: str, horizon: int, channel: int):
        """Univariate windows of one channel: inputs (n, L), targets (n, H), views."""
        a, b = self.rows(split)
        L, H = self.lookback, int(horizon)
        n = self.n_windows(split, H)
        w = np.lib.stride_tricks.sliding_window_view(self.values[a:b, channel], L + H)[:n]
        return w[:, :L], w[:, L:]


def load_ltsf(name_or_path, lookback: int = 96) -> LTSFData:
    """Read, cut and scale a set by the protocol (see the module docstring)."""
    import pandas as pd

    path = find_file(name_or_path)
    name = _stem(path)
    df = pd.read_csv(path)
    date_col = "date" if "date" in df.columns else df.columns[0]
    dates = pd.to_datetime(df[date_col]).to_numpy()
    df = df.drop(columns=[date_col])
    x = df.to_numpy(np.float64)
    b = borders_for(name, len(x))
    if b[0] - lookback < 1:
        raise ValueError(f"lookback {lookback}: larger than the training part ({b[0]} rows)")
    x = x[: b[2]]
    mean, std = x[: b[0]].mean(0), x[: b[0]].std(0)  # ddof=0: population std
    std = np.where(std > 0, std, 1.0)
    return LTSFData(name, (x - mean) / std, tuple(str(c) for c in df.columns), b,
                    int(lookback), mean, std, dates[: b[2]])


def _metrics_acc():
    return {"se": 0.0, "ae": 0.0, "n": 0}


def repeat_last(data: LTSFData, horizon: int, split: str = "test") -> dict:
    """MSE / MAE of repeating each window's last input value over the horizon."""
    acc = _metrics_acc()
    n = data.n_windows(split, horizon)
    for s in range(0, n, _CHUNK):
        x, y = data.windows(split, horizon, s, s + _CHUNK)
        err = y - x[:, -1:, :]
        acc["se"] += float(np.sum(err ** 2))
        acc["ae"] += float(np.sum(np.abs(err)))
        acc["n"] += err.size
    return {"mse": acc["se"] / acc["n"], "mae": acc["ae"] / acc["n"], "n_windows": n}


def _ci_stats(data: LTSFData, split: str, horizon: int):
    """Sufficient statistics of the mean-removed univariate windows of every channel.

    Returns A = X'X (L, L), B = X'Y (L, H), yy = sum Y^2, count of Y entries.
    """
    L, H = data.lookback, int(horizon)
    A, B, yy, cnt = np.zeros((L, L)), np.zeros((L, H)), 0.0, 0
    for c in range(data.n_channels):
        X, Y = data.series_windows(split, H, c)
        for s in range(0, len(X), _CHUNK):
            xs, ys = X[s:s + _CHUNK], Y[s:s + _CHUNK]
            mu = xs.mean(1, keepdims=True)
            xc, yc = xs - mu, ys - mu
            A += xc.T @ xc
            B += xc.T @ yc
            yy += float(np.sum(yc ** 2))
            cnt += yc.size
    return A, B, yy, cnt


def _ci_eval(data: LTSFData, split: str, horizon: int, W: np.ndarray) -> dict:
    """MSE / MAE of the channel-independent linear map W (L, H) on every window of split."""
    se = ae = 0.0
    cnt = 0
    for c in range(data.n_channels):
        X, Y = data.series_windows(split, horizon, c)
        for s in range(0, len(X), _CHUNK):
            xs, ys = X[s:s + _CHUNK], Y[s:s + _CHUNK]
            mu = xs.mean(1, keepdims=True)
            err = (xs - mu) @ W + mu - ys
            se += float(np.sum(err ** 2))
            ae += float(np.sum(np.abs(err)))
            cnt += err.size
    return {"mse": se / cnt, "mae": ae / cnt, "n_windows": data.n_windows(split, horizon)}


def ridge_ci(data: LTSFData, horizon: int, alphas=RIDGE_ALPHAS) -> dict:
    """Channel-independent ridge from L mean-removed inputs to H outputs.

    One map (L, H) shared by every channel, fitted on all training windows of all
    channels (each window centred on its input mean, no intercept) through the
    normal equations; ``alpha`` is picked from ``alphas`` by validation MSE
    (computed exactly from the validation windows' sufficient statistics); the
    chosen map is scored on every test window.

    Returns
    -------
    dict: mse, mae (test), alpha, val_mse (of the chosen alpha), val_mse_by_alpha,
    n_windows (test), weights (L, H)
    """
    A, B, _, _ = _ci_stats(data, "train", horizon)
    Av, Bv, yyv, nv = _ci_stats(data, "val", horizon)
    eye = np.eye(A.shape[0])
    by_alpha, maps = {}, {}
    for a in alphas:
        W = np.linalg.solve(A + float(a) * eye, B)
        se = float(np.sum(W * (Av @ W)) - 2 * np.sum(W * Bv) + yyv)
        by_alpha[float(a)], maps[float(a)] = se / nv, W
    best = min(by_alpha, key=by_alpha.get)
    res = _ci_eval(data, "test", horizon, maps[best])
    res.update(alpha=best, val_mse=by_alpha[best], val_mse_by_alpha=by_alpha,
               weights=maps[best])
    return res
