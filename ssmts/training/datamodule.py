"""Time-ordered windows for training: the training part and the validation tail.

The estimator hands over already scaled arrays (NaN kept, masks given); this
module splits each series on time with :func:`ssmts.data.train_val_split`
(validation = the last ``val_size`` steps, with ``lookback`` steps of context in
front), cuts windows with :func:`ssmts.data.make_windows` and serves them as
float32 tensors (missing values set to 0; the masks say which).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ssmts.data import SeriesData, make_windows, train_val_split

__all__ = ["WindowDataset", "ForecastDataModule", "windows_to_tensors"]

_KEYS = ("context", "context_mask", "context_gaps", "target", "target_mask", "future_gaps",
         "context_exog", "future_exog")


def windows_to_tensors(win: dict) -> dict:
    """``make_windows`` output -> dict of float32 tensors (NaN -> 0, masks as 0/1)."""
    out = {}
    for k in _KEYS:
        if k in win:
            a = np.nan_to_num(np.asarray(win[k], dtype=np.float64), nan=0.0)
            out[k] = torch.as_tensor(a, dtype=torch.float32)
    return out


class WindowDataset(Dataset):
    """Indexable view of a dict of window tensors (first axis = window)."""

    def __init__(self, tensors: dict):
        self.tensors = tensors

    def __len__(self) -> int:
        return int(self.tensors["context"].shape[0])

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self.tensors.items()}


def _with_exog(data: SeriesData, exog: np.ndarray | None, start, stop):
    return None if exog is None else np.stack(
        [np.pad(exog[s, a:b], ((0, exog.shape[1] - (b - a)), (0, 0)))[:int(max(stop - start))]
         for s, (a, b) in enumerate(zip(start, stop))])


class ForecastDataModule(L.LightningDataModule):
    """Windows of scaled series, with the validation tail held out in time.

    Parameters
    ----------
    data : SeriesData, scaled values (NaN where missing)
    lookback, horizon, stride : int
    batch_size : int
    val_size : int or float; 0 = no validation
    exog : float array, shape (n_series, T, C_x), scaled covariates, optional
    seed : int or None, seeds the shuffling of training windows

    Attributes
    ----------
    n_train, n_val : int, number of windows
    """

    def __init__(self, data: SeriesData, lookback: int, horizon: int, batch_size: int = 32,
                 val_size: int | float = 0, stride: int = 1, exog: np.ndarray | None = None,
                 seed: int | None = None):
        super().__init__()
        self.batch_size, self.seed = batch_size, seed
        self.train_t, self.val_t = self._split(data, lookback, horizon, val_size, stride, exog)
        self.n_train = len(WindowDataset(self.train_t))
        self.n_val = 0 if self.val_t is None else len(WindowDataset(self.val_t))

    @staticmethod
    def _split(data, lookback, horizon, val_size, stride, exog):
        if not val_size:
            win, _ = make_windows(data, lookback, horizon, stride, exog)
            return windows_to_tensors(win), None
        train, val = train_val_split(data, val_size, lookback)
        L_ = data.lengths
        v = val.lengths - lookback
        ex_tr = _with_exog(data, exog, np.zeros_like(L_), L_ - v)
        ex_va = _with_exog(data, exog, L_ - v - lookback, L_)
        win_tr, _ = make_windows(train, lookback, horizon, stride, ex_tr)
        win_va, _ = make_windows(val, lookback, horizon, 1, ex_va)
        return windows_to_tensors(win_tr), windows_to_tensors(win_va)

    def train_dataloader(self) -> DataLoader:
        g = None
        if self.seed is not None:
            g = torch.Generator().manual_seed(int(self.seed))
        return DataLoader(WindowDataset(self.train_t), batch_size=self.batch_size, shuffle=True,
                          generator=g)

    def val_dataloader(self):
        if self.val_t is None:
            return []
        return DataLoader(WindowDataset(self.val_t), batch_size=self.batch_size, shuffle=False)
