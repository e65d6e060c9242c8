"""Preference pairs by self-consistency (ScPO): for each prompt, a sample of the most-voted answer is chosen and a
sample of the least-voted answer (or one without an answer) is rejected; the prompt is kept only if the top vote
share V+/k reaches `tau`, and the pair weighs the vote margin between chosen and rejected (V+ - V-)/k (ScPO's; the
`vote_margin` column of majority_vote is top minus runner-up, another quantity). A prompt whose two best answers
tie gives no pair (`tie`): neither is the majority. No gold answer is used: where the `gold`
scorer ran, `label_correct` records whether the chosen (pseudo-labelled) answer was right, for the report only.

Rows: `prompt_id`, `prompt` (chat list), `chosen`, `rejected` (assistant turns), `weight`, `margin`, `chosen_id`,
`rejected_id`, `chosen_votes`, `rejected_votes`, `label_correct`, `model_ref`. Counts say how many prompts gave
pairs and why the others gave none: `all_agree` (one answer only), `below_tau`, `tie`, `no_answer`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..options import Options
from .base import RowBuilder


class VotePairOptions(Options):
    tau: float = Field(0.5, ge=0, le=1, description="Keep a prompt only if its top vote share V+/k is at least this.")
    pairs_per_prompt: int = Field(1, gt=0, description="Pairs per kept prompt, up to the larger of the chosen and rejected "
                                                       "candidates (the smaller side repeats).")
    weight: Literal["vote_margin", "constant"] = Field("vote_margin", description="vote_margin = (V+ - V-)/k (ScPO), or 1.")
    unanswered_as_rejected: bool = Field(True, description="A sample without an answer counts as V- = 0 (a rejected candidate).")


class VotePairs(RowBuilder):
    name = "vote_pairs"
    reads = ("prompt_id", "sample_id", "completion", "model_ref", "cluster", "vote_count", "vote_share")
    writes = ("prompt_id", "prompt", "chosen", "rejected", "weight", "margin", "chosen_id", "rejected_id", "chosen_votes",
              "rejected_votes", "label_correct", "model_ref")
    Options = VotePairOptions

    @property
    def weighted(self) -> bool:
        return self.options.weight == "vote_margin"

    def build(self, samples: list[dict], prompts: dict[str, dict]) -> tuple[list[dict], dict]:
        o = self.options
        groups: dict[str, list[dict]] = {}
        for s in samples:
            groups.setdefault(s["prompt_id"], []).append(s)
        counts = {"prompts_in": len(groups), "prompts_with_pairs": 0, "all_agree": 0, "below_tau": 0, "tie": 0, "no_answer": 0}
        rows = []
        for pid, group in groups.items():
            answered = [s for s in group if s.get("cluster") is not None]
            if not answered:
                counts["no_answer"] += 1
                continue
            top_votes = max(s["vote_count"] for s in answered)
            top = min(s["cluster"] for s in answered if s["vote_count"] == top_votes)  # ties: as majority_vote ranks them
            chosen = [s for s in answered if s["cluster"] == top]
            top_share = float(chosen[0]["vote_share"])  # V+/k of the kept samples' best answer
            if top_share < o.tau:
                counts["below_tau"] += 1
                continue
            pool = [s for s in group if s.get("cluster") is None] if o.unanswered_as_rejected else []
            if not pool:
                others = [s for s in answered if s["cluster"] != top]
                if not others:
                    counts["all_agree"] += 1
                    continue
                low = min(s["vote_count"] for s in others)
                if low == top_votes:
                    counts["tie"] += 1
                    continue
                pool = [s for s in others if s["vote_count"] == low]
            counts["prompts_with_pairs"] += 1
            n = min(o.pairs_per_prompt, max(len(chosen), len(pool)))  # the shorter side repeats
            for c, r in ((chosen[i % len(chosen)], pool[i % len(pool)]) for i in range(n)):
                margin = top_share - (float(r["vote_share"]) if r.get("cluster") is not None else 0.0)
                rows.append({
                    "prompt_id": pid,
                    "prompt": list(prompts[pid]["messages"]),
                    "chosen": [{"role": "assistant", "content": c["completion"]}],
                    "rejected": [{"role": "assistant", "content": r["completion"]}],
                    "weight": margin if o.weight == "vote_margin" else 1.0,
                    "margin": margin,
                    "chosen_id": c["sample_id"],
                    "rejected_id": r["sample_id"],
                    "chosen_votes": int(c["vote_count"]),
                    "rejected_votes": int(r.get("vote_count") or 0),
                    "label_correct": c.get("correct") if isinstance(c.get("correct"), bool) else None,
                    "model_ref": c["model_ref"],
                })
        counts["pairs"] = len(rows)
        audited = [r["label_correct"] for r in rows if r["label_correct"] is not None]
        if audited:
            counts["pseudo_label_accuracy"] = round(sum(audited) / len(audited), 4)
        return rows, counts

