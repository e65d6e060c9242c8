"""Generation backends behind one interface (see base.py); `make_generator` builds the one a backend config names."""

from __future__ import annotations

from pathlib import Path

from .base import Completion, Generator, Request, SamplingParams, TextScore

__all__ = ["Completion", "Generator", "Request", "SamplingParams", "TextScore", "check_backend", "make_generator"]


def check_backend(backend, where: str = "backend") -> None:
    """Before any model loads: a plug-in backend's class must import and be a Generator, and its `options` must
    pass the class's `Options` model. Built-in backends were checked by their config model (no import here)."""
    from ..config.backend import BUILTIN_BACKENDS
    from ..options import NoOptions, validate_options
    from ..registry import BACKENDS

    if backend.name in BUILTIN_BACKENDS:
        if backend.name in ("vllm", "openai", "ray_llm"):
            from ..optional import require

            require(backend.name, f"{where}.name")
        return
    cls = BACKENDS.get(backend.name, f"{where}.name")
    validate_options(getattr(cls, "Options", NoOptions), backend.options, f"{where}.options")


def make_generator(backend, model_path: Path | str, adapter: Path | None = None) -> Generator:
    """Build the backend `backend.name` names (`registry.BACKENDS`, imported now) for a resolved model path.

    `backend` is a backend config (or a dict, validated as one). Backends take `(model_path, backend, adapter=)`."""
    from ..config.backend import parse_backend
    from ..registry import BACKENDS

    backend = parse_backend(backend) if isinstance(backend, dict) else backend
    check_backend(backend)
    cls = BACKENDS.get(backend.name, "backend.name")
    return cls(model_path, backend, adapter=adapter)
