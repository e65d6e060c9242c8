"""Selection: filters over scored samples and builders of training rows."""

from .filters import select_samples
from .sft import sft_rows

__all__ = ["select_samples", "sft_rows"]
