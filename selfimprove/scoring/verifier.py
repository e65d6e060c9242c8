"""Gold verifier: `correct` = the extracted answer is equivalent (math-verify) to the prompt's reference."""

from __future__ import annotations

from ..columns import Columns
from .base import Scorer, ScoreResult


class GoldVerifier(Scorer):
    """Adds `correct` (bool; `outcome` too for code tasks). Prompts without a reference get `correct = None` and an error."""

    name = "gold"
    writes = ("correct", "outcome")  # what it may write: `outcome` only for code tasks

    def columns(self) -> Columns:
        return Columns(self.reads, (), ("correct", "outcome") if self.task.outcome_column else ("correct",))

    def score(self, prompts, samples, progress=None):
        refs, answers, idx, errors = [], [], [], [None] * len(samples)
        correct: list[bool | None] = [None] * len(samples)
        for i, s in enumerate(samples):
            ref = prompts[s["prompt_id"]].get("reference")
            if ref in (None, ""):
                errors[i] = "gold: prompt has no reference answer"
                continue
            refs.append(ref)
            answers.append(s.get("answer"))
            idx.append(i)
        outcome: list[str | None] = [None] * len(samples)
        for i, d in zip(idx, self.task.check_detailed(refs, answers, progress)):
            correct[i] = d["correct"]
            errors[i] = f"gold: {d['error']}" if d["error"] else None
            outcome[i] = d.get("outcome")
        columns = {"correct": correct}
        if self.task.outcome_column:
            columns["outcome"] = outcome
        return ScoreResult(columns, errors)
