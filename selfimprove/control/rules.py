"""Stop rules (`control.stop_if`) over a series of observations: per iteration in the loop, per logged step in
training. A rule fires when its condition holds in `patience` observations of its metric in a row; an observation
without the metric neither counts nor breaks the streak."""

from __future__ import annotations

from dataclasses import dataclass

from ..config.control import StopRule


@dataclass(frozen=True)
class Fired:
    """Which rule fired, at which observation (an iteration or a step), with the value that made it fire."""

    rule: StopRule
    at: int
    value: float

    def reason(self, unit: str = "iteration") -> str:
        return f"{self.rule.describe()} (at {unit} {self.at}: {self.value:.4g})"

    def to_dict(self, unit: str = "iteration") -> dict:
        return {"rule": self.rule.model_dump(exclude_none=True), "metric": self.rule.metric, unit: self.at, "value": self.value,
                "reason": self.reason(unit)}


class RuleTracker:
    """Feed observations in order (`observe`); returns the first rule that fires. `significant_drops`: the dev metrics
    whose paired interval of change from the best so far lies below zero (for `drops_by: ci`)."""

    def __init__(self, rules: list[StopRule]):
        self.rules = list(rules)
        self.streak = [0] * len(self.rules)
        self.best: dict[str, float] = {}

    def baseline(self, values: dict[str, float | None]) -> None:
        """The starting point's values (the base model, a training run's step 0): best values so far, never a stop."""
        for metric, v in values.items():
            if v is not None and v == v:
                self.best[metric] = max(self.best.get(metric, float(v)), float(v))

    def observe(self, at: int, values: dict[str, float | None], significant_drops: frozenset[str] | set[str] = frozenset()) -> Fired | None:
        fired = None
        for i, rule in enumerate(self.rules):
            v = values.get(rule.metric)
            if v is None or v != v:  # missing or NaN: no observation
                continue
            if self._holds(rule, float(v), rule.metric in significant_drops):
                self.streak[i] += 1
            else:
                self.streak[i] = 0
            if fired is None and self.streak[i] >= rule.patience:
                fired = Fired(rule, at, float(v))
        self.baseline(values)
        return fired

    def _holds(self, rule: StopRule, v: float, significant_drop: bool) -> bool:
        if rule.below is not None:
            return v < rule.below
        if rule.above is not None:
            return v > rule.above
        if rule.drops_by == "ci":
            return significant_drop
        best = self.best.get(rule.metric)
        return best is not None and best - v > float(rule.drops_by)


def first_firing(rules: list[StopRule], baseline: dict, observations: list[tuple[int, dict, set]]) -> Fired | None:
    """Replay `(at, values, significant_drops)` observations in order after the `baseline` values (the base model's);
    the first rule that fires, or None."""
    tracker = RuleTracker(rules)
    tracker.baseline(baseline)
    for at, values, drops in observations:
        fired = tracker.observe(at, values, drops)
        if fired is not None:
            return fired
    return None
