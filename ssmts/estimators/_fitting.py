"""Training of SSMForecaster's network through Lightning (private).

``train_network`` is the one place the estimator's settings become a
``ForecastDataModule``, a ``ForecastModule`` and a ``lightning.Trainer``. It
trusts its inputs: the estimator has validated its parameters and scaled the data.

It also keeps training from reaching outside the estimator:

* seeding is local (``local_seed``): the caller's Python, numpy and torch global
  generators, the ``PL_*`` / ``CUBLAS_WORKSPACE_CONFIG`` environment variables,
  torch's deterministic flag and the SIGINT handler are as they were afterwards;
* Ctrl-C reaches the caller as ``KeyboardInterrupt`` (Lightning turns it into
  ``SystemExit(1)`` and ignores further SIGINTs);
* a loss or weights that stop being finite raise :class:`TrainingDiverged`, which
  names the epoch, the step and the learning rate.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import warnings

import numpy as np
import torch

from ssmts.data import SeriesData
from ssmts.exceptions import TrainingDiverged

__all__ = ["train_network", "make_datamodule", "local_seed", "TrainingDiverged", "naive_loss"]

_ENV = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS", "CUBLAS_WORKSPACE_CONFIG")


@contextlib.contextmanager
def local_seed(seed: int | None):
    """Seed Python, numpy and torch for the block, then give the caller's state back.

    Saves and restores the global generators (Python ``random``, numpy's legacy
    global one, torch CPU and CUDA), the environment variables Lightning writes
    (``PL_GLOBAL_SEED``, ``PL_SEED_WORKERS``, ``CUBLAS_WORKSPACE_CONFIG``), torch's
    deterministic-algorithms flag and, in the main thread, the SIGINT handler.
    ``seed`` None seeds nothing but still restores all of it.
    """
    env = {k: os.environ.get(k) for k in _ENV}
    py_state, np_state = random.getstate(), np.random.get_state()
    det = (torch.are_deterministic_algorithms_enabled(),
           torch.is_deterministic_algorithms_warn_only_enabled())
    main = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main else None
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            if seed is not None:
                random.seed(int(seed))
                np.random.seed(int(seed) % 2 ** 32)
                torch.manual_seed(int(seed))
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.use_deterministic_algorithms(det[0], warn_only=det[1])
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if main and sigint is not None and signal.getsignal(signal.SIGINT) is not sigint:
            signal.signal(signal.SIGINT, sigint)


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


@torch.no_grad()
def naive_loss(dm, loss: str, quantiles) -> float:
    """Mean loss of the last-value forecast on the training windows of ``dm``.

    Each window's forecast is the last observed context value of every channel
    (0, the scaled mean, for a channel with no observed context value), scored
    with the training loss on the observed targets: the bar a trained network
    must clear.
    """
    from ssmts.training import masked_loss

    t = dm.train_t
    ctx, m = t["context"], t["context_mask"]  # (n, L, C)
    L = ctx.shape[1]
    pos = torch.arange(L).view(1, L, 1).expand_as(m)
    last = torch.where(m > 0, pos, torch.full_like(pos, -1)).amax(dim=1)  # (n, C)
    val = torch.gather(ctx, 1, last.clamp(min=0).unsqueeze(1)).squeeze(1)  # (n, C)
    val = torch.where(last >= 0, val, torch.zeros_like(val))
    n_out = 1 if quantiles is None else len(quantiles)
    target = t["target"]  # (n, h, C)
    pred = val[:, None, :, None].expand(-1, target.shape[1], -1, n_out)
    return float(masked_loss(pred, target, t["target_mask"], loss, quantiles))


def _keyboard_interrupt(exc: SystemExit) -> bool:
    ctx = exc.__context__
    while ctx is not None:
        if isinstance(ctx, KeyboardInterrupt):
            return True
        ctx = ctx.__context__
    return False


def train_network(est, scaled: SeriesData, exog: np.ndarray | None):
    """Build ``est._build_net()`` and fit it on windows of ``scaled``.

    Returns
    -------
    net : ForecastNet on the CPU in eval mode
    train_loss, val_loss : lists of float, mean loss per epoch (globally scaled units)
    naive : float, loss of the last-value forecast on the training windows

    Raises
    ------
    TrainingDiverged
        The loss or the weights became non-finite (names epoch, step and lr).
    KeyboardInterrupt
        Ctrl-C during training (never ``SystemExit``).
    """
    from ssmts.training import ForecastModule, build_trainer, quiet_lightning

    with quiet_lightning(est.verbose), local_seed(est.random_state):
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
        except SystemExit as exc:  # Lightning's answer to Ctrl-C
            if _keyboard_interrupt(exc):
                raise KeyboardInterrupt("fit: interrupted during training; the estimator "
                                        "keeps its previous state") from None
            raise
        naive = naive_loss(dm, est.loss, est._quantile_levels())
    return module.net.cpu().eval(), list(module.train_losses), list(module.val_losses), naive
