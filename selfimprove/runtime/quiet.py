"""Library progress bars and chatter off, in the CLI's process and in every Ray worker it starts."""

from __future__ import annotations

import os
import sys

# libraries whose UserWarnings/FutureWarnings are about their own internals, not about the user's run
NOISY = (r"transformers(\.|$)", r"trl(\.|$)", r"peft(\.|$)", r"datasets(\.|$)", r"accelerate(\.|$)", r"torch(\.|$)",
         r"huggingface_hub(\.|$)", r"deepspeed(\.|$)", r"ray(\.|$)", r"vllm(\.|$)")


def quiet_libraries(imported_only: bool = False) -> None:
    """Library progress bars and chatter off (our own bars and logs say what happens); `imported_only` touches
    only libraries already imported, so validating a config stays free of them."""
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import warnings

    for module in NOISY:  # their own warnings only: a warning from user code or another library still shows
        warnings.filterwarnings("ignore", category=UserWarning, module=module)
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
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
