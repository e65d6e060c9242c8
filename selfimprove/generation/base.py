"""The generator interface every backend implements: chat requests in, n completions each out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Callable


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. temperature 0 means greedy (then n must be 1)."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 128
    stop: tuple[str, ...] = ()
    seed: int = 0
    logprobs: bool = True

    def __post_init__(self):
        if self.n < 1:
            raise ValueError("n must be >= 1")
        if self.temperature == 0 and self.n > 1:
            raise ValueError("greedy decoding (temperature 0) gives one completion per prompt: set n=1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass
class Request:
    """One prompt: an id (for lineage) and its chat messages."""

    request_id: str
    messages: list[dict]


@dataclass
class Completion:
    text: str
    num_tokens: int
    logprob_sum: float | None
    finish_reason: str  # "stop" (EOS or a stop string) or "length"


@dataclass
class GeneratorInfo:
    backend: str
    model: str
    extra: dict = field(default_factory=dict)


ProgressFn = Callable[[int], None]


class Generator(ABC):
    """Backend interface: `generate(requests, params) -> [[Completion] * n for each request]`."""

    info: GeneratorInfo

    @abstractmethod
    def generate(self, requests: list[Request], params: SamplingParams, progress: ProgressFn | None = None) -> list[list[Completion]]:
        """Return `params.n` completions per request, in request order; call `progress(k)` as k requests finish."""

    def close(self) -> None:
        """Free the model (and GPU memory)."""


def cut_at_stop(text: str, stops: tuple[str, ...] | list[str]) -> tuple[str, bool]:
    """Cut `text` before the earliest stop string; report whether one was found.

    >>> cut_at_stop("x = 2\\n\\nQuestion: next", ["Question:"])
    ('x = 2\\n\\n', True)
    """
    best = None
    for s in stops:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (best is None or i < best):
            best = i
    if best is None:
        return text, False
    return text[:best], True
