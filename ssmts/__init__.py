"""ssmts: time-series forecasting and signal processing with deep state-space models.

The package is layered; dependencies point one way::

    ssmts.kernels  <-  ssmts.ssm  <-  ssmts.layers  <-  ssmts.models
        <-  ssmts.training / ssmts.streaming  <-  ssmts.estimators

``ssmts.ssm`` is pure math (HiPPO, discretisation, convolution kernels, scans,
the control-theory view); it works without Triton or a GPU.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "SSMForecaster", "StatsmodelsForecaster", "SeasonalNaiveForecaster",
           "NaiveForecaster", "LTISystem"]

_LAZY = {
    "SSMForecaster": "ssmts.estimators",
    "StatsmodelsForecaster": "ssmts.estimators",
    "SeasonalNaiveForecaster": "ssmts.estimators",
    "NaiveForecaster": "ssmts.estimators",
    "LTISystem": "ssmts.ssm",
}


def __getattr__(name: str):
    """Import the estimators lazily, so ``import ssmts`` stays light (no Lightning)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ssmts' has no attribute {name!r}")
