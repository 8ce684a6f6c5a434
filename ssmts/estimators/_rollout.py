"""The forecast origin of SSMForecaster: building it, stepping it, rolling forecasts off it.

Private helpers of :mod:`ssmts.estimators.forecaster`; they trust their inputs
(the estimator validated them). The *origin* is the dict of
:meth:`ssmts.models.ForecastNet.initial_state`: the backbone's recurrent state,
its last output (``hidden``), the time since the last observed row
(``pending``) and, with window normalisation, the context statistics
(``loc``, ``scale``) that every step and every forecast uses.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from ssmts.data import SeriesData

__all__ = ["advance", "origin_from_tail", "rollout", "interp_quantiles", "last_time",
           "times_after", "pad_stamps", "append_tail"]


def _select(keep: torch.Tensor, new, old):
    """Per batch row, ``new`` where keep else ``old``, through lists / tuples / dicts of tensors."""
    if isinstance(new, dict):
        return {k: _select(keep, new[k], old[k]) for k in new}
    if isinstance(new, (list, tuple)):
        return type(new)(_select(keep, n, o) for n, o in zip(new, old))
    return torch.where(keep.reshape(-1, *([1] * (new.ndim - 1))), new, old)


@torch.no_grad()
def advance(net, origin: dict, scaled: SeriesData, exog: np.ndarray | None) -> dict:
    """Step the origin over every valid row of ``scaled`` (padding rows leave it as is).

    Parameters
    ----------
    net : ForecastNet (eval mode)
    origin : dict from ``net.initial_state`` / a previous step, batch n_series
    scaled : SeriesData, globally scaled values, n_series series
    exog : float array, shape (n_series, T, C_x), scaled covariates on scaled's rows, or None
    """
    v = torch.tensor(np.nan_to_num(scaled.values), dtype=torch.float32)  # (n, T, C)
    m = torch.tensor(np.array(scaled.mask), dtype=torch.float32)
    g = torch.tensor(scaled.gaps, dtype=torch.float32)  # (n, T)
    ex = None if exog is None else torch.as_tensor(exog, dtype=torch.float32)
    valid = net.fold_rows(torch.tensor(scaled.valid))  # (B, T)
    for t in range(scaled.n_steps):
        new = net.step(v[:, t], m[:, t], g[:, t], origin, None if ex is None else ex[:, t])
        origin = _select(valid[:, t], new, origin)
    return origin


@torch.no_grad()
def origin_from_tail(net, scaled_tail: SeriesData, exog: np.ndarray | None) -> dict:
    """A fresh origin stepped over a context tail (at most ``lookback`` rows per series).

    With window normalisation the statistics are those of the tail's observed
    values, as for a training window.
    """
    stats = None
    if getattr(net, "window_norm", None) is not None:
        v = torch.tensor(np.nan_to_num(scaled_tail.values), dtype=torch.float32)  # (n, T, C)
        m = torch.tensor(np.array(scaled_tail.mask), dtype=torch.float32)
        stats = net.window_stats(v, m)
    origin = net.initial_state(scaled_tail.n_series, stats)
    return advance(net, origin, scaled_tail, exog)


@torch.no_grad()
def rollout(net, origin: dict, fgaps: np.ndarray, fex: np.ndarray | None, horizon: int,
            point) -> np.ndarray:
    """Scaled forecasts (n, h, C, n_out) from an origin.

    The direct head gives each block of ``horizon`` steps; the point forecast of a
    block (``point``: (n, hb, C, n_out) array -> (n, hb, C)) is fed back through
    ``net.step`` before the next block.

    Parameters
    ----------
    fgaps : float array, shape (n, h), gap before each future step
    fex : float array, shape (n, h, C_x), scaled future covariates, or None
    """
    g = torch.as_tensor(fgaps, dtype=torch.float32)  # (n, h)
    ex = None if fex is None else torch.as_tensor(fex, dtype=torch.float32)
    outs = []
    for a in range(0, g.shape[1], horizon):
        gb = g[:, a:a + horizon]  # (n, hb)
        exb = None if ex is None else ex[:, a:a + horizon]
        tau = torch.cumsum(net.fold_rows(gb), dim=1) + origin["pending"][:, None]
        out = net.decode(origin["hidden"], tau, exb, net.origin_stats(origin))  # (n, hb, C, q)
        outs.append(out)
        if a + horizon < g.shape[1]:
            pt = torch.as_tensor(point(out.numpy()), dtype=torch.float32)  # (n, hb, C)
            ones = torch.ones_like(pt[:, 0])
            for t in range(gb.shape[1]):
                origin = net.step(pt[:, t], ones, gb[:, t], origin,
                                  None if exb is None else exb[:, t])
    return torch.cat(outs, dim=1).numpy().astype(np.float64)


def interp_quantiles(out: np.ndarray, q, levels) -> np.ndarray:
    """Linear interpolation along the last axis of ``out`` from levels q to ``levels``."""
    idx = np.clip(np.searchsorted(q, levels, side="right") - 1, 0, len(q) - 2) \
        if len(q) > 1 else np.zeros(len(levels), dtype=int)
    if len(q) == 1:
        return out[..., idx]
    q = np.asarray(q)
    w = (np.asarray(levels) - q[idx]) / (q[idx + 1] - q[idx])  # (n_levels,)
    return out[..., idx] * (1 - w) + out[..., idx + 1] * w


def last_time(ctx: SeriesData) -> np.ndarray:
    """Numeric time (n,) of each series' last row."""
    return ctx.time[np.arange(ctx.n_series), ctx.lengths - 1]


