"""Label-free health monitors: what a model's own samples say about it without a gold answer. Computed on rows that
carry the majority vote's columns (`cluster`, per prompt `majority_answer`), `finish_reason` and `num_tokens`: the
probe stage's samples after every iteration, and GRPO's completions at every logged step.

- `distinct_answers`: distinct answers per prompt (mean); `answer_entropy`: entropy in bits of a prompt's answers
  (mean); both fall towards 0 when the model collapses onto one answer per problem, right or wrong.
- `all_agree`: share of prompts whose samples all give the same answer.
- `vote_margin`: (top votes - runner-up votes) / samples, mean over prompts (and its histogram).
- `mean_length` (tokens), `cutoff_rate` (share cut off by max_tokens).
- `majority_drift`: share of prompts whose majority answer changed since the previous iteration (a fixed probe set).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Callable

from ..groups import by_prompt

MONITORS = ("distinct_answers", "answer_entropy", "all_agree", "vote_margin", "mean_length", "cutoff_rate")
MARGIN_BINS = (0.0, 0.25, 0.5, 0.75, 1.0)

# one line each, for the report
EXPLAIN = {
    "distinct_answers": "distinct answers per prompt: falls towards 1 when the model collapses onto one answer",
    "answer_entropy": "entropy (bits) of a prompt's answers: 0 = every sample gives the same answer",
    "all_agree": "share of prompts whose samples all agree (high and rising with dev falling: a consistent wrong procedure)",
    "vote_margin": "(top - runner-up votes) / samples: how decided the vote is",
    "mean_length": "mean completion length in tokens (a drop can be the model skipping its reasoning)",
    "cutoff_rate": "share of samples cut off by max_tokens",
    "majority_drift": "share of probe prompts whose majority answer changed since the previous iteration",
}


def entropy_bits(counts: list[int]) -> float:
    """Entropy in bits of a distribution given by counts.

    >>> entropy_bits([4]), entropy_bits([2, 2]), round(entropy_bits([3, 1]), 3)
    (0.0, 1.0, 0.811)
    """
    total = sum(counts)
    return float(-sum(c / total * math.log2(c / total) for c in counts if c)) if total else 0.0


def health(rows: list[dict]) -> dict:
    """The monitors over `rows` (first turns grouped by prompt), and `vote_margin_histogram` (counts per MARGIN_BINS
    interval, the last closed). Empty rows give {}."""
    groups = by_prompt([r for r in rows if (r.get("turn") or 1) == 1])
    if not groups:
        return {}
    flat = [r for g in groups.values() for r in g]
    lengths = {"mean_length": sum(float(r.get("num_tokens") or 0) for r in flat) / len(flat),
               "cutoff_rate": sum(r.get("finish_reason") == "length" for r in flat) / len(flat)}
    if not any("cluster" in r for r in flat):  # no vote (code): lengths only
        return {"prompts": len(groups), **lengths}
    distinct, entropy, agree, margin = [], [], [], []
    for g in groups.values():
        votes = Counter(r.get("cluster") for r in g if r.get("cluster") is not None)
        ranked = sorted(votes.values(), reverse=True) + [0, 0]
        distinct.append(len(votes))
        entropy.append(entropy_bits(list(votes.values())))
        agree.append(len(votes) == 1 and ranked[0] == len(g))
        margin.append((ranked[0] - ranked[1]) / len(g))
    hist = [0] * (len(MARGIN_BINS) - 1)
    for m in margin:
        hist[min(len(hist) - 1, sum(m >= edge for edge in MARGIN_BINS[1:-1]))] += 1
    n = len(groups)
    return {
        "prompts": n,
        "distinct_answers": sum(distinct) / n,
        "answer_entropy": sum(entropy) / n,
        "all_agree": sum(agree) / n,
        "vote_margin": sum(margin) / n,
        "vote_margin_histogram": hist,
        **lengths,
    }


def majorities(rows: list[dict]) -> dict[str, str | None]:
    """Each prompt's majority answer (the majority vote's `majority_answer`; None where it has none)."""
    out: dict[str, str | None] = {}
    for r in rows:
        if (r.get("turn") or 1) == 1:
            out.setdefault(str(r["prompt_id"]), r.get("majority_answer"))
    return out


def majority_drift(before: dict[str, str | None], after: dict[str, str | None], same: Callable[[list[tuple[str, str]]], list[bool]]) -> float | None:
    """Share of prompts (in both, with a majority answer in either) whose majority answer is not the same as before
    (`same`: equivalence of answer pairs, e.g. the task's check); losing or gaining a majority counts as a change."""
    common = [p for p in before if p in after and (before[p] is not None or after[p] is not None)]
    if not common:
        return None
    both = [p for p in common if before[p] is not None and after[p] is not None]
    equal = dict(zip(both, same([(before[p], after[p]) for p in both]))) if both else {}
    return sum(not equal.get(p, False) for p in common) / len(common)
