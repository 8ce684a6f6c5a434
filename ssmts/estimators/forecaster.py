"""SSMForecaster: a scikit-learn forecaster on a deep state-space backbone.

Data in and out go through :mod:`ssmts.data` (pandas wide / long, Series,
xarray, numpy); the network is :class:`ssmts.models.ForecastNet`; training is
Lightning (:mod:`ssmts.training`). After ``fit`` the *forecast origin* (the
backbone's recurrent state after the last ``lookback`` rows, its last output,
and the time since the last observed row) is kept; ``update`` advances it row
by row in O(new samples), ``predict`` reads forecasts off it.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from ssmts.data import (MeanStdScaler, SeriesData, align_exog, from_predictions, future_times,
                        make_scaler, to_series_data)
from ssmts.models.forecast import ForecastNet

__all__ = ["SSMForecaster"]

_DEFAULT_Q = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)


def _select(keep: torch.Tensor, new, old):
    """Per batch row, ``new`` where keep else ``old``, through lists / tuples / dicts of tensors."""
    if isinstance(new, dict):
        return {k: _select(keep, new[k], old[k]) for k in new}
    if isinstance(new, (list, tuple)):
        return type(new)(_select(keep, n, o) for n, o in zip(new, old))
    return torch.where(keep.reshape(-1, *([1] * (new.ndim - 1))), new, old)


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


class SSMForecaster(BaseEstimator):
    """Forecast one or many multivariate series with an S5 / S4 / Mamba backbone.

    Parameters
    ----------
    backbone : {"s5", "s4", "s4d", "mamba"}
        Sequence layer of the backbone (all causal).
    lookback : int
        Context rows the network reads (training windows and the forecast origin).
    horizon : int
        Steps of the direct multi-horizon head; longer forecasts roll out
        recursively (the model's own point forecasts are fed back through
        its recurrent step).
    d_model, n_layers, d_state, dropout : network size (see ``SSMBackbone``).
    loss : {"mse", "mae", "quantile"}
    quantiles : sequence of float in (0, 1), optional
        Levels learned with ``loss="quantile"`` (default 0.025 ... 0.975, with 0.5).
    channel : {"mixed", "independent"}
        One model over all channels, or a univariate model shared by every channel.
    max_epochs, batch_size, lr : training settings (AdamW).
    lr_schedule : {"cosine", "constant"}
    early_stopping : bool
        Stop when the validation loss stops improving (patience 5) if ``val_size``.
    val_size : int or float
        Validation tail per series, steps (int) or fraction (float); 0 = none.
        Raised to ``horizon``; dropped with a warning when the series are too short.
    scaler : {"series", "channel", "global", "none"}
        NaN-aware standardisation of y (covariates are always standardised per channel).
    stride : int
        Steps between training windows.
    id_col, time_col : label, optional
        Long-format input: series id and time columns.
    device : {"auto", "cpu", "cuda", "gpu", "mps"}
        Training accelerator ("auto" takes a GPU when present). Prediction runs on the CPU.
    trainer_kwargs : dict, optional
        Passed to ``lightning.Trainer`` (devices, strategy, precision, callbacks, ...).
    random_state : int, optional
        Seeds everything (``lightning.seed_everything``); same seed, same predictions on CPU.
    verbose : bool
        Progress bar and model summary.
    target_transformer : sklearn transformer, optional
        Invertible transformer applied to y's values (2-D, one column per variable)
        before fitting; forecasts are inverted back to original units.

    Attributes
    ----------
    net_ : ForecastNet (CPU, eval mode)
    scaler_, exog_scaler_ : fitted scalers
    target_transformer_ : fitted clone of ``target_transformer`` (or None)
    n_features_in_ : int, number of target columns
    feature_names_in_ : ndarray of str, column names (when all are strings)
    n_masked_ : int, missing values in y (masked out of the loss, skipped by the state)
    index_meta_ : TimeIndexMeta of the forecast origin (``last`` = last stamps seen)
    context_ : SeriesData, last ``lookback`` rows seen (target-transformed, unscaled)
    train_loss_, val_loss_ : list of float, loss per epoch
    n_exog_ : int, covariate columns (0 = none)

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> idx = pd.date_range("2024-01-01", periods=300, freq="h")
    >>> df = pd.DataFrame({"a": np.sin(np.arange(300) / 4)}, index=idx)
    >>> f = SSMForecaster(lookback=24, horizon=6, d_model=8, n_layers=1, max_epochs=1,
    ...                   random_state=0).fit(df)
    >>> f.predict(6).index[0]
    Timestamp('2024-01-13 12:00:00')
    """

    def __init__(self, backbone: str = "s5", lookback: int = 96, horizon: int = 24,
                 d_model: int = 64, n_layers: int = 2, d_state: int = 32, dropout: float = 0.1,
                 loss: str = "mse", quantiles=None, channel: str = "mixed",
                 max_epochs: int = 30, batch_size: int = 32, lr: float = 3e-3,
                 lr_schedule: str = "cosine", early_stopping: bool = True,
                 val_size: int | float = 0.2, scaler: str | None = "series", stride: int = 1,
                 id_col=None, time_col=None, device: str = "auto", trainer_kwargs=None,
                 random_state: int | None = None, verbose: bool = False,
                 target_transformer=None):
        self.backbone = backbone
        self.lookback = lookback
        self.horizon = horizon
        self.d_model = d_model
        self.n_layers = n_layers
        self.d_state = d_state
        self.dropout = dropout
        self.loss = loss
        self.quantiles = quantiles
        self.channel = channel
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.early_stopping = early_stopping
        self.val_size = val_size
        self.scaler = scaler
        self.stride = stride
        self.id_col = id_col
        self.time_col = time_col
        self.device = device
        self.trainer_kwargs = trainer_kwargs
        self.random_state = random_state
        self.verbose = verbose
        self.target_transformer = target_transformer

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        for name in ("lookback", "horizon", "d_model", "n_layers", "d_state", "max_epochs",
                     "batch_size", "stride"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise ValueError(f"{name}: expected a positive int, got {v!r}")
        choices = {"backbone": ("s5", "s4", "s4d", "mamba"), "loss": ("mse", "mae", "quantile"),
                   "channel": ("mixed", "independent"), "lr_schedule": ("cosine", "constant")}
        for name, ok in choices.items():
            if getattr(self, name) not in ok:
                raise ValueError(f"{name}: expected one of {list(ok)}, got {getattr(self, name)!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout: expected a float in [0, 1), got {self.dropout!r}")
        if not float(self.lr) > 0:
            raise ValueError(f"lr: expected a positive float, got {self.lr!r}")
        if self.quantiles is not None:
            q = np.asarray(self.quantiles, dtype=float)
            if q.ndim != 1 or q.size == 0 or np.any((q <= 0) | (q >= 1)):
                raise ValueError(f"quantiles: expected levels in (0, 1), got {self.quantiles!r}")

    def _quantile_levels(self) -> tuple | None:
        if self.loss != "quantile":
            return None
        return tuple(sorted(float(x) for x in (self.quantiles or _DEFAULT_Q)))

    def _read(self, y, name: str) -> SeriesData:
        return to_series_data(y, id_col=self.id_col, time_col=self.time_col, name=name)

    def _check_like_fit(self, data: SeriesData, name: str, same_series: bool = True) -> None:
        if list(data.columns) != list(self.columns_):
            raise ValueError(f"{name}: columns {list(data.columns)} differ from those seen in fit "
                             f"{list(self.columns_)}; pass the same columns in the same order")
        if same_series and tuple(data.ids) != tuple(self.context_.ids):
            raise ValueError(f"{name}: series {list(data.ids)} differ from those seen in fit "
                             f"{list(self.context_.ids)}")

    # ------------------------------------------------------------- transforms
    def _forward_target(self, data: SeriesData, fit: bool = False) -> SeriesData:
        """Apply target_transformer(_) to data's values (valid rows only)."""
        if fit:
            self.target_transformer_ = None
        if self.target_transformer is None:
            return data
        valid = data.valid  # (n, T)
        flat = data.values[valid]  # (n_rows, C)
        if fit:
            self.target_transformer_ = clone(self.target_transformer).fit(flat)
        out = np.asarray(self.target_transformer_.transform(flat), dtype=np.float64)
        if out.shape != flat.shape:
            raise ValueError(f"target_transformer: must keep the shape {flat.shape}, got "
                             f"{out.shape}; use a column-wise invertible transformer")
        vals = np.full(data.values.shape, np.nan)
        vals[valid] = out
        vals = np.where(data.mask, vals, np.nan)
        if np.isinf(vals).any() or (np.isnan(vals) & data.mask).any():
            raise ValueError("target_transformer: produced NaN or inf from observed values; "
                             "check that it is defined on y's range")
        return dataclasses.replace(data, values=vals)

    def _inverse_target(self, pred: np.ndarray) -> np.ndarray:
        """Invert target_transformer_ on an array ending in C."""
        if getattr(self, "target_transformer_", None) is None:
            return pred
        C = pred.shape[-1]
        flat = pred.reshape(-1, C)  # (rows, C)
        return np.asarray(self.target_transformer_.inverse_transform(flat)).reshape(pred.shape)

    def _scale(self, data: SeriesData) -> SeriesData:
        return dataclasses.replace(data, values=self.scaler_.transform(data.values))

    def _exog(self, X, data: SeriesData, stamps=None, name: str = "X") -> np.ndarray | None:
        """Scaled covariates on data's stamps (or on future ``stamps``), or None."""
        if self.n_exog_ == 0:
            if X is not None:
                raise ValueError(f"{name}: the model was fitted without covariates; fit(y, X) "
                                 "to use them")
            return None
        if X is None:
            raise ValueError(f"{name}: the model was fitted with {self.n_exog_} covariate "
                             "column(s); pass them for these stamps too")
        ex = align_exog(X, data, future=stamps is not None, stamps=stamps,
                        columns=self.exog_columns_)
        if ex.shape[-1] != self.n_exog_:
            raise ValueError(f"{name}: expected {self.n_exog_} covariate columns as in fit, got "
                             f"{ex.shape[-1]}")
        return self.exog_scaler_.transform(ex)

    # -------------------------------------------------------------------- fit
    def fit(self, y: Any, X: Any = None) -> "SSMForecaster":
        """Train on y (and covariates X); sets the attributes listed in the class docstring.

        Parameters
        ----------
        y : wide / long DataFrame, Series, DataArray, Dataset or array (T, C) / (n, T, C)
            Target series, time ordered; NaN values are masked.
        X : container like y, optional
            Covariates at y's stamps (may also cover future stamps).

        Returns
        -------
        self
        """
        self._check_params()
        raw = self._read(y, "y")
        self.n_masked_ = raw.n_masked
        if self.n_masked_:
            warnings.warn(f"y: {self.n_masked_} of {raw.n_masked + raw.n_observed} values are "
                          "missing (NaN); they are masked out of the loss and skipped by the "
                          "state update", UserWarning, stacklevel=2)
        longest = int(raw.lengths.max())
        if longest < self.lookback + self.horizon:
            raise ValueError(f"y: the longest series has {longest} steps, fewer than lookback + "
                             f"horizon = {self.lookback + self.horizon}; pass a longer series "
                             "or lower lookback / horizon")
        data = self._forward_target(raw, fit=True)
        self.columns_ = tuple(data.columns)
        self.n_features_in_ = len(self.columns_)
        if all(isinstance(c, str) for c in self.columns_):
            self.feature_names_in_ = np.asarray(self.columns_, dtype=object)
        self._fit_exog(X, data)
        self.scaler_ = make_scaler(self.scaler).fit(data.values, data.mask)
        exog = None if self.n_exog_ == 0 else self.exog_scaler_.transform(self._exog_raw)
        del self._exog_raw
        self._train(self._scale(data), exog)
        self._set_origin(data, exog)
        return self

    def _fit_exog(self, X, data: SeriesData) -> None:
        self.n_exog_, self.exog_columns_, self.exog_scaler_ = 0, None, None
        self._exog_raw = None
        if X is None:
            return
        if isinstance(X, pd.DataFrame):
            skip = {self.id_col, self.time_col}
            self.exog_columns_ = tuple(c for c in X.columns if c not in skip)
        elif isinstance(X, pd.Series):
            self.exog_columns_ = (X.name,)
        ex = align_exog(X, data, columns=self.exog_columns_)  # (n, T, C_x)
        self.n_exog_ = ex.shape[-1]
        self.exog_scaler_ = MeanStdScaler(by="channel").fit(ex)
        self._exog_raw = ex

    def _train(self, scaled: SeriesData, exog: np.ndarray | None) -> None:
        """Build net_ and train it with Lightning; sets train_loss_ / val_loss_."""
        import lightning as L

        from ssmts.training import ForecastDataModule, ForecastModule, build_trainer, \
            quiet_lightning

        det = (torch.are_deterministic_algorithms_enabled(),
               torch.is_deterministic_algorithms_warn_only_enabled())
        with quiet_lightning(self.verbose):
            if self.random_state is not None:
                L.seed_everything(int(self.random_state), verbose=False)
            self.net_ = self._build_net()
            dm = self._datamodule(scaled, exog, ForecastDataModule)
            module = ForecastModule(self.net_, self.loss, self._quantile_levels(), float(self.lr),
                                    lr_schedule=self.lr_schedule)
            trainer = build_trainer(self.max_epochs, self.device, self.verbose,
                                    self.early_stopping, dm.n_val > 0,
                                    deterministic=self.random_state is not None,
                                    trainer_kwargs=self.trainer_kwargs)
            try:
                trainer.fit(module, datamodule=dm)
            finally:  # Lightning's deterministic flag is global; give it back
                torch.use_deterministic_algorithms(det[0], warn_only=det[1])
        self.net_ = module.net.cpu().eval()
        self.train_loss_, self.val_loss_ = list(module.train_losses), list(module.val_losses)
        if self.train_loss_ and not np.isfinite(self.train_loss_[-1]):
            warnings.warn("fit: the training loss is not finite; lower lr", UserWarning)

    def _datamodule(self, scaled: SeriesData, exog, cls):
        """Windows with a validation tail, or without when the series are too short."""
        val = self.val_size or 0
        if val:
            v = np.maximum(np.round(scaled.lengths * val) if isinstance(val, float) else val,
                           self.horizon).astype(int)  # (n,)
            if np.all(scaled.lengths - v >= self.lookback + self.horizon):
                return cls(scaled, self.lookback, self.horizon, self.batch_size, int(v.min()),
                           self.stride, exog, self.random_state)
            warnings.warn(f"val_size: the series are too short for a validation tail of {val} "
                          f"plus lookback + horizon = {self.lookback + self.horizon} training "
                          "steps; training without validation", UserWarning)
        return cls(scaled, self.lookback, self.horizon, self.batch_size, 0, self.stride, exog,
                   self.random_state)

    def _build_net(self) -> ForecastNet:
        q = self._quantile_levels()
        return ForecastNet(self.n_features_in_, self.horizon, n_exog=self.n_exog_,
                           n_outputs=1 if q is None else len(q), channel=self.channel,
                           backbone=self.backbone, d_model=self.d_model, n_layers=self.n_layers,
                           d_state=self.d_state, dropout=float(self.dropout))

    # ----------------------------------------------------------------- origin
    @torch.no_grad()
    def _advance(self, origin: dict, scaled: SeriesData, exog: np.ndarray | None) -> dict:
        """Step the origin over every valid row of ``scaled`` (padding rows leave it as is)."""
        net = self.net_
        v = torch.tensor(np.nan_to_num(scaled.values), dtype=torch.float32)  # (n, T, C)
        m = torch.tensor(np.array(scaled.mask), dtype=torch.float32)
        g = torch.tensor(scaled.gaps, dtype=torch.float32)  # (n, T)
        ex = None if exog is None else torch.as_tensor(exog, dtype=torch.float32)
        valid = net.fold_rows(torch.tensor(scaled.valid))  # (B, T)
        for t in range(scaled.n_steps):
            new = net.step(v[:, t], m[:, t], g[:, t], origin, None if ex is None else ex[:, t])
            origin = _select(valid[:, t], new, origin)
        return origin

    def _origin_from(self, data: SeriesData, exog_scaled: np.ndarray | None):
        """(origin, tail) after the last ``lookback`` rows of (target-transformed) data."""
        start = np.maximum(0, data.lengths - self.lookback)
        tail = data.slice_steps(start, data.lengths)
        ex = None
        if exog_scaled is not None:
            ex = np.stack([np.pad(exog_scaled[s, a:b], ((0, tail.n_steps - (b - a)), (0, 0)))
                           for s, (a, b) in enumerate(zip(start, data.lengths))])
        origin = self._advance(self.net_.initial_state(data.n_series), self._scale(tail), ex)
        return origin, tail

    def _set_origin(self, data: SeriesData, exog_scaled) -> None:
        self.origin_, self.context_ = self._origin_from(data, exog_scaled)
        self.index_meta_ = self.context_.index_meta

    # ---------------------------------------------------------------- predict
    def _last_time(self, ctx: SeriesData) -> np.ndarray:
        return ctx.time[np.arange(ctx.n_series), ctx.lengths - 1]  # (n,)

    @torch.no_grad()
    def _rollout(self, origin: dict, fgaps: np.ndarray, fex: np.ndarray | None) -> np.ndarray:
        """Scaled forecasts (n, h, C, n_out): direct head per block of ``horizon`` steps,
        the point forecast of each block fed back through ``step`` before the next."""
        net, H = self.net_, self.horizon
        g = torch.as_tensor(fgaps, dtype=torch.float32)  # (n, h)
        ex = None if fex is None else torch.as_tensor(fex, dtype=torch.float32)
        outs = []
        for a in range(0, g.shape[1], H):
            gb = g[:, a:a + H]  # (n, hb)
            exb = None if ex is None else ex[:, a:a + H]
            tau = torch.cumsum(net.fold_rows(gb), dim=1) + origin["pending"][:, None]
            out = net.decode(origin["hidden"], tau, exb)  # (n, hb, C, n_out)
            outs.append(out)
            if a + H < g.shape[1]:
                point = torch.as_tensor(self._point(out.numpy()), dtype=torch.float32)
                ones = torch.ones_like(point[:, 0])
                for t in range(gb.shape[1]):
                    origin = net.step(point[:, t], ones, gb[:, t], origin,
                                      None if exb is None else exb[:, t])
        return torch.cat(outs, dim=1).numpy().astype(np.float64)

    def _point(self, out: np.ndarray) -> np.ndarray:
        """(..., C, n_out) -> (..., C): the forecast, or the median of sorted quantiles."""
        q = self._quantile_levels()
        if q is None:
            return out[..., 0]
        return self._interp_q(np.sort(out, axis=-1), q, [0.5])[..., 0]

    @staticmethod
    def _interp_q(out: np.ndarray, q, levels) -> np.ndarray:
        """Linear interpolation along the last axis from levels q to ``levels``."""
        idx = np.clip(np.searchsorted(q, levels, side="right") - 1, 0, len(q) - 2) \
            if len(q) > 1 else np.zeros(len(levels), dtype=int)
        if len(q) == 1:
            return out[..., idx]
        q = np.asarray(q)
        w = (np.asarray(levels) - q[idx]) / (q[idx + 1] - q[idx])  # (n_levels,)
        return out[..., idx] * (1 - w) + out[..., idx + 1] * w

    def _prepare(self, context, h, X, at, stamps=None):
        """Origin, future gaps, covariates and output metadata for a forecast."""
        check_is_fitted(self, "net_")
        if _is_int(context):
            if h is not None:
                raise TypeError("predict: h given twice (positionally and as h=)")
            context, h = None, context
        if h is not None and (not _is_int(h) or h < 1):
            raise ValueError(f"h: expected a positive int number of steps, got {h!r}")
        if context is None:
            origin, ctx = self.origin_, self.context_
        else:
            raw = self._read(context, "context")
            self._check_like_fit(raw, "context", same_series=False)
            if raw.n_series != self.context_.n_series:
                raise ValueError(f"context: has {raw.n_series} series, the model was fitted on "
                                 f"{self.context_.n_series}")
            data = self._forward_target(raw)
            origin, ctx = self._origin_from(data, self._exog(X, data, name="X"))
        if stamps is None:
            if h is None and at is None:
                h = self.horizon
            times, stamps = future_times(ctx.meta, h, at)
        else:
            times = self._times_of(ctx, stamps)
        prev = np.concatenate([self._last_time(ctx)[:, None], times[:, :-1]], axis=1)
        fex = self._exog(X, ctx, stamps=stamps, name="X")
        return origin, times - prev, fex, ctx, stamps

    def _times_of(self, ctx: SeriesData, stamps, name: str = "y") -> np.ndarray:
        """Numeric times (n, h) of per-series future stamps; each must follow ctx's end."""
        meta = ctx.index_meta
        times = np.stack([meta.to_steps(st, s) for s, st in enumerate(stamps)])  # (n, h)
        last = self._last_time(ctx)
        if np.any(times[:, 0] <= last):
            s = int(np.argmax(times[:, 0] <= last))
            raise ValueError(f"{name}: its first stamp {stamps[s][0]} is not after the forecast "
                             f"origin {meta.last[s]} (series {ctx.ids[s]!r}); pass data that "
                             "follows what the model has seen")
        return times

    def _forecast(self, context, h, X, at, stamps=None):
        origin, fgaps, fex, ctx, stamps = self._prepare(context, h, X, at, stamps)
        out = np.moveaxis(self._rollout(origin, fgaps, fex), -1, 0)  # (n_out, n, h, C)
        return out, ctx, stamps

    def predict(self, context: Any = None, /, h: int | None = None, X: Any = None,
                at: Any = None):
        """Forecast the next ``h`` steps (or at the stamps ``at``).

        Parameters
        ----------
        context : int or container, optional (positional only)
            An int is read as ``h`` (``predict(24)``). A container like y (e.g. the
            frame a ``Pipeline`` passes: ``pipe.predict(df, h=24)``) is a new
            context: the forecast starts after its last stamp, from its last
            ``lookback`` rows (the fitted origin is not changed). None: forecast
            from the fitted / updated origin.
        h : int, optional
            Steps ahead (default ``horizon``); beyond ``horizon`` the forecast
            rolls out recursively. Irregular data needs ``at``.
        X : container, optional
            Covariates at the future stamps (and at the context's, with a context).
        at : array-like of stamps, optional
            Future stamps to forecast at (strictly increasing, after the origin).

        Returns
        -------
        The fitted container type (DataFrame / Series / long frame / xarray / numpy),
        indexed by the future stamps, same columns, in y's original units.
        """
        out, ctx, stamps = self._forecast(context, h, X, at)
        pred = self._point(np.moveaxis(out, 0, -1))  # (n, h, C) scaled
        pred = self._inverse_target(self.scaler_.inverse_transform(pred))
        return from_predictions(pred, ctx.meta, stamps)

    def predict_quantiles(self, context: Any = None, /, h: int | None = None, quantiles=None,
                          X: Any = None, at: Any = None):
        """Quantile forecasts (``loss="quantile"`` only), monotone in the level.

        Parameters
        ----------
        quantiles : sequence of float, optional
            Levels within the trained range (interpolated linearly); default the trained ones.
        context, h, X, at : as in :meth:`predict`

        Returns
        -------
        The fitted container with a quantile axis (see ``ssmts.data.from_predictions``):
        DataFrame with (column, quantile) columns, a leading "quantile" dimension, ...
        """
        levels = self._check_levels(quantiles, "predict_quantiles")
        out, ctx, stamps = self._forecast(context, h, X, at)
        out = self._quantile_arrays(out, levels)  # (n_levels, n, h, C)
        return from_predictions(out, ctx.meta, stamps, quantiles=levels)

    def _check_levels(self, levels, where: str) -> tuple:
        check_is_fitted(self, "net_")
        q = self._quantile_levels()
        if q is None:
            raise ValueError(f"{where}: the model was trained with loss={self.loss!r}; "
                             "refit with loss='quantile' for quantile forecasts")
        levels = q if levels is None else tuple(float(x) for x in np.atleast_1d(levels))
        if min(levels) < q[0] - 1e-12 or max(levels) > q[-1] + 1e-12:
            raise ValueError(f"quantiles: levels {list(levels)} lie outside the trained range "
                             f"[{q[0]}, {q[-1]}]; refit with wider quantiles=")
        return levels

    def predict_interval(self, context: Any = None, /, h: int | None = None,
                         coverage: float = 0.9, X: Any = None, at: Any = None):
        """Central prediction interval: ``(lower, upper)``, each in the fitted container type.

        ``coverage`` in (0, 1) gives the levels (1 - coverage) / 2 and (1 + coverage) / 2,
        which must lie in the trained quantile range.
        """
        if not 0.0 < float(coverage) < 1.0:
            raise ValueError(f"coverage: expected a float in (0, 1), got {coverage!r}")
        lo, hi = (1 - coverage) / 2, (1 + coverage) / 2
        self._check_levels([lo, hi], "predict_interval")
        out, ctx, stamps = self._forecast(context, h, X, at)
        both = self._quantile_arrays(out, [lo, hi])
        return (from_predictions(both[0], ctx.meta, stamps),
                from_predictions(both[1], ctx.meta, stamps))

    def _quantile_arrays(self, out: np.ndarray, levels) -> np.ndarray:
        """(n_out, n, h, C) scaled outputs -> (n_levels, n, h, C) in y's units, monotone."""
        q = self._quantile_levels()
        res = self._interp_q(np.sort(np.moveaxis(out, 0, -1), axis=-1), q, levels)
        return self._inverse_target(self.scaler_.inverse_transform(np.moveaxis(res, -1, 0)))

    # ----------------------------------------------------------- update / score
    def update(self, y_new: Any, X_new: Any = None) -> "SSMForecaster":
        """Advance the forecast origin over new rows in O(new rows), without refitting.

        Parameters
        ----------
        y_new : container like y (same columns and series), stamps after the origin
        X_new : covariates at y_new's stamps (when fitted with X)

        Writes ``origin_``, ``context_`` (last ``lookback`` rows) and ``index_meta_``.
        """
        check_is_fitted(self, "net_")
        raw = self._read(y_new, "y_new")
        self._check_like_fit(raw, "y_new")
        data = self._forward_target(raw)
        ctx = self.context_
        t_new = np.empty_like(data.time)
        for s in range(data.n_series):
            L = data.lengths[s]
            t_new[s, :L] = ctx.index_meta.to_steps(data.stamps[s], s)
            t_new[s, L:] = t_new[s, L - 1] + np.arange(1, data.n_steps - L + 1)
        self._times_of(ctx, tuple(st[:1] for st in data.stamps), "y_new")
        lead = t_new[:, 0] - self._last_time(ctx)
        data = dataclasses.replace(data, time=t_new, lead_gap=lead,
                                   index_meta=ctx.index_meta)
        ex = self._exog(X_new, data, name="X_new")
        self.origin_ = self._advance(self.origin_, self._scale(data), ex)
        self.context_ = _append_tail(ctx, data, self.lookback)
        self.index_meta_ = self.context_.index_meta
        return self

    def score(self, y: Any, X: Any = None) -> float:
        """Negative MSE of forecasting y (the rows right after the origin) from the origin.

        Parameters
        ----------
        y : container like the fitted y, stamps following the fitted / updated data
        X : covariates at y's stamps (when fitted with X)

        Returns
        -------
        float, -mean squared error over observed values of y, in y's units
        """
        check_is_fitted(self, "net_")
        raw = self._read(y, "y")
        self._check_like_fit(raw, "y")
        h = int(raw.lengths.max())
        padded = tuple(_pad_stamps(st, h) for st in raw.stamps)
        out, _, _ = self._forecast(None, None, X, None, stamps=padded)
        pred = self._point(np.moveaxis(out, 0, -1))  # (n, h, C)
        pred = self._inverse_target(self.scaler_.inverse_transform(pred))
        err = np.where(raw.mask, pred[:, :raw.n_steps] - np.nan_to_num(raw.values), 0.0)
        return -float((err ** 2).sum() / max(raw.mask.sum(), 1))

    # ------------------------------------------------------------------- I/O
    def save(self, path) -> None:
        """Write ``model.safetensors`` and ``config.json`` into the folder ``path``."""
        from ssmts.estimators._io import save_forecaster

        save_forecaster(self, path)

    @classmethod
    def load(cls, path) -> "SSMForecaster":
        """Rebuild a fitted forecaster saved by :meth:`save` (never unpickles)."""
        from ssmts.estimators._io import load_forecaster

        return load_forecaster(path)


def _pad_stamps(st: pd.Index, h: int) -> pd.Index:
    """Extend stamps to length h by repeating its spacing (padding of shorter series)."""
    if len(st) >= h:
        return st
    step = st[-1] - st[-2] if len(st) > 1 else None
    extra = [st[-1] + step * (k + 1) for k in range(h - len(st))] if step is not None \
        else [st[-1]] * (h - len(st))
    return st.append(pd.Index(extra))


def _append_tail(old: SeriesData, new: SeriesData, keep: int) -> SeriesData:
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
