"""selfimprove: generate -> score -> select -> fine-tune -> evaluate, as one YAML pipeline."""

__version__ = "0.1.0"
