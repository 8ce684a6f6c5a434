"""Quick start: fit a deep state-space forecaster on an hourly frame and forecast a day.

Run: python examples/quickstart.py   (CPU, well under a minute)
"""

import numpy as np
import pandas as pd

from ssmts.estimators import SSMForecaster
from ssmts.estimators.baselines import SeasonalNaiveForecaster
from ssmts.estimators.classical import StatsmodelsForecaster

# Two weeks of a synthetic hourly sensor: a daily cycle, a slow drift and noise.
rng = np.random.default_rng(0)
idx = pd.date_range("2024-03-01", periods=24 * 21, freq="h")
t = np.arange(len(idx))
df = pd.DataFrame({
    "temperature": 20 + 5 * np.sin(2 * np.pi * t / 24) + 0.01 * t + rng.normal(0, 0.5, len(t)),
    "load": 50 + 10 * np.cos(2 * np.pi * t / 24) + rng.normal(0, 1.0, len(t)),
}, index=idx)
train, test = df.iloc[:-24], df.iloc[-24:]

# A small model so the example runs fast; the defaults are larger.
model = SSMForecaster(backbone="s5", lookback=48, horizon=24, d_model=16, n_layers=2,
                      max_epochs=12, stride=2, lr=5e-3, val_size=0, random_state=0, device="cpu")
model.fit(train)
forecast = model.predict(24)  # DataFrame indexed by the next 24 hours, same columns
print(forecast.head())

# The same API for the baselines: compare on the held-out day.
baselines = {"seasonal naive (24 h)": SeasonalNaiveForecaster(season_length=24),
             "UnobservedComponents": StatsmodelsForecaster(seasonal_periods=24, harmonics=2)}
print(f"\n{'model':<24}{'test MSE':>10}")
print(f"{'SSMForecaster':<24}{-model.score(test):>10.3f}")
for name, est in baselines.items():
    print(f"{name:<24}{-est.fit(train).score(test):>10.3f}")

# New data arrives: move the forecast origin without refitting.
model.update(test.iloc[:6])
print("\nnext forecast starts at", model.predict(3).index[0])
