"""ssmts.estimators: the scikit-learn face of ssmts."""

from ssmts.estimators.forecaster import SSMForecaster

__all__ = ["SSMForecaster"]
