"""Preference pairs by judge score (Self-Rewarding; with `rho` > 0 Meta-Rewarding's length control): per prompt, with
S_max and S_min the highest and lowest scores of its judged samples, the chosen sample is the shortest with a score
in [(1-rho) S_max + rho S_min, S_max] and the rejected the longest in [S_min, (1-rho) S_min + rho S_max]; with rho = 0,
the best and the worst, ties broken by the lower judge variance, then the first sample. A prompt gives no pair when
fewer than two samples have a score (`unscored`: unparsable judgments are dropped, never read as 0) or when every
score ties (`all_tie`, or `gap_too_small` under `min_gap`). With `resolution`, scores are first rounded to multiples of
it, so a judge's continuous expected score (`mode: logprobs`) ties where the paper's scores would: 1 for integer
scores, 1/3 for Self-Rewarding's mean of three integer judgments.

Rows: the pair columns (`pair_rows.PAIR_COLUMNS`) plus `chosen_score`, `rejected_score`; `margin` = S_chosen - S_rejected.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..columns import Columns
from ..groups import by_prompt
from ..options import Options
from ..stats import as_number
from .base import RowBuilder
from .pair_rows import AUDIT, PAIR_COLUMNS, audit_counts, pair_prompt, pair_row


class JudgePairOptions(Options):
    score_column: str = Field("judge_score", description="The sample column holding the judge's score (pointwise_judge's "
                                                         "`judge_score`, p_true's `p_true`, reward_model's `reward`, ...).")
    rho: float = Field(0.0, ge=0, lt=0.5, description="Length control band width (Meta-Rewarding): 0 = best vs worst.")
    min_gap: float = Field(0.0, ge=0, description="Keep a prompt only if S_max - S_min is larger than this.")
    resolution: float | None = Field(None, gt=0, description="Round scores to multiples of this before pairing (1: integer "
                                                             "scores; 0.3333: a mean of three integer judgments); None: as given.")
    weight: Literal["constant", "score_gap"] = Field("constant", description="1, or the pair's score gap.")


def _score(s: dict, column: str) -> float | None:
    return as_number(s.get(column))


class JudgePairs(RowBuilder):
    name = "judge_pairs"
    reads = ("prompt_id", "sample_id", "completion", "model_ref")
    optional_reads = ("judge_var",)  # breaks ties between equal scores when a judge wrote it
    writes = PAIR_COLUMNS + ("chosen_score", "rejected_score")
    skip_reasons = {"unscored": "fewer than two samples have a score", "all_tie": "every score ties",
                    "gap_too_small": "the best and worst scores are within min_gap"}
    audit = AUDIT
    Options = JudgePairOptions

    def columns(self) -> Columns:
        return Columns(self.reads + (self.options.score_column,), self.optional_reads, self.writes)

    @property
    def weighted(self) -> bool:
        return self.options.weight == "score_gap"

    def build(self, samples: list[dict], prompts: dict[str, dict]) -> tuple[list[dict], dict]:
        o = self.options
        groups = by_prompt(samples)
        counts = {"prompts_in": len(groups), "prompts_with_pairs": 0, "unscored": 0, "all_tie": 0, "gap_too_small": 0}
        rows = []
        by_id = {s["sample_id"]: s for s in samples}
        for group in groups.values():
            scored = [(s, sc if o.resolution is None else round(round(sc / o.resolution) * o.resolution, 6))
                      for s in group if (sc := _score(s, o.score_column)) is not None]
            if len(scored) < 2:
                counts["unscored"] += 1
                continue
            hi, lo = max(sc for _, sc in scored), min(sc for _, sc in scored)
            if hi == lo:
                counts["all_tie"] += 1
                continue
            if hi - lo <= o.min_gap:
                counts["gap_too_small"] += 1
                continue
            top = [(s, sc) for s, sc in scored if sc >= (1 - o.rho) * hi + o.rho * lo]
            bottom = [(s, sc) for s, sc in scored if sc <= (1 - o.rho) * lo + o.rho * hi]
            if o.rho > 0:  # shortest good vs longest bad: a judge that likes length cannot pull answers longer
                chosen, c_score = min(top, key=lambda t: len(t[0]["completion"]))
                rejected, r_score = max(bottom, key=lambda t: len(t[0]["completion"]))
            else:
                chosen, c_score = min(top, key=lambda t: _score(t[0], "judge_var") or 0.0)
                rejected, r_score = min(bottom, key=lambda t: _score(t[0], "judge_var") or 0.0)
            margin = c_score - r_score
            counts["prompts_with_pairs"] += 1
            rows.append(pair_row(pair_prompt(prompts, chosen, by_id), chosen, rejected, margin if o.weight == "score_gap" else 1.0, margin,
                                 chosen_score=c_score, rejected_score=r_score))
        counts["pairs"] = len(rows)
        counts.update(audit_counts(rows))
        return rows, counts
