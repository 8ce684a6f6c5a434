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
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ssmts.data import (SeriesData, from_predictions, future_times, make_scaler,
                        to_series_data)
from ssmts.estimators import _convert as _cv
from ssmts.estimators import _rollout as _ro
from ssmts.estimators._checks import (check_coverage, check_forecaster_params, check_h,
                                      check_levels_list, is_real, non_finite_forecast)
from ssmts.models.forecast import ForecastNet

__all__ = ["SSMForecaster"]

# Initial Δ range for context windows of ~10-1000 steps. With Re Λ = -1/2 (HiPPO-N / S4D
# inits) a state's time constant is 2/Δ steps, so Δ in [1e-2, 1] spans 2..200 steps; the
# layers' own defaults [1e-3, 1e-1] (20..2000 steps, input gain B̄ ≈ Δ B down to 1e-3)
# made S5 / S4D learn slowly on windows of 36-96 steps.
_LAYER_DEFAULTS: dict = {"s5": {"dt_min": 1e-2, "dt_max": 1.0},
                         "s4": {"dt_min": 1e-2, "dt_max": 1.0},
                         "s4d": {"dt_min": 1e-2, "dt_max": 1.0}}


def _fitted_name(k: str) -> bool:
    """A learned attribute (sklearn's rule: ends in one underscore, not private)."""
    return k.endswith("_") and not k.startswith("_") and not k.endswith("__")


_DEFAULT_Q = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)


