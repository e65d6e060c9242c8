"""Scorers as TRL reward functions: `as_reward_func(scorer, column)` returns a callable with TRL's signature
(`prompts`, `completions`, `completion_ids`, dataset columns as keyword lists) that scores the batch with
the scorer and returns one float (or None: no reward) per completion.

The scorer sees the whole batch at once, grouped by `prompt_id` (a dataset column; without one, by the
prompt itself), so a majority vote counts every sample of a group that the batch holds. On one process TRL
passes whole groups; across processes TRL splits a group between ranks, so a groupwise scorer (majority vote,
pairwise and meta judges) first gathers every rank's batch (`torch.distributed.all_gather_object`), scores the
whole, and returns its own rank's slice.

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


def trl_batch(task, prompts: list, completions: list, columns: dict[str, list], completion_ids: list | None = None,
              eos_token_id: int | set[int] | None = None) -> tuple[dict[str, dict], list[dict]]:
    """TRL's reward inputs as our prompt rows and sample rows (`prompt_id`, `sample_id`, `completion`, `answer`; with
    `completion_ids` also `num_tokens`, and with `eos_token_id` `finish_reason`: `length` when no EOS ends the ids)."""
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
        sample = {"prompt_id": pid, "sample_id": f"{pid}/r{i:05d}", "completion": text, "answer": task.read_answer(text, prompt_rows[pid])}
        if completion_ids is not None:
            ids = list(completion_ids[i])
            sample["num_tokens"] = len(ids)
            if eos_token_id is not None:
                eos = eos_token_id if isinstance(eos_token_id, (set, frozenset, list, tuple)) else {eos_token_id}
                sample["finish_reason"] = "stop" if ids and ids[-1] in eos else "length"
        samples.append(sample)
    return prompt_rows, samples


def world() -> tuple[int, int]:
    """(rank, number of processes) of the torch.distributed group, (0, 1) without one."""
    import sys

    dist = sys.modules.get("torch.distributed")  # only when torch is in use already
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_batch(payload: dict) -> tuple[dict, slice]:
    """Every rank's batch concatenated in rank order (all values are per-completion lists), and this rank's slice."""
    import torch.distributed as dist

    rank, size = world()
    parts: list = [None] * size
    dist.all_gather_object(parts, payload)
    start = sum(len(p["prompts"]) for p in parts[:rank])
    merged = {k: [v for p in parts for v in p[k]] if isinstance(payload[k], list) else payload[k] for k in payload}
    merged["columns"] = {c: [v for p in parts for v in p["columns"][c]] for c in payload["columns"]}
    return merged, slice(start, start + len(payload["prompts"]))


class RewardFunction:
    """A scorer as a TRL reward function (see `as_reward_func`). An object, not a closure, so it pickles: TRL's
    asynchronous GRPO sends reward functions to another process. A model-based scorer's model access does not travel
    with it (generators hold models): bind the scorer again there (`scorer.bind(...)` / `scorer.use(...)`)."""

    def __init__(self, scorer: Scorer, column: str, name: str, value: Callable[[Any], float | None],
                 eos_token_id: int | set[int] | None, on_result: Callable[..., None] | None, trained: tuple[int, int] | None = None):
        self.scorer, self.column, self.value, self.eos_token_id, self.on_result = scorer, column, value, eos_token_id, on_result
        self.trained = trained
        self.__name__ = self.__qualname__ = name  # TRL names the reward's logged columns after it
        self.__doc__ = f"Reward = column {column!r} of scorer {scorer.name!r} (selfimprove)."

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["scorer"] = self.scorer.without_models() if hasattr(self.scorer, "without_models") else self.scorer
        return state

    def __call__(self, prompts, completions, completion_ids=None, **columns) -> list[float | None]:
        scorer = self.scorer
        log_metric = columns.pop("log_metric", None)
        columns = {k: v for k, v in columns.items() if k not in ("trainer_state", "log_extra", "environments")}
        part = slice(None)
        rank, size = world()
        if scorer.groupwise and size > 1:
            merged, part = gather_batch({"prompts": list(prompts), "completions": list(completions),
                                         "ids": [list(x) for x in completion_ids] if completion_ids is not None else [None] * len(prompts),
                                         "columns": {k: list(v) for k, v in columns.items()}})
            prompts, completions, columns = merged["prompts"], merged["completions"], merged["columns"]
            completion_ids = merged["ids"] if completion_ids is not None else None
        prompt_rows, samples = trl_batch(scorer.task, prompts, completions, columns, completion_ids, self.eos_token_id)
        result = scorer.score(prompt_rows, samples)
        if self.on_result is not None and rank == 0 and (scorer.groupwise or size == 1):  # whole groups only
            self.on_result(prompt_rows, samples, result, log_metric)
        values = [self.value(v) for v in result.columns[self.column][part]]
        if self.trained is None:
            return values
        group, k = self.trained  # TRL lays groups out contiguously, in rank order: this rank's first row's global index
        first = part.start if part.start is not None else rank * len(values)
        return [v if (first + i) % group < k else None for i, v in enumerate(values)]


def as_reward_func(scorer: Scorer, column: str | None = None, *, name: str | None = None,
                   value: Callable[[Any], float | None] = reward_value, eos_token_id: int | set[int] | None = None,
                   on_result: Callable[..., None] | None = None, trained: tuple[int, int] | None = None) -> RewardFunction:
    """A TRL reward function from `scorer`: the value of its `column` (default: its first) per completion.

    Model-based scorers must be bound first (`scorer.bind(...)` or `scorer.use(generator)`). A sample the scorer
    could not score (an error, no answer) gets None (TRL: NaN); a completion every reward function leaves None gets
    no advantage, but where other reward functions score it TRL sums with `nansum`, so None counts as 0 there.
    `eos_token_id` (one id or a set) lets a completion that does not end in one read as `finish_reason: length`.
    `on_result(prompt_rows, samples, result, log_metric)` sees every scored batch (the whole gathered batch, on rank 0
    only; with several processes only a groupwise scorer's, whose batch holds whole groups), for monitors.
    `trained=(group, k)`: only the first k of each group of `group` completions (TRL lays a group out contiguously) get
    a reward; the rest score and vote but get None (no advantage; TRL leaves them out of the
    group baseline). The result pickles (`RewardFunction`)."""
    writes = scorer.columns().writes
    column = column or writes[0]
    if column not in writes:
        raise ValueError(f"scorer {scorer.name} writes {list(writes)}, not {column!r}")
    return RewardFunction(scorer, column, name or f"{scorer.name}:{column}", value, eos_token_id, on_result, trained)
