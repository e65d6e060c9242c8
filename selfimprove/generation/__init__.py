"""Generation backends behind one interface (see base.py); `make_generator` builds the one a backend config names."""

from __future__ import annotations

from pathlib import Path

from .base import Completion, Generator, Request, SamplingParams, TextScore

__all__ = ["Completion", "Generator", "Request", "SamplingParams", "TextScore", "make_generator"]


def make_generator(backend, model_path: Path | str, adapter: Path | None = None) -> Generator:
    """Build the backend `backend.name` names (`registry.BACKENDS`, imported now) for a resolved model path.

    `backend` is a backend config (or a dict, validated as one). Backends take `(model_path, backend, adapter=)`."""
    from ..config.backend import parse_backend
    from ..registry import BACKENDS

    backend = parse_backend(backend) if isinstance(backend, dict) else backend
    cls = BACKENDS.get(backend.name, "backend.name")
    return cls(model_path, backend, adapter=adapter)