class SSMForecaster(_cv.ConvertMixin, BaseEstimator):
    """Forecast one or many multivariate series with an S5 / S4 / Mamba backbone.

    Parameters
    ----------
    backbone : {"s5", "s4", "s4d", "mamba"}
        Sequence layer of the backbone (all causal): "s5" MIMO S5, "s4" the DPLR S4
        (HiPPO-LegS, Cauchy kernel), "s4d" the diagonal S4D, "mamba" selective.
    layer_kwargs : dict, optional
        Options of the backbone's layer (``ssmts.layers.block.layer_options(backbone)``
        lists them, e.g. ``{"rank": 2}`` for "s4", ``{"blocks": 4}`` for "s5",
        ``{"expand": 1}`` for "mamba"); they override the estimator's Δ range defaults.
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
        Validation tail per series, steps (int >= 0) or fraction (float in [0, 1)); 0 = none.
        Raised to ``horizon``; dropped with a warning when the series are too short.
    scaler : {"series", "channel", "global", "none"}
        NaN-aware standardisation of y (covariates are always standardised per channel).
    window_norm : {"mean", "last", None}
        Instance normalisation inside the network (RevIN), after the global scaler:
        each context window and channel is centred on the mean (or the last value) of
        its observed values and divided by their std (floored at 0.01 scaled units);
        the outputs are mapped back, so the loss stays in globally scaled units. Lets
        the model follow levels and trends it never saw in training. The statistics
        belong to the forecast origin: ``update`` keeps those of the fitted context.
    window_affine : bool
        Learnable per-channel affine map after the window normalisation.
    stride : int
        Steps between training windows.
    id_col, time_col : label, optional
        Long-format input: series id and time columns.
    device : {"auto", "cpu", "cuda", "gpu", "mps"}
        Training accelerator ("auto" takes a GPU when present). Prediction runs on the CPU.
    trainer_kwargs : dict, optional
        Passed to ``lightning.Trainer`` (devices, strategy, precision, callbacks, ...).
    random_state : int, optional
        Seeds the training (weights, window order, dropout); same seed, same predictions on
        the CPU. Seeding is local: the caller's global numpy / Python / torch generators
        and environment are left as they were.
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
    naive_loss_ : float, loss of the last-value forecast on the training windows (a warning
        says when the final training loss is worse)
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
                 max_epochs: int = 30, batch_size: int = 32, lr: float = 1e-2,
                 lr_schedule: str = "cosine", early_stopping: bool = True,
                 val_size: int | float = 0.2, scaler: str | None = "series",
                 window_norm: str | None = "mean", window_affine: bool = False, stride: int = 1,
                 id_col=None, time_col=None, device: str = "auto", trainer_kwargs=None,
                 random_state: int | None = None, verbose: bool = False,
                 target_transformer=None, layer_kwargs: dict | None = None):
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
        self.window_norm = window_norm
        self.window_affine = window_affine
        self.stride = stride
        self.id_col = id_col
        self.time_col = time_col
        self.device = device
        self.trainer_kwargs = trainer_kwargs
        self.random_state = random_state
        self.verbose = verbose
        self.target_transformer = target_transformer
        self.layer_kwargs = layer_kwargs

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        """Validate every constructor parameter; errors name it, its value and what it takes."""
        check_forecaster_params(self)

    def _quantile_levels(self) -> tuple | None:
        if self.loss != "quantile":
            return None
        return tuple(sorted(float(x) for x in (self.quantiles or _DEFAULT_Q)))

    def _read(self, y, name: str, like=None) -> SeriesData:
        return to_series_data(y, id_col=self.id_col, time_col=self.time_col, name=name,
                              like=like)

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

        Raises
        ------
        TrainingDiverged
            The loss or the weights stopped being finite (a ``FloatingPointError`` naming
            the epoch, step and learning rate).

        Notes
        -----
        Fitting is transactional: the fitted attributes change together, and only when
        training succeeds; on any error, and on Ctrl-C (``KeyboardInterrupt``), the
        estimator keeps what it had before (fitted or not).
        """
        before = {k: v for k, v in vars(self).items() if _fitted_name(k)}
        try:
            self._fit(y, X)
        except BaseException:
            for k in [k for k in vars(self) if _fitted_name(k)]:
                delattr(self, k)
            self.__dict__.update(before)
            raise
        return self

    def _fit(self, y: Any, X: Any) -> None:
        self._check_params()
        raw = self._read(y, "y")
        self.n_masked_ = raw.n_masked
        if self.n_masked_:
            warnings.warn(f"y: {self.n_masked_} of {raw.n_masked + raw.n_observed} values are "
                          "missing (NaN); they are masked out of the loss and skipped by the "
                          "state update", UserWarning, stacklevel=3)
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
        self.n_exog_, self.exog_columns_, self.exog_scaler_, ex = _cv.read_exog(
            X, data, self.id_col, self.time_col)
        self.scaler_ = make_scaler(self.scaler).fit(data.values, data.mask)
        exog = None if ex is None else self.exog_scaler_.transform(ex)
        self._train(self._scale(data), exog)
        self._set_origin(data, exog)

    def _train(self, scaled: SeriesData, exog: np.ndarray | None) -> None:
        """Build net_ and train it with Lightning; sets train_loss_ / val_loss_ / naive_loss_."""
        from ssmts.estimators._fitting import train_network

        self.net_, self.train_loss_, self.val_loss_, self.naive_loss_ = train_network(
            self, scaled, exog)
        final = self.train_loss_[-1] if self.train_loss_ else np.nan
        if final > self.naive_loss_:
            warnings.warn(f"fit: the final training loss {final:.4g} is worse than a naive "
                          f"(last value) forecast's {self.naive_loss_:.4g} on the same windows "
                          f"(loss={self.loss!r}, scaled units): training did not converge; "
                          f"try a lower lr (now {self.lr:g}) or more epochs (now "
                          f"{self.max_epochs})", UserWarning, stacklevel=4)

    def _build_net(self) -> ForecastNet:
        q = self._quantile_levels()
        return ForecastNet(self.n_features_in_, self.horizon, n_exog=self.n_exog_,
                           n_outputs=1 if q is None else len(q), channel=self.channel,
                           backbone=self.backbone, d_model=self.d_model, n_layers=self.n_layers,
                           d_state=self.d_state, dropout=float(self.dropout),
                           layer_kwargs={**_LAYER_DEFAULTS.get(self.backbone, {}),
                                         **(self.layer_kwargs or {})},
                           window_norm=self.window_norm, norm_affine=bool(self.window_affine))

    # ----------------------------------------------------------------- origin
    def _origin_from(self, data: SeriesData, exog_scaled: np.ndarray | None):
        """(origin, tail) after the last ``lookback`` rows of (target-transformed) data."""
        start = np.maximum(0, data.lengths - self.lookback)
        tail = data.slice_steps(start, data.lengths)
        ex = None
        if exog_scaled is not None:
            ex = np.stack([np.pad(exog_scaled[s, a:b], ((0, tail.n_steps - (b - a)), (0, 0)))
                           for s, (a, b) in enumerate(zip(start, data.lengths))])
        return _ro.origin_from_tail(self.net_, self._scale(tail), ex), tail

    def _set_origin(self, data: SeriesData, exog_scaled) -> None:
        self.origin_, self.context_ = self._origin_from(data, exog_scaled)
        self.index_meta_ = self.context_.index_meta

    # ---------------------------------------------------------------- predict
    def _point(self, out: np.ndarray) -> np.ndarray:
        """(..., C, n_out) -> (..., C): the forecast, or the median of sorted quantiles."""
        q = self._quantile_levels()
        if q is None:
            return out[..., 0]
        return _ro.interp_quantiles(np.sort(out, axis=-1), q, [0.5])[..., 0]

    def _prepare(self, context, h, X, at, stamps=None):
        """Origin, future gaps, covariates and output metadata for a forecast."""
        check_is_fitted(self, "net_")
        if is_real(context) or isinstance(context, (bool, np.bool_, str, bytes)):
            if h is not None:
                raise TypeError("predict: h given twice (positionally and as h=)")
            context, h = None, context
            if isinstance(h, (str, bytes)):
                raise ValueError(f"h: expected a positive int number of steps ahead (e.g. 24), "
                                 f"got {h!r}; for forecasts at given times pass at=[...], for "
                                 "a new context pass a container like y")
        check_h(h)
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
            times = _ro.times_after(ctx, stamps)
        prev = np.concatenate([_ro.last_time(ctx)[:, None], times[:, :-1]], axis=1)
        fex = self._exog(X, ctx, stamps=stamps, name="X")
        return origin, times - prev, fex, ctx, stamps

    def _forecast(self, context, h, X, at, stamps=None):
        origin, fgaps, fex, ctx, stamps = self._prepare(context, h, X, at, stamps)
        out = _ro.rollout(self.net_, origin, fgaps, fex, self.horizon, self._point)
        out = np.moveaxis(out, -1, 0)  # (n_out, n, h, C)
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
        non_finite_forecast(pred, "predict")
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
        levels = q if levels is None else check_levels_list(levels, "quantiles")
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
        coverage = check_coverage(coverage)
        lo, hi = (1 - coverage) / 2, (1 + coverage) / 2
        self._check_levels([lo, hi], "predict_interval")
        out, ctx, stamps = self._forecast(context, h, X, at)
        both = self._quantile_arrays(out, [lo, hi])
        return (from_predictions(both[0], ctx.meta, stamps),
                from_predictions(both[1], ctx.meta, stamps))

    def _quantile_arrays(self, out: np.ndarray, levels) -> np.ndarray:
        """(n_out, n, h, C) scaled outputs -> (n_levels, n, h, C) in y's units, monotone."""
        q = self._quantile_levels()
        res = _ro.interp_quantiles(np.sort(np.moveaxis(out, 0, -1), axis=-1), q, levels)
        res = self._inverse_target(self.scaler_.inverse_transform(np.moveaxis(res, -1, 0)))
        non_finite_forecast(res, "predict_quantiles")
        return res

    # ----------------------------------------------------------- update / score
    def update(self, y_new: Any, X_new: Any = None) -> "SSMForecaster":
        """Advance the forecast origin over new rows in O(new rows), without refitting.

        Parameters
        ----------
        y_new : container like y (same columns and series), stamps after the origin
            Read by fit's rules: stamps of the same kind and time zone as y's (an error
            names both otherwise); NaN values are masked (a row may be all NaN: time
            advances, the observation is skipped); one row needs no frequency.
        X_new : covariates at y_new's stamps (when fitted with X)

        Writes ``origin_``, ``context_`` (last ``lookback`` rows) and ``index_meta_``.
        """
        check_is_fitted(self, "net_")
        raw = self._read(y_new, "y_new", like=self.context_.index_meta)
        self._check_like_fit(raw, "y_new")
        data = self._forward_target(raw)
        ctx = self.context_
        _ro.times_after(ctx, tuple(st[:1] for st in data.stamps), "y_new")
        # read with like=: data.time is already in steps from the fitted origins
        lead = data.time[:, 0] - _ro.last_time(ctx)
        data = dataclasses.replace(data, lead_gap=lead, index_meta=ctx.index_meta)
        ex = self._exog(X_new, data, name="X_new")
        self.origin_ = _ro.advance(self.net_, self.origin_, self._scale(data), ex)
        self.context_ = _ro.append_tail(ctx, data, self.lookback)
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
        padded = tuple(_ro.pad_stamps(st, h) for st in raw.stamps)
        out, _, _ = self._forecast(None, None, X, None, stamps=padded)
        pred = self._point(np.moveaxis(out, 0, -1))  # (n, h, C)
        pred = self._inverse_target(self.scaler_.inverse_transform(pred))
        err = np.where(raw.mask, pred[:, :raw.n_steps] - np.nan_to_num(raw.values), 0.0)
        return -float((err ** 2).sum() / max(raw.mask.sum(), 1))

    # ------------------------------------------------------------------- I/O
    def save(self, path) -> None:
        """Write the model (``model.safetensors`` + ``config.json``) into the folder ``path``.

        The folder is replaced atomically: on any error an existing model there is left
        as it was. ``path`` must be new, empty, or a folder written by ``save``; a file
        or a folder holding other files raises ``ValueError``. A ``target_transformer``
        cannot be saved without pickling (``ValueError``).
        """
        from ssmts.estimators._io import save_forecaster

        save_forecaster(self, path)

    @classmethod
    def load(cls, path) -> "SSMForecaster":
        """Rebuild a fitted forecaster saved by :meth:`save` (never unpickles).

        Raises ``ValueError`` naming the file for a missing, damaged, edited or
        inconsistent file, or one written by a newer ssmts; warns when it loads the
        previous model that an interrupted save left aside.
        """
        from ssmts.estimators._io import load_forecaster

        return load_forecaster(path)

    def backtest(self, y, start, horizon: int | None = None, stride: int = 1,
                 refit: bool = False, X=None, quantiles=None, batch: int = 256):
        """Forecasts from every origin ``start, start + stride, ...`` of ``y`` vs the truth.

        ``y`` is the full series (history and tail, fitted columns); ``start`` an int row,
        a fraction in (0, 1) or a stamp; ``horizon`` steps (default the model's).
        ``refit=False`` runs the fitted model on each origin's own context (what
        ``predict(y[:origin], h)`` gives), batched; ``refit=True`` refits a clone per
        origin. Returns a long DataFrame (``origin``, ``time``, ``step``, ``column``,
        ``forecast``, ``truth``, ``q<level>``; ``series`` with several series); see
        :func:`ssmts.estimators._backtest.backtest` for all rules.
        """
        from ssmts.estimators._backtest import backtest

        h = self.horizon if horizon is None else horizon
        return backtest(self, y, start, h, stride=stride, refit=refit, X=X,
                        quantiles=quantiles, batch=batch)
