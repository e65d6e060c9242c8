"""Tasks: where prompts come from, how they are phrased, how answers are read and checked.

`task.name` is looked up in `registry.TASKS` (lazy: a task's module is imported when it is used)."""

from __future__ import annotations

from ..config import TaskConfig
from ..prompts import PromptLibrary
from ..registry import TASKS
from .base import Task


def make_task(cfg: TaskConfig, prompts: PromptLibrary) -> Task:
    """The task `cfg.name` names, its options validated (ConfigError naming `task.*` otherwise)."""
    return TASKS.get(cfg.name, "task.name")(cfg, prompts)


__all__ = ["TASKS", "Task", "make_task"]
