"""Argument checks shared by the forecasters (private).

Each raises ``ValueError`` (``TypeError`` for a container of the wrong kind)
whose message names the argument, the value given and what it accepts.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["is_int", "is_real", "check_forecaster_params", "check_levels_list",
           "check_coverage", "check_h", "non_finite_forecast"]


def is_int(x: Any) -> bool:
    """An int (Python or numpy), not a bool."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def is_real(x: Any) -> bool:
    """A real number (int, float, numpy scalar; NaN and inf included), not a bool or a string."""
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def check_levels_list(levels: Any, name: str) -> tuple[float, ...]:
    """Sorted unique quantile levels, each a number strictly inside (0, 1).

    Parameters
    ----------
    levels : number or sequence of numbers
    name : argument name for the message
    """
    arr = np.atleast_1d(np.asarray(levels, dtype=object))
    if arr.ndim != 1 or arr.size == 0 or not all(is_real(x) for x in arr):
        raise ValueError(f"{name}: expected a non-empty list of numbers strictly between 0 and "
                         f"1 (e.g. [0.1, 0.5, 0.9]), got {levels!r}")
    q = np.asarray(arr, dtype=np.float64)
    if not np.all((q > 0) & (q < 1)):  # NaN fails too
        raise ValueError(f"{name}: expected levels strictly between 0 and 1 (NaN is not a "
                         f"level), got {levels!r}")
    return tuple(sorted(set(float(x) for x in q)))


def check_coverage(coverage: Any) -> float:
    """A coverage probability strictly inside (0, 1), as float."""
    if not is_real(coverage) or not 0.0 < float(coverage) < 1.0:
        raise ValueError(f"coverage: expected a number strictly between 0 and 1 (e.g. 0.9 for "
                         f"a 90% interval), got {coverage!r}")
    return float(coverage)


def check_h(h: Any) -> None:
    """``h`` is None or a positive int number of steps."""
    if h is not None and (not is_int(h) or h < 1):
        raise ValueError(f"h: expected a positive int number of steps ahead (e.g. 24), got "
                         f"{h!r}; for forecasts at given times pass at=[...]")


def non_finite_forecast(pred: np.ndarray, where: str) -> None:
    """Raise ``FloatingPointError`` when a forecast array holds NaN or inf."""
    bad = ~np.isfinite(pred)
    if bad.any():
        raise FloatingPointError(
            f"{where}: {int(bad.sum())} of {pred.size} forecast values are not finite (the "
            "network's output overflowed in y's units); check y's scale, refit with "
            "scaler='series' and a lower lr, or transform y (target_transformer=)")


def check_forecaster_params(est) -> None:
    """Validate every constructor parameter of an ``SSMForecaster``.

    Raises ``ValueError`` naming the parameter, its value and what it accepts.
    """
    from ssmts.layers.block import BACKBONES, check_layer_options
    from ssmts.models.forecast import WINDOW_NORMS

    for name in ("lookback", "horizon", "d_model", "n_layers", "d_state", "max_epochs",
                 "batch_size", "stride"):
        v = getattr(est, name)
        if not is_int(v) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    choices = {"backbone": BACKBONES, "loss": ("mse", "mae", "quantile"),
               "channel": ("mixed", "independent"), "lr_schedule": ("cosine", "constant"),
               "window_norm": WINDOW_NORMS,
               "scaler": (None, "none", "series", "channel", "global"),
               "device": ("auto", "cpu", "cuda", "gpu", "mps")}
    for name, ok in choices.items():
        v = getattr(est, name)
        if not isinstance(v, (str, type(None))) or v not in ok:
            raise ValueError(f"{name}: expected one of {list(ok)}, got {v!r}")
    for name in ("early_stopping", "window_affine", "verbose"):
        if not isinstance(getattr(est, name), (bool, np.bool_)):
            raise ValueError(f"{name}: expected True or False, got {getattr(est, name)!r}")
    if not is_real(est.dropout) or not 0.0 <= float(est.dropout) < 1.0:
        raise ValueError(f"dropout: expected a float in [0, 1), got {est.dropout!r}")
    if not is_real(est.lr) or not 0.0 < float(est.lr) < np.inf:
        raise ValueError(f"lr: expected a positive finite float (e.g. 1e-3), got {est.lr!r}")
    if est.random_state is not None and not is_int(est.random_state):
        raise ValueError(f"random_state: expected None or an int seed, got "
                         f"{est.random_state!r}")
    v = est.val_size
    ok = (is_int(v) and v >= 0) or (is_real(v) and not is_int(v) and 0.0 <= v < 1.0)
    if not ok:
        raise ValueError(f"val_size: expected an int number of steps >= 0 or a fraction "
                         f"in [0, 1) of each series, got {v!r}")
    if est.trainer_kwargs is not None and not isinstance(est.trainer_kwargs, dict):
        raise ValueError(f"trainer_kwargs: expected a dict of lightning.Trainer arguments "
                         f"or None, got {type(est.trainer_kwargs).__name__}")
    if est.quantiles is not None:
        check_levels_list(est.quantiles, "quantiles")
    check_layer_options(est.backbone, est.d_model, est.d_state, est.layer_kwargs)
