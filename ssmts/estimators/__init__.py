"""ssmts.estimators: the scikit-learn face of ssmts.

- :class:`SSMForecaster`: deep state-space forecaster (S4 / S5 / Mamba backbones)
- :class:`StatsmodelsForecaster`: classical state-space models (ETS, unobserved
  components, SARIMAX) with the same API
- :class:`SeasonalNaiveForecaster`, :class:`NaiveForecaster`: baselines
- :class:`ForecastPipeline`: target transformers then a forecaster, forecasts in y's units
"""

from ssmts.estimators.baselines import NaiveForecaster, SeasonalNaiveForecaster
from ssmts.estimators.classical import StatsmodelsForecaster
from ssmts.estimators.forecaster import SSMForecaster
from ssmts.estimators.pipeline import ForecastPipeline
from ssmts.exceptions import TrainingDiverged

__all__ = ["SSMForecaster", "StatsmodelsForecaster", "SeasonalNaiveForecaster", "NaiveForecaster",
           "ForecastPipeline", "TrainingDiverged"]
