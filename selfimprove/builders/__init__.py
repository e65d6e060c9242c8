"""Row builders (`registry.ROW_BUILDERS`): kept samples in, training rows out (SFT rows, preference pairs, correction
trajectories). Each declares its columns, the reasons a prompt can give no row, and what it audits."""

from .base import RowBuilder, make_row_builder
from .sft import SFTRows, sft_rows

__all__ = ["RowBuilder", "SFTRows", "make_row_builder", "sft_rows"]
