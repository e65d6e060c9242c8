"""Selection: the filters that choose which scored samples the row builder sees (thresholds, caps, quantiles)."""

from .filters import filter_columns, select_samples

__all__ = ["filter_columns", "select_samples"]
