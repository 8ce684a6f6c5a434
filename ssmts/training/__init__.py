"""ssmts.training: Lightning module / data module and the Trainer factory."""

from ssmts.training.datamodule import ForecastDataModule, WindowDataset, windows_to_tensors
from ssmts.training.module import ForecastModule, build_trainer, masked_loss, quiet_lightning

__all__ = ["ForecastModule", "ForecastDataModule", "WindowDataset", "windows_to_tensors",
           "build_trainer", "masked_loss", "quiet_lightning"]
