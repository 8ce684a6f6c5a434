"""A forecaster behind a target scaler, tuned with GridSearchCV over time-ordered folds.

``ForecastPipeline`` fits the scaler on y, the forecaster on the scaled y, and maps
every forecast back to y's units (sklearn's ``Pipeline`` would hand ``predict(6)``'s
6 to the scaler). ``score`` is the negative MSE of forecasting the test fold from the
end of the training fold, so ``TimeSeriesSplit`` (train on the past, test on what
follows) works directly; ``ssmts.metrics.get_scorer`` gives other metrics.

Run: python examples/pipeline_gridsearch.py   (CPU, about a minute)
"""

import numpy as np
import pandas as pd
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
from sklearn.preprocessing import StandardScaler

from ssmts.estimators import ForecastPipeline, SSMForecaster
from ssmts.metrics import get_scorer
from ssmts.estimators.classical import StatsmodelsForecaster

rng = np.random.default_rng(2)
idx = pd.date_range("2023-01-01", periods=400, freq="h")
t = np.arange(len(idx))
df = pd.DataFrame({"a": np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.2, len(t)),
                   "b": np.cos(2 * np.pi * t / 12) + 0.002 * t + rng.normal(0, 0.2, len(t))},
                  index=idx)

cv = TimeSeriesSplit(n_splits=2, test_size=24)

# 1) the deep forecaster behind a scaler, scored by MAE in the data's units
pipe = ForecastPipeline([("scale", StandardScaler()),
                 ("model", SSMForecaster(lookback=48, horizon=24, d_model=8, n_layers=1,
                                         max_epochs=2, stride=2, val_size=0, random_state=0,
                                         device="cpu"))])
search = GridSearchCV(pipe, {"model__backbone": ["s5", "s4"]}, cv=cv,
                      scoring=get_scorer("neg_mean_absolute_error"))
search.fit(df)
print("SSMForecaster best:", search.best_params_, f"MAE {-search.best_score_:.3f}")
print(search.best_estimator_.predict(6))  # the next 6 hours, in the data's units

# 2) the same search over a classical model's settings
search_sm = GridSearchCV(StatsmodelsForecaster("unobserved_components", trend="local level",
                                               harmonics=2, maxiter=50),
                         {"seasonal_periods": [12, 24]}, cv=cv)
search_sm.fit(df)
print("UnobservedComponents best:", search_sm.best_params_, f"score {search_sm.best_score_:.3f}")
