"""ssmts.data: user containers <-> one internal container, windows, scaling.

Typical use::

    from ssmts.data import to_series_data, future_times, from_predictions
    data = to_series_data(df)                  # wide / long DataFrame, Series, xarray, numpy
    times, stamps = future_times(data, h=24)   # or at=[...] for irregular data
    from_predictions(pred, data, stamps)       # back in the caller's type

No torch here; ``make_windows`` builds numpy arrays the training side turns
into tensors.
"""

from ssmts.data.adapters import from_predictions, future_times, to_series_data
from ssmts.data.container import DataMeta, SeriesData, SourceMeta, TimeIndexMeta
from ssmts.data.scaling import IdentityScaler, MeanStdScaler, make_scaler, scaler_from_dict
from ssmts.data.windows import align_exog, make_windows, train_val_split

__all__ = [
    "SeriesData",
    "TimeIndexMeta",
    "SourceMeta",
    "DataMeta",
    "to_series_data",
    "future_times",
    "from_predictions",
    "align_exog",
    "make_windows",
    "train_val_split",
    "MeanStdScaler",
    "IdentityScaler",
    "make_scaler",
    "scaler_from_dict",
]
