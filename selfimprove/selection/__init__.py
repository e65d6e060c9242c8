"""Selection: filters over scored samples and the builders of training rows (`registry.ROW_BUILDERS`)."""

from .base import RowBuilder, make_row_builder
from .filters import filter_columns, select_samples
from .sft import SFTRows, sft_rows

__all__ = ["RowBuilder", "SFTRows", "filter_columns", "make_row_builder", "select_samples", "sft_rows"]
