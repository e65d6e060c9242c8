"""Generation backends behind one interface (see base.py); `make_generator` picks one by name."""

from __future__ import annotations

from pathlib import Path

from .base import Completion, Generator, Request, SamplingParams, TextScore

__all__ = ["Completion", "Generator", "Request", "SamplingParams", "TextScore", "make_generator"]


def make_generator(backend, model_path: Path | str, adapter: Path | None = None) -> Generator:
    """Build the backend named in `backend.name` (a `BackendConfig`) for a resolved model path."""
    if backend.name == "transformers":
        from .hf import TransformersGenerator

        return TransformersGenerator(model_path, backend, adapter=adapter)
    if backend.name == "vllm":
        from .vllm import VLLMGenerator

        return VLLMGenerator(model_path, backend, adapter=adapter)
    if backend.name == "openai":
        from .openai_api import OpenAIGenerator

        return OpenAIGenerator(model_path, backend)
    raise ValueError(f"unknown backend {backend.name!r}")
