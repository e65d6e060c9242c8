"""One scorer interface for the loop, `eval`, `judge` and (later) GRPO rewards.

A scorer maps a batch of samples (rows with `prompt_id`, `completion`, `answer`) plus their prompt
rows to per-sample values. It never raises on one bad sample: it returns an error string for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from ..config import ConfigError, ScorerConfig
from ..tasks.base import Task


@dataclass
class ScoreResult:
    """Per-sample columns (same order as the samples) and per-sample error (None when fine)."""

    columns: dict[str, list[Any]]
    errors: list[str | None] = field(default_factory=list)


class Scorer(ABC):
    name: ClassVar[str]
    output_columns: ClassVar[tuple[str, ...]]

    def __init__(self, task: Task, options: dict):
        self.task = task
        unknown = set(options) - set(self.option_names())
        if unknown:
            raise ConfigError(f"score[{self.name}].options: unknown option(s) {sorted(unknown)}; known: {self.option_names()}")
        self.options = options

    @classmethod
    def option_names(cls) -> list[str]:
        return []

    @abstractmethod
    def score(self, prompts: dict[str, dict], samples: list[dict], progress: "Progress | None" = None) -> ScoreResult:
        """Score `samples` (each has `prompt_id`, `completion`, `answer`); `prompts` maps prompt_id -> prompt row.

        `progress(k)`, when given, is called as samples finish (long scorers: sandbox runs, judges)."""


SCORERS: dict[str, type[Scorer]] = {}


def register(cls: type[Scorer]) -> type[Scorer]:
    SCORERS[cls.name] = cls
    return cls


def make_scorers(configs: list[ScorerConfig], task: Task) -> list[Scorer]:
    out = []
    for i, c in enumerate(configs):
        cls = SCORERS.get(c.name)
        if cls is None:
            raise ConfigError(f"score[{i}].name: unknown scorer {c.name!r}; known scorers: {sorted(SCORERS)}")
        out.append(cls(task, c.options))
    return out


def group_by_prompt(samples: list[dict]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s["prompt_id"], []).append(i)
    return groups


Progress = Callable[[int], None]
