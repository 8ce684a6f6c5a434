"""Training of SSMForecaster's network through Lightning (private).

``train_network`` is the one place the estimator's settings become a
``ForecastDataModule``, a ``ForecastModule`` and a ``lightning.Trainer``. It
trusts its inputs: the estimator has validated its parameters and scaled the data.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ssmts.data import SeriesData

__all__ = ["train_network", "make_datamodule"]


def make_datamodule(est, scaled: SeriesData, exog: np.ndarray | None):
    """Windows with a validation tail, or without when the series are too short.

    Parameters
    ----------
    est : SSMForecaster (validated parameters)
    scaled : SeriesData, globally scaled target
    exog : float array, shape (n_series, T, C_x), scaled covariates, or None
    """
    from ssmts.training import ForecastDataModule

    val = est.val_size or 0
    args = (scaled, est.lookback, est.horizon, est.batch_size)
    if val:
        v = np.maximum(np.round(scaled.lengths * val) if isinstance(val, float) else val,
                       est.horizon).astype(int)  # (n,)
        if np.all(scaled.lengths - v >= est.lookback + est.horizon):
            return ForecastDataModule(*args, int(v.min()), est.stride, exog, est.random_state)
        warnings.warn(f"val_size: the series are too short for a validation tail of {val} "
                      f"plus lookback + horizon = {est.lookback + est.horizon} training "
                      "steps; training without validation", UserWarning)
    return ForecastDataModule(*args, 0, est.stride, exog, est.random_state)


def train_network(est, scaled: SeriesData, exog: np.ndarray | None):
    """Build ``est._build_net()`` and fit it on windows of ``scaled``.

    Returns
    -------
    net : ForecastNet on the CPU in eval mode
    train_loss, val_loss : lists of float, mean loss per epoch (globally scaled units)
    """
    import lightning as L

    from ssmts.training import ForecastModule, build_trainer, quiet_lightning

    det = (torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled())
    with quiet_lightning(est.verbose):
        if est.random_state is not None:
            L.seed_everything(int(est.random_state), verbose=False)
        net = est._build_net()
        dm = make_datamodule(est, scaled, exog)
        module = ForecastModule(net, est.loss, est._quantile_levels(), float(est.lr),
                                lr_schedule=est.lr_schedule,
                                restore_best=bool(est.early_stopping))
        trainer = build_trainer(est.max_epochs, est.device, est.verbose, est.early_stopping,
                                dm.n_val > 0, deterministic=est.random_state is not None,
                                trainer_kwargs=est.trainer_kwargs)
        try:
            trainer.fit(module, datamodule=dm)
        finally:  # Lightning's deterministic flag is global; give it back
            torch.use_deterministic_algorithms(det[0], warn_only=det[1])
    return module.net.cpu().eval(), list(module.train_losses), list(module.val_losses)
