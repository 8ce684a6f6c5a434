"""ssmts.estimators: the scikit-learn face of ssmts.

- :class:`SSMForecaster`: deep state-space forecaster (S4 / S5 / Mamba backbones)
- :class:`StatsmodelsForecaster`: classical state-space models (ETS, unobserved
  components, SARIMAX) with the same API
- :class:`SeasonalNaiveForecaster`, :class:`NaiveForecaster`: baselines
"""

from ssmts.estimators.baselines import NaiveForecaster, SeasonalNaiveForecaster
from ssmts.estimators.classical import StatsmodelsForecaster
from ssmts.estimators.forecaster import SSMForecaster

__all__ = ["SSMForecaster", "StatsmodelsForecaster", "SeasonalNaiveForecaster", "NaiveForecaster"]
