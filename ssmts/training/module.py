"""The LightningModule around a ForecastNet, its losses, and the one Trainer factory.

Losses are masked by the target mask: missing targets (NaN, zero-filled in the
batch) never enter the loss. ``build_trainer`` is the only place a
``lightning.Trainer`` is made from an estimator's settings.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from typing import Sequence

import lightning as L
import torch
from torch import nn

from ssmts.exceptions import TrainingDiverged

__all__ = ["ForecastModule", "masked_loss", "build_trainer", "quiet_lightning",
           "TrainingDiverged"]

LOSSES = ("mse", "mae", "quantile")


def masked_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, loss: str,
                quantiles: Sequence[float] | None = None) -> torch.Tensor:
    """Mean loss over observed targets.

    Parameters
    ----------
    pred : float tensor, shape (b, h, C, n_out); n_out = 1 or len(quantiles)
    target : float tensor, shape (b, h, C); anything where mask is 0
    mask : float tensor, shape (b, h, C), 1 observed / 0 missing
    loss : {"mse", "mae", "quantile"}
    quantiles : sequence of float, levels of the last axis of ``pred`` (quantile loss)

    Returns
    -------
    scalar tensor (0 when nothing is observed)
    """
    target = torch.where(mask > 0, target, torch.zeros_like(target)).unsqueeze(-1)  # (b,h,C,1)
    err = target - pred  # (b, h, C, n_out)
    if loss == "mse":
        per = err.square()
    elif loss == "mae":
        per = err.abs()
    else:
        q = torch.as_tensor(list(quantiles), dtype=pred.dtype, device=pred.device)
        per = torch.maximum(q * err, (q - 1) * err)  # pinball
    per = per.mean(-1) * mask  # (b, h, C)
    return per.sum() / mask.sum().clamp(min=1.0)


class ForecastModule(L.LightningModule):
    """Trains a :class:`~ssmts.models.forecast.ForecastNet` on window batches.

    Parameters
    ----------
    net : ForecastNet
    loss : {"mse", "mae", "quantile"}
    quantiles : tuple of float or None
    lr : float, AdamW learning rate
    weight_decay : float
    lr_schedule : {"cosine", "constant"}
    restore_best : bool
        At the end of fit, load the weights of the epoch with the lowest validation
        loss (when there was validation), as early stopping with best-weight restore.

    Attributes
    ----------
    train_losses, val_losses : list of float, mean loss per epoch
    best_epoch : int or None, epoch whose weights were restored
    """

    def __init__(self, net: nn.Module, loss: str = "mse", quantiles=None, lr: float = 1e-3,
                 weight_decay: float = 1e-4, lr_schedule: str = "cosine",
                 restore_best: bool = False):
        super().__init__()
        self.net, self.loss_name, self.quantiles = net, loss, quantiles
        self.lr, self.weight_decay, self.lr_schedule = lr, weight_decay, lr_schedule
        self.restore_best, self.best_epoch = restore_best, None
        self._best_state = None
        self.train_losses: list[float] = []
        self.val_losses: list[float] = []
        self._sums = {"train": [0.0, 0], "val": [0.0, 0]}

    def forward(self, batch: dict) -> torch.Tensor:
        return self.net(batch["context"], batch["context_mask"], batch["context_gaps"],
                        batch["future_gaps"], batch.get("context_exog"),
                        batch.get("future_exog"))

    def _diverged(self, what: str) -> TrainingDiverged:
        epoch, step = self.current_epoch, self.global_step
        return TrainingDiverged(
            f"fit: training diverged at epoch {epoch}, step {step} with lr={self.lr:g}: "
            f"{what}. The data are finite (they were checked); the learning rate is too high "
            f"for this model: lower lr (e.g. lr={self.lr / 10:g}), keep lr_schedule='cosine', "
            "or try loss='mae'. The estimator keeps its previous state")

    def _loss(self, batch: dict, stage: str) -> torch.Tensor:
        try:
            pred = self(batch)
        except ValueError as exc:  # a scan's NaN/inf check: weights or states overflowed
            if "non-finite" not in str(exc):
                raise
            raise self._diverged("the network's internal values overflowed (a scan's "
                                 "decay or input became inf or NaN)") from None
        loss = masked_loss(pred, batch["target"], batch["target_mask"], self.loss_name,
                           self.quantiles)
        if stage == "train" and not torch.isfinite(loss):
            raise self._diverged(f"the training loss became {float(loss)}")
        n = batch["target"].shape[0]
        acc = self._sums[stage]
        acc[0] += float(loss.detach()) * n
        acc[1] += n
        self.log(f"{stage}_loss", loss, prog_bar=True, batch_size=n, on_epoch=True,
                 on_step=False)
        return loss

    def training_step(self, batch, batch_idx):
        return self._loss(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._loss(batch, "val")

    def _flush(self, stage: str, out: list) -> None:
        s, n = self._sums[stage]
        if n:
            out.append(s / n)
        self._sums[stage] = [0.0, 0]

    def on_train_batch_end(self, outputs, batch, batch_idx):
        for name, p in self.net.named_parameters():
            if not torch.isfinite(p).all():
                raise self._diverged(f"the weight {name} became non-finite after an "
                                     "optimiser step")

    def on_train_epoch_end(self):
        self._flush("train", self.train_losses)

    def on_validation_epoch_end(self):
        if self.trainer is not None and self.trainer.sanity_checking:
            self._sums["val"] = [0.0, 0]
            return
        n_before = len(self.val_losses)
        self._flush("val", self.val_losses)
        if self.restore_best and len(self.val_losses) > n_before:
            v = self.val_losses[-1]
            if math.isfinite(v) and v <= min(self.val_losses):
                self.best_epoch = len(self.val_losses) - 1
                self._best_state = {k: t.detach().clone() for k, t in self.net.state_dict().items()}

    def on_fit_end(self):
        if self.restore_best and self._best_state is not None:
            self.net.load_state_dict(self._best_state)
            self._best_state = None

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        if self.lr_schedule == "constant":
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(k, total) / total)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


_ACCEL = {"auto": "auto", "cpu": "cpu", "cuda": "gpu", "gpu": "gpu", "mps": "mps"}


def build_trainer(max_epochs: int, device: str = "auto", verbose: bool = False,
                  early_stopping: bool = True, has_val: bool = False, patience: int = 5,
                  deterministic: bool = False, trainer_kwargs: dict | None = None) -> L.Trainer:
    """The estimator's ``lightning.Trainer``.

    Parameters
    ----------
    max_epochs : int
    device : {"auto", "cpu", "cuda", "gpu", "mps"}; "auto" picks a GPU when present
    verbose : bool, progress bar and model summary
    early_stopping : bool, stop on ``val_loss`` (only when ``has_val``)
    has_val : bool, a validation loader exists
    patience : int, EarlyStopping patience in epochs
    deterministic : bool, ask torch for deterministic algorithms (warn-only, so ops
        without a deterministic kernel still run)
    trainer_kwargs : dict, optional
        Overrides anything above (devices, strategy, precision, callbacks, logger, ...).
    """
    if device not in _ACCEL:
        raise ValueError(f"device: expected one of {list(_ACCEL)}, got {device!r}")
    callbacks = []
    if early_stopping and has_val:
        callbacks.append(L.pytorch.callbacks.EarlyStopping("val_loss", patience=patience,
                                                           mode="min"))
    kw = dict(max_epochs=max_epochs, accelerator=_ACCEL[device], devices="auto",
              logger=False, enable_checkpointing=False, enable_progress_bar=verbose,
              enable_model_summary=verbose, callbacks=callbacks,
              num_sanity_val_steps=0,
              deterministic="warn" if deterministic else None)
    if not has_val:
        kw["limit_val_batches"] = 0
    extra = dict(trainer_kwargs or {})
    if "callbacks" in extra:
        extra["callbacks"] = callbacks + list(extra["callbacks"])
    kw.update(extra)
    return L.Trainer(**kw)


@contextlib.contextmanager
def quiet_lightning(verbose: bool):
    """Silence Lightning's info logs and hint warnings unless ``verbose``."""
    if verbose:
        yield
        return
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric",
                                              "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pat in (".*does not have many workers.*", ".*number of training batches.*",
                        ".*GPU available.*", ".*TPU available.*", ".*LeafSpec.*",
                        ".*deterministic.*", ".*_pytree.*"):
                warnings.filterwarnings("ignore", message=pat)
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)
