"""Run scorers over a table of samples: extract each completion's answer, then add every scorer's columns and
`scorer_errors`. Used by the loop's score stage, `selfimprove eval`, `selfimprove judge` and judge diagnostics;
needs no run context (model-based scorers must be bound first: `judge_base.bind_scorers`)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, ContextManager

from ..tasks.base import Task
from .base import Scorer

ProgressFactory = Callable[[str, int | None], ContextManager]


@contextmanager
def no_progress(description: str, total: int | None):
    class _Quiet:
        def advance(self, k: int = 1) -> None:
            pass

        def update(self, done: int, total: int | None = None) -> None:
            pass

    yield _Quiet()


def score_samples(scorers: list[Scorer], task: Task, prompts: dict[str, dict], samples: list[dict], label: str = "score",
                  progress: ProgressFactory | None = None) -> list[dict]:
    """The samples plus `answer`, every scorer's columns and `scorer_errors` (joined messages, '' when none).

    `prompts` maps prompt_id -> prompt row; `progress(description, total)` is a context manager yielding a bar
    with `advance(k)` / `update(done)` (the run context's `progress`), or None for none."""
    unbound = [sc.name for sc in scorers if sc.needs_model and not sc.bound]
    if unbound:
        raise ValueError(f"model-based scorers {unbound} are not bound to a model (judge_base.bind_scorers or scorer.use)")
    progress = progress or no_progress
    rows = [dict(s, answer=task.read_answer(s["completion"], prompts.get(s["prompt_id"]))) for s in samples]
    errors: list[list[str]] = [[] for _ in rows]
    for scorer in scorers:
        with progress(f"{label} ({scorer.name})", len(rows)) as bar:
            res = scorer.score(prompts, rows, progress=bar.advance)
            bar.update(len(rows))
            for col, values in res.columns.items():
                for r, v in zip(rows, values):
                    r[col] = v
        for e, err in zip(errors, res.errors):
            if err:
                e.append(err)
    for r, e in zip(rows, errors):
        r["scorer_errors"] = "; ".join(e)
    return rows
