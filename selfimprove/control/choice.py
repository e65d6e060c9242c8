"""The model a run names and the start of each iteration, chosen on the dev split: the best iteration so far (ties go
to the earlier one), and, with rollback, an iteration clearly worse than the best (the paired 95% bootstrap interval of
its per-problem difference from the best lies below zero) is not the next iteration's start: the best is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..stats import paired_diff_ci


@dataclass(frozen=True)
class DevScore:
    """One model's dev metric: its mean and its per-problem values (by prompt id)."""

    iteration: int
    value: float
    per_problem: dict[str, float]


@dataclass(frozen=True)
class Step:
    """What the controller decided after one iteration."""

    iteration: int
    value: float
    best_before: int
    diff: tuple[float, float, float]  # vs the best before it: difference, low, high
    best: int  # the best iteration after this one
    clearly_worse: bool
    next_start: int

    def action(self, rollback: bool, final: bool = False) -> str:
        """What the controller did, in words; `final`: no iteration follows (the last one, or the run stopped here)."""
        if self.best == self.iteration:
            return "best so far"
        if self.clearly_worse:
            if final:
                return f"worse than iter {self.best_before} beyond its interval: not chosen (the run names iter {self.best})"
            return f"worse than iter {self.best_before} beyond its interval: " + (
                f"rolled back, the next iteration starts from iter {self.next_start}" if rollback else "kept going (rollback off)")
        return f"not better than iter {self.best}"

    def to_dict(self, rollback: bool, final: bool = False) -> dict:
        d, lo, hi = self.diff
        return {"iteration": self.iteration, "dev": self.value, "best_before": self.best_before, "diff_vs_best": d, "diff_ci": [lo, hi],
                "clearly_worse": self.clearly_worse, "best": self.best, "next_start": self.next_start,
                "rolled_back": bool(rollback and self.clearly_worse and not final), "action": self.action(rollback, final)}


def paired(a: DevScore, b: DevScore, resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """`a - b` over the problems both were scored on: difference and its paired 95% interval."""
    pids = sorted(set(a.per_problem) & set(b.per_problem))
    if not pids:
        return float("nan"), float("nan"), float("nan")
    return paired_diff_ci(np.array([a.per_problem[p] for p in pids]), np.array([b.per_problem[p] for p in pids]), resamples, seed)


def decide(scores: list[DevScore], rollback: bool, resamples: int = 1000, seed: int = 0) -> list[Step]:
    """Steps for iterations 1.. given every iteration's dev score in order (`scores[0]`: the base model)."""
    best = scores[0]
    steps = []
    for s in scores[1:]:
        diff = paired(s, best, resamples, seed)
        worse = bool(diff[2] < 0)
        before = best.iteration
        if s.value > best.value:
            best = s
        steps.append(Step(s.iteration, s.value, before, diff, best.iteration, worse, best.iteration if (rollback and worse) else s.iteration))
    return steps
