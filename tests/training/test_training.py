"""Masked losses, the Lightning module / data module and the Trainer factory."""

import numpy as np
import pandas as pd
import pytest
import torch

from ssmts.data import to_series_data
from ssmts.models import ForecastNet
from ssmts.training import (ForecastDataModule, ForecastModule, build_trainer, masked_loss,
                            quiet_lightning)


def test_masked_loss_ignores_masked_targets():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 3, 2, 1, generator=g)
    tgt = torch.randn(2, 3, 2, generator=g)
    mask = (torch.rand(2, 3, 2, generator=g) > 0.4).float()
    bad = torch.where(mask > 0, tgt, torch.full_like(tgt, float("nan")))
    ref = ((pred[..., 0] - tgt) ** 2 * mask).sum() / mask.sum()
    assert torch.allclose(masked_loss(pred, bad, mask, "mse"), ref)
    ref_mae = ((pred[..., 0] - tgt).abs() * mask).sum() / mask.sum()
    assert torch.allclose(masked_loss(pred, bad, mask, "mae"), ref_mae)
    # pinball at q=0.5 is half the MAE
    q = masked_loss(pred, bad, mask, "quantile", [0.5])
    assert torch.allclose(q, 0.5 * ref_mae)


def test_pinball_asymmetric():
    pred, tgt, mask = torch.zeros(1, 1, 1, 2), torch.ones(1, 1, 1), torch.ones(1, 1, 1)
    loss = masked_loss(pred, tgt, mask, "quantile", [0.1, 0.9])
    assert torch.allclose(loss, torch.tensor((0.1 + 0.9) / 2))


def _data(T=80):
    rng = np.random.default_rng(0)
    v = rng.standard_normal((T, 2))
    v[5, 0] = np.nan
    return to_series_data(pd.DataFrame(v, index=pd.date_range("2024", periods=T, freq="h")))


def test_datamodule_split_is_time_ordered():
    dm = ForecastDataModule(_data(), lookback=10, horizon=5, batch_size=8, val_size=20)
    assert dm.n_val == 16 and dm.n_train == 46  # val: 20 target steps; train: first 60 rows
    batch = next(iter(dm.train_dataloader()))
    assert batch["context"].shape == (8, 10, 2) and torch.isfinite(batch["context"]).all()


def test_module_trains_finite_and_records_curves():
    torch.manual_seed(0)
    net = ForecastNet(2, horizon=5, d_model=8, n_layers=1, d_state=4)
    module = ForecastModule(net, "mse", lr=1e-2)
    dm = ForecastDataModule(_data(), lookback=10, horizon=5, batch_size=16, val_size=20, seed=0)
    with quiet_lightning(False):
        trainer = build_trainer(2, "cpu", early_stopping=True, has_val=True)
        trainer.fit(module, datamodule=dm)
    assert len(module.train_losses) == 2 and len(module.val_losses) == 2
    assert np.all(np.isfinite(module.train_losses + module.val_losses))


def test_build_trainer_settings():
    t = build_trainer(3, "cpu", verbose=False, early_stopping=True, has_val=True,
                      trainer_kwargs={"precision": "bf16-mixed"})
    assert t.max_epochs == 3 and t.logger is None and not t.checkpoint_callback
    assert any(type(c).__name__ == "EarlyStopping" for c in t.callbacks)
    assert "bf16" in str(t.precision)
    t2 = build_trainer(1, "auto", has_val=False)
    assert not any(type(c).__name__ == "EarlyStopping" for c in t2.callbacks)
    with pytest.raises(ValueError, match="device"):
        build_trainer(1, "tpu9")


def test_restore_best_loads_the_best_validation_epoch():
    """With restore_best the final weights are those of the epoch with the lowest val loss:
    re-evaluating the validation loss with them gives that epoch's recorded value."""
    torch.manual_seed(3)
    net = ForecastNet(2, horizon=5, d_model=8, n_layers=1, d_state=4)
    module = ForecastModule(net, "mse", lr=5e-2, restore_best=True)  # large lr: noisy curve
    dm = ForecastDataModule(_data(), lookback=10, horizon=5, batch_size=16, val_size=20, seed=0)
    with quiet_lightning(False):
        build_trainer(4, "cpu", early_stopping=False, has_val=True).fit(module, datamodule=dm)
    best = int(np.argmin(module.val_losses))
    assert module.best_epoch == best
    net.eval()
    with torch.no_grad():
        tot = n = 0
        for b in dm.val_dataloader():
            loss = masked_loss(module(b), b["target"], b["target_mask"], "mse")
            tot, n = tot + float(loss) * b["target"].shape[0], n + b["target"].shape[0]
    print("val losses", module.val_losses, "re-evaluated", tot / n)
    assert tot / n == pytest.approx(module.val_losses[best], rel=1e-5)
