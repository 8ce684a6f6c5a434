"""ssmts.models: networks built from ssmts.layers."""

from ssmts.models.forecast import ForecastNet, effective_gaps

__all__ = ["ForecastNet", "effective_gaps"]
