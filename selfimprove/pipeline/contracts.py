"""Column contracts, checked before any model loads: every scorer, row builder and trainer declares the columns it
reads, reads when present, and writes (`columns()`, one `Columns` vocabulary), every filter the columns it reads, and
the chain generate -> score -> select -> train must supply each read column from an earlier step. A missing column
is named with the step that reads it and the registered scorers that would produce it, instead of a stage that
silently keeps nothing or fails late."""

from __future__ import annotations

from ..errors import ConfigError
from ..registry import SCORERS
from ..scoring.base import SAMPLE_COLUMNS

PROMPT_COLUMNS = ("prompt_id", "messages", "reference", "task", "question", "meta")


def producers(column: str) -> list[str]:
    """Registered scorers that may write `column` (their class's `writes`; imports the scorer modules, none loads torch)."""
    return [name for name in SCORERS.names() if column in getattr(SCORERS.get(name), "writes", ())]


def _missing(reader: str, needed, available: set[str], hint: str) -> None:
    missing = [c for c in needed if c not in available]
    if not missing:
        return
    parts = []
    for c in missing:
        by = producers(c)
        parts.append(f"`{c}` ({'written by ' + ', '.join(by) if by else 'no registered scorer writes it'})")
    raise ConfigError(f"{reader} reads {', '.join(parts)}, which no earlier step provides; {hint}")


def check_chain(scorers, stages: list[str], filters: dict[str, tuple[str, ...]] | None = None, builder=None, trainer=None,
                generated: tuple[str, ...] = SAMPLE_COLUMNS) -> dict:
    """Raise ConfigError at the first step that reads a column nothing before it writes; return the columns
    available after each step (for docs and tests)."""
    if trainer is not None and "train" in stages and "select" not in type(trainer).stages:
        missing = [c for c in trainer.columns().reads if c not in PROMPT_COLUMNS]
        if missing:
            raise ConfigError(f"train.method {trainer.name} trains on the prompt table (it has no select stage) but reads {missing}; "
                              f"prompt rows have {list(PROMPT_COLUMNS)}")
    available = set(generated)
    after: dict[str, list[str]] = {"generate": sorted(available)}
    if "score" not in stages:
        return after
    for i, sc in enumerate(scorers):
        cols = sc.columns()
        _missing(f"score[{i}] ({sc.name})", cols.reads, available, "add the scorer that writes it before this one in `score:`")
        available |= set(cols.writes)
    after["score"] = sorted(available)
    if "select" not in stages:
        return after
    for key, cols in (filters or {}).items():
        _missing(f"select.{key}", cols, available, f"add a scorer that writes it to `score:`, or turn select.{key} off")
    if builder is not None:
        cols = builder.columns()
        _missing(f"select.builder ({builder.name})", cols.reads, available, "add the scorer that writes it to `score:`")
        rows = set(cols.writes)
        after["select"] = sorted(rows)
        if trainer is not None and "train" in stages:
            missing = [c for c in trainer.columns().reads if c not in rows]
            if missing:
                raise ConfigError(f"train.method {trainer.name} reads {missing}, which select.builder {builder.name} does not write "
                                  f"(it writes {sorted(rows)}); choose a builder made for this method")
            if builder.weighted and not trainer.supports_weights:
                raise ConfigError(f"select.builder {builder.name} gives rows weights, but train.method {trainer.name} trains every row "
                                  "with weight 1; drop the builder's weight option or choose a method that supports weights")
    return after
