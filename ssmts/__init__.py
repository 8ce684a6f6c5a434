"""ssmts: time-series forecasting and signal processing with deep state-space models.

The package is layered; dependencies point one way::

    ssmts.kernels  <-  ssmts.ssm  <-  ssmts.layers  <-  ssmts.models
        <-  ssmts.training / ssmts.streaming  <-  ssmts.estimators

``ssmts.ssm`` is pure math (HiPPO, discretisation, convolution kernels, scans,
the control-theory view); it works without Triton or a GPU.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
