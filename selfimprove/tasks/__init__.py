"""Task registry: a YAML `task.name` maps to one Task class."""

from __future__ import annotations

from ..config import ConfigError, TaskConfig
from ..prompts import PromptLibrary
from .arithmetic import ArithmeticTask
from .base import Task
from .code import HumanEvalTask, MBPPTask
from .freeform import FreeformTask
from .math import GSM8KTask, MATH500Task

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (ArithmeticTask, GSM8KTask, MATH500Task, HumanEvalTask, MBPPTask, FreeformTask)}


def make_task(cfg: TaskConfig, prompts: PromptLibrary) -> Task:
    cls = TASKS.get(cfg.name)
    if cls is None:
        raise ConfigError(f"task.name: unknown task {cfg.name!r}; known tasks: {sorted(TASKS)}")
    return cls(cfg, prompts)


__all__ = ["TASKS", "Task", "make_task"]
