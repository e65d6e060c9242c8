"""Self-rewarding correction's SFT trajectories (Xiong et al. 2025), from the verify stage's evaluations and
revisions, typed by gold; at most one per first attempt:
- D1, a wrong attempt: `[VERIFY] wrong` (its first evaluation that says so), the correction instruction, a right
  revision; the loss on the evaluation and the revision.
- D3, a right attempt: `[VERIFY] correct` (its first evaluation that says so); the loss on the attempt and the
  evaluation (the paper trains on the attempt here, for stability).
- D2, a right attempt none of whose evaluations says correct: its 'wrong' evaluation, the instruction, a right
  revision; the loss on the revision only.
The instructions are user turns, never trained (multi-turn SFT rows: `training/turn_masks.py`). With `balance`, the
trajectories of right attempts are capped at the number of wrong attempts' (the paper roughly balances them: the
self-evaluation is class-imbalanced otherwise), a seeded random draw of them, after `max_per_prompt` (so the cap
cannot undo the balance).

Rows: `prompt`, `completion` (chat lists), `weight` 1, `prompt_id`, `sample_id` (the attempt), `trajectory`
(D1/D2/D3), `model_ref`. Counts: rows per type, attempts with no trajectory and why.
"""

from __future__ import annotations

import random

from pydantic import Field

from ..columns import Columns
from ..options import Options
from .base import RowBuilder


class SelfVerifyOptions(Options):
    balance: bool = Field(True, description="Cap right attempts' trajectories (D2, D3) at the number of wrong attempts' (D1).")
    max_per_prompt: int | None = Field(None, gt=0, description="Cap trajectories per problem (wrong attempts' D1 first, then by "
                                                               "sample id).")
    seed: int = Field(0, description="Seeds the draw of right attempts' trajectories that `balance` keeps.")


class SelfVerifyTrajectories(RowBuilder):
    name = "self_verify_trajectories"
    version = 2  # 2: balance by a seeded draw after the per-problem cap
    reads = ("prompt_id", "sample_id", "turn", "completion", "model_ref", "parent_id", "correct", "verify_texts", "verify_verdicts",
             "verify_instruction", "evaluation", "revise_instruction")
    writes = ("prompt_id", "prompt", "completion", "weight", "sample_id", "trajectory", "model_ref")
    Options = SelfVerifyOptions
    skip_unit = "samples"
    skip_reasons = {"no_trajectory_wrong": "a wrong attempt with no evaluation saying wrong or no right revision after it",
                    "no_trajectory_right": "a right attempt with no evaluation saying correct, and no right revision after a 'wrong'",
                    "balanced_out": "right attempts' trajectories beyond the wrong attempts' count (balance)",
                    "over_cap": "beyond max_per_prompt"}

    def columns(self) -> Columns:
        return Columns(self.reads, self.optional_reads, self.writes)

    def build(self, samples: list[dict], prompts: dict[str, dict]) -> tuple[list[dict], dict]:
        o = self.options
        revisions: dict[str, list[dict]] = {}
        for s in sorted((s for s in samples if s.get("turn") == 2 and s.get("evaluation")), key=lambda s: s["sample_id"]):
            revisions.setdefault(s["parent_id"], []).append(s)
        counts = {k: 0 for k in ("D1", "D2", "D3", *self.skip_reasons)}
        wrong, right = [], []
        for a in sorted((s for s in samples if (s.get("turn") or 1) == 1 and s.get("verify_texts") is not None), key=lambda s: s["sample_id"]):
            row = self.trajectory(a, prompts[a["prompt_id"]]["messages"], revisions.get(a["sample_id"], []))
            if row is None:
                counts["no_trajectory_right" if a.get("correct") else "no_trajectory_wrong"] += 1
            else:
                (right if a.get("correct") else wrong).append(row)
        rows, per_prompt = [], {}
        for r in sorted(wrong + right, key=lambda r: (r["trajectory"] != "D1", r["sample_id"])):  # the cap keeps the scarce D1 first
            if o.max_per_prompt is not None and per_prompt.get(r["prompt_id"], 0) >= o.max_per_prompt:
                counts["over_cap"] += 1
                continue
            per_prompt[r["prompt_id"]] = per_prompt.get(r["prompt_id"], 0) + 1
            rows.append(r)
        is_right = [r["trajectory"] != "D1" for r in rows]
        n_wrong = is_right.count(False)
        if o.balance and is_right.count(True) > n_wrong:
            right_at = [i for i, v in enumerate(is_right) if v]
            keep = set(random.Random(o.seed).sample(right_at, n_wrong))
            counts["balanced_out"] = len(right_at) - n_wrong
            rows = [r for i, r in enumerate(rows) if not is_right[i] or i in keep]
        rows.sort(key=lambda r: r["sample_id"])
        for r in rows:
            counts[r["trajectory"]] += 1
        counts["rows"] = len(rows)
        return rows, counts

    @staticmethod
    def trajectory(a: dict, problem: list[dict], revisions: list[dict]) -> dict | None:
        """The attempt's one trajectory (D1, D3 or D2, as the module says), or None."""
        verdicts, texts = a["verify_verdicts"], a["verify_texts"]
        attempt = {"role": "assistant", "content": a["completion"]}
        verify = {"role": "user", "content": a["verify_instruction"]}
        fixed = next((r for r in revisions if r.get("correct") is True), None)
        base = {"prompt_id": a["prompt_id"], "weight": 1.0, "sample_id": a["sample_id"], "model_ref": a["model_ref"]}
        if not a.get("correct"):
            if fixed is None:
                return None
            said = {"role": "assistant", "content": fixed["evaluation"]}
            fix = [{"role": "user", "content": fixed["revise_instruction"]}, {"role": "assistant", "content": fixed["completion"]}]
            return dict(base, trajectory="D1", prompt=problem + [attempt, verify], completion=[said, *fix])
        confirmed = next((t for t, v in zip(texts, verdicts) if v == "correct"), None)
        if confirmed is not None:
            return dict(base, trajectory="D3", prompt=list(problem), completion=[attempt, verify, {"role": "assistant", "content": confirmed}])
        if fixed is None:
            return None
        context = [attempt, verify, {"role": "assistant", "content": fixed["evaluation"]}, {"role": "user", "content": fixed["revise_instruction"]}]
        return dict(base, trajectory="D2", prompt=problem + context, completion=[{"role": "assistant", "content": fixed["completion"]}])
