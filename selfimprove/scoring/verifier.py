"""Gold verifier: `correct` = the extracted answer is equivalent (math-verify) to the prompt's reference."""

from __future__ import annotations

from .base import ScoreResult, Scorer, register


@register
class GoldVerifier(Scorer):
    """Adds `correct` (bool). Prompts without a reference get `correct = None` and an error."""

    name = "gold"
    output_columns = ("correct",)

    def score(self, prompts, samples):
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
        for i, (ok, err) in zip(idx, self.task.check(refs, answers)):
            correct[i] = ok
            errors[i] = f"gold: {err}" if err else None
        return ScoreResult({"correct": correct}, errors)
