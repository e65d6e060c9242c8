"""A weighted sum of earlier scorers' columns as one score (B-STaR's per-sample reward: min-step PRM / 5 + 1[right],
so a right answer always ranks above a wrong one and the PRM orders within each). Booleans count as 1 and 0; a
sample missing a term, or with NaN or an infinity there, gets no score and an error naming it."""

from __future__ import annotations

import math

from pydantic import Field, field_validator

from ..columns import Columns
from ..options import Options
from ..stats import as_number
from .base import Scorer, ScoreResult


class WeightedSumOptions(Options):
    terms: dict[str, float] = Field(description="Column -> weight, e.g. {correct: 1.0, prm_score: 0.2} (B-STaR's score); "
                                                "each column must be written by an earlier scorer.")

    @field_validator("terms")
    @classmethod
    def _not_empty(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("give at least one column and its weight")
        bad = [c for c, w in v.items() if not math.isfinite(w)]
        if bad:
            raise ValueError(f"weights must be finite numbers: {bad}")
        return v


class WeightedSum(Scorer):
    """Column `weighted_score` = sum of weight * value over `terms` (reads exactly those columns)."""

    name = "weighted_sum"
    writes = ("weighted_score",)
    Options = WeightedSumOptions

    def columns(self) -> Columns:
        return Columns(("prompt_id",) + tuple(self.options.terms), (), self.writes)

    def score(self, prompts, samples, progress=None):
        values: list[float | None] = []
        errors: list[str | None] = []
        for s in samples:
            got = {c: as_number(s.get(c), verdicts=True) for c in self.options.terms}
            missing = [c for c, v in got.items() if v is None or not math.isfinite(v)]
            if missing:
                values.append(None)
                errors.append(f"weighted_sum: no finite number in {', '.join(missing)}")
                continue
            values.append(float(sum(w * got[c] for c, w in self.options.terms.items())))
            errors.append(None)
        if progress:
            progress(len(samples))
        return ScoreResult({"weighted_score": values}, errors)

