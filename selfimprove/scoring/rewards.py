"""Scorers as TRL reward functions: `as_reward_func(scorer, column)` returns a callable with TRL's signature
(`prompts`, `completions`, `completion_ids`, dataset columns as keyword lists) that scores the batch with
the scorer and returns one float (or None: no reward) per completion.

The scorer sees the whole batch at once, grouped by `prompt_id` (a dataset column; without one, by the
prompt itself), so a majority vote counts every sample of a group that the batch holds. On one process TRL
passes whole groups; across processes a group is split between ranks, and the caller must gather it first.

    from selfimprove.scoring import make_scorer
    reward = as_reward_func(make_scorer("majority_vote", task), "is_majority")   # TTRL's reward
    GRPOTrainer(..., reward_funcs=[reward])
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

from ..store import stable_hash
from .base import Scorer


def reward_value(v: Any) -> float | None:
    """A scorer value as a reward: True/False -> 1.0/0.0, numbers as floats, anything else None (TRL: NaN, ignored).

    >>> [reward_value(x) for x in (True, False, 3, None, "x")]
    [1.0, 0.0, 3.0, None, None]
    """
    if hasattr(v, "item") and not isinstance(v, (list, tuple)):  # numpy scalars
        v = v.item()
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, numbers.Real):
        return None if math.isnan(float(v)) else float(v)
    return None


def completion_text(completion: Any) -> str:
    """A TRL completion (a string, or a list of chat messages) as the reply text."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")


def trl_batch(task, prompts: list, completions: list, columns: dict[str, list]) -> tuple[dict[str, dict], list[dict]]:
    """TRL's reward inputs as our prompt rows and sample rows (`prompt_id`, `sample_id`, `completion`, `answer`)."""
    prompt_rows: dict[str, dict] = {}
    samples = []
    for i, (p, c) in enumerate(zip(prompts, completions)):
        messages = p if isinstance(p, list) else [{"role": "user", "content": str(p)}]
        pid = str(columns["prompt_id"][i]) if "prompt_id" in columns else stable_hash(messages)[:16]
        if pid not in prompt_rows:
            users = [m["content"] for m in messages if m.get("role") == "user"]
            question = columns["question"][i] if "question" in columns else (users[-1] if users else "")
            reference = columns["reference"][i] if "reference" in columns else ""
            prompt_rows[pid] = {"prompt_id": pid, "messages": messages, "question": question, "reference": reference or "", "meta": "{}"}
        text = completion_text(c)
        samples.append({"prompt_id": pid, "sample_id": f"{pid}/r{i:05d}", "completion": text, "answer": task.extract_answer(text)})
    return prompt_rows, samples


def as_reward_func(scorer: Scorer, column: str | None = None, *, name: str | None = None,
                   value: Callable[[Any], float | None] = reward_value) -> Callable[..., list[float | None]]:
    """A TRL reward function from `scorer`: the value of its `column` (default: its first) per completion.

    Model-based scorers must be bound first (`scorer.bind(...)` or `scorer.use(generator)`). A sample the scorer
    could not score (an error, no answer) gets None, which TRL ignores rather than counting as 0."""
    column = column or scorer.writes()[0]
    if column not in scorer.writes():
        raise ValueError(f"scorer {scorer.name} writes {list(scorer.writes())}, not {column!r}")

    def reward(prompts, completions, completion_ids=None, **columns) -> list[float | None]:
        prompt_rows, samples = trl_batch(scorer.task, prompts, completions, columns)
        result = scorer.score(prompt_rows, samples)
        return [value(v) for v in result.columns[column]]

    reward.__name__ = name or f"{scorer.name}:{column}"
    reward.__qualname__ = reward.__name__
    reward.__doc__ = f"Reward = column {column!r} of scorer {scorer.name!r} (selfimprove)."
    return reward
