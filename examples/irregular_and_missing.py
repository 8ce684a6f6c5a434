"""Irregular timestamps and missing values: no resampling, no filling.

The deep forecaster takes the time gaps as data (each step's Δ is scaled by
the gap) and masks NaN; forecasts come at the stamps you ask for with ``at=``.
Classical models need a grid: they mask NaN on it but refuse irregular stamps.

Run: python examples/irregular_and_missing.py   (CPU, well under a minute)
"""

import numpy as np
import pandas as pd

from ssmts.estimators import SSMForecaster
from ssmts.estimators.baselines import NaiveForecaster
from ssmts.estimators.classical import StatsmodelsForecaster

rng = np.random.default_rng(1)
# ~800 readings at random times (gaps of 10 to 110 minutes), a 24 h cycle.
gaps = rng.uniform(10, 110, size=800)
stamps = pd.Timestamp("2024-05-01") + pd.to_timedelta(np.cumsum(gaps), unit="min")
hours = (stamps - stamps[0]) / pd.Timedelta(hours=1)
y = pd.DataFrame({"level": np.sin(2 * np.pi * np.asarray(hours) / 24)
                  + rng.normal(0, 0.1, len(stamps))}, index=stamps)
y.iloc[rng.choice(len(y), 40, replace=False), 0] = np.nan  # sensor dropouts
print(f"{len(y)} irregular readings, {int(y['level'].isna().sum())} missing")

model = SSMForecaster(backbone="s5", lookback=64, horizon=16, d_model=16, n_layers=1,
                      max_epochs=4, random_state=0, device="cpu").fit(y)
print("masked during training:", model.n_masked_)

# Irregular data has no "next 16 stamps": say when you want forecasts.
at = y.index[-1] + pd.to_timedelta([30, 45, 120, 240, 600], unit="min")
print(model.predict(at=at))
try:
    model.predict(5)
except ValueError as err:
    print("predict(5) without at=:", err)

# The naive baseline only needs the last observed value, so it also takes at=.
print(NaiveForecaster().fit(y).predict(at=at).head(2))

# Classical state-space models need a regular grid: they say so ...
try:
    StatsmodelsForecaster().fit(y)
except ValueError as err:
    print("StatsmodelsForecaster on irregular stamps:", err)
# ... and work after resampling (empty hours stay NaN and are masked by the Kalman filter).
hourly = y.resample("h").mean()
uc = StatsmodelsForecaster("unobserved_components", seasonal_periods=24, harmonics=2).fit(hourly)
print(f"hourly grid: {uc.n_masked_} masked hours; next 3 hours:\n{uc.predict(3)}")
