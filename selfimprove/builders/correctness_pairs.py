"""Preference pairs by correctness (the gold verifier; semi-supervised ScPO, DPO on verified samples): per prompt, a
correct sample is chosen and an incorrect one rejected, weight 1. No pair where every sample is right (`all_correct`),
none is (`none_correct`), or the verifier gave no verdict (`unverified`)."""

from __future__ import annotations

from pydantic import Field

from ..groups import by_prompt
from ..options import Options
from .base import RowBuilder
from .pair_rows import AUDIT, PAIR_COLUMNS, audit_counts, pair_prompt, pair_row


class CorrectnessPairOptions(Options):
    pairs_per_prompt: int = Field(1, gt=0, description="Pairs per prompt, up to the larger side (the smaller side repeats).")


class CorrectnessPairs(RowBuilder):
    name = "correctness_pairs"
    reads = ("prompt_id", "sample_id", "completion", "model_ref", "correct")
    writes = PAIR_COLUMNS
    skip_reasons = {"all_correct": "every sample is right: nothing to reject", "none_correct": "no sample is right: nothing to choose",
                    "unverified": "the prompt has no gold answer"}
    audit = AUDIT
    Options = CorrectnessPairOptions

    def build(self, samples: list[dict], prompts: dict[str, dict]) -> tuple[list[dict], dict]:
        groups = by_prompt(samples)
        counts = {"prompts_in": len(groups), "prompts_with_pairs": 0, "all_correct": 0, "none_correct": 0, "unverified": 0}
        rows = []
        by_id = {s["sample_id"]: s for s in samples}
        for group in groups.values():
            right = [s for s in group if s.get("correct") is True]
            wrong = [s for s in group if s.get("correct") is False]
            if not right and not wrong:
                counts["unverified"] += 1
            elif not wrong:
                counts["all_correct"] += 1
            elif not right:
                counts["none_correct"] += 1
            else:
                counts["prompts_with_pairs"] += 1
                n = min(self.options.pairs_per_prompt, max(len(right), len(wrong)))
                rows += [pair_row(pair_prompt(prompts, group[0], by_id), right[i % len(right)], wrong[i % len(wrong)], 1.0, 1.0) for i in range(n)]
        counts["pairs"] = len(rows)
        counts.update(audit_counts(rows))
        return rows, counts
