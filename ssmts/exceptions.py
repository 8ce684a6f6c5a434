"""Exceptions of ssmts that callers may want to catch by type (no dependencies)."""

from __future__ import annotations

__all__ = ["TrainingDiverged"]


class TrainingDiverged(FloatingPointError):
    """Training stopped because the loss or the network's weights stopped being finite.

    Raised by ``SSMForecaster.fit`` with the epoch, the step and the learning rate in
    its message; the estimator keeps its previous state. Usually the learning rate is
    too high for the model.
    """
