"""Library progress bars and chatter off, in the CLI's process and in every Ray worker it starts."""

from __future__ import annotations

import os
import sys


def quiet_libraries(imported_only: bool = False) -> None:
    """Library progress bars and chatter off (our own bars and logs say what happens); `imported_only` touches
    only libraries already imported, so validating a config stays free of them."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if imported_only and not {"datasets", "transformers"} & set(sys.modules):
        return
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