def times_after(ctx: SeriesData, stamps, name: str = "y") -> np.ndarray:
    """Numeric times (n, h) of per-series future stamps; each must follow ctx's end."""
    meta = ctx.index_meta
    times = np.stack([meta.to_steps(st, s) for s, st in enumerate(stamps)])  # (n, h)
    last = last_time(ctx)
    if np.any(times[:, 0] <= last):
        s = int(np.argmax(times[:, 0] <= last))
        raise ValueError(f"{name}: its first stamp {stamps[s][0]} is not after the forecast "
                         f"origin {meta.last[s]} (series {ctx.ids[s]!r}); pass data that "
                         "follows what the model has seen")
    return times


def pad_stamps(st: pd.Index, h: int) -> pd.Index:
    """Extend stamps to length h by repeating its spacing (padding of shorter series)."""
    if len(st) >= h:
        return st
    step = st[-1] - st[-2] if len(st) > 1 else None
    extra = [st[-1] + step * (k + 1) for k in range(h - len(st))] if step is not None \
        else [st[-1]] * (h - len(st))
    return st.append(pd.Index(extra))


def append_tail(old: SeriesData, new: SeriesData, keep: int) -> SeriesData:
    """The last ``keep`` rows of old followed by new, per series (both on old's time origin)."""
    n, C = old.n_series, old.n_channels
    blocks = []
    for s in range(n):
        a, b = old.lengths[s], new.lengths[s]
        v = np.concatenate([old.values[s, :a], new.values[s, :b]])[-keep:]
        t = np.concatenate([old.time[s, :a], new.time[s, :b]])[-keep:]
        st = old.stamps[s].append(new.stamps[s])[-keep:]
        blocks.append((v, t, st))
    T = max(len(bl[0]) for bl in blocks)
    vals = np.full((n, T, C), np.nan)
    time = np.empty((n, T))
    lengths = np.array([len(bl[0]) for bl in blocks], dtype=np.int64)
    for s, (v, t, _) in enumerate(blocks):
        vals[s, :len(v)], time[s, :len(t)] = v, t
        time[s, len(t):] = t[-1] + np.arange(1, T - len(t) + 1)
    stamps = tuple(bl[2] for bl in blocks)
    meta = dataclasses.replace(old.index_meta, last=tuple(st[-1] for st in stamps))
    lead = np.ones(n)
    return SeriesData(vals, ~np.isnan(vals), time, lengths, stamps, meta, old.source, lead)
