"""Preference pairs by self-consistency (ScPO): for each prompt, a sample of the most-voted answer is chosen and a
sample of the least-voted answer is rejected (ScPO's y+ = argmax V, y- = argmin V over the answers); the prompt is
kept only if the top vote share V+/k reaches `tau`, and the pair weighs the vote margin between chosen and rejected
(V+ - V-)/k (ScPO's; the `vote_margin` column of majority_vote is top minus runner-up, another quantity). With
`unanswered_as_rejected: true` (not ScPO's rule), a sample without an answer (cut off by max_tokens under
`count_unfinished: false`) is rejected ahead of the least-voted answer, with V- = 0: such pairs mostly teach "finish
the answer". A prompt whose two best answers
tie gives no pair (`tie`): neither is the majority. No gold answer is used: where the `gold`
scorer ran, `label_correct` records whether the chosen (pseudo-labelled) answer was right, for the report only.

Rows: `prompt_id`, `prompt` (chat list), `chosen`, `rejected` (assistant turns), `weight`, `margin`, `chosen_id`,
`rejected_id`, `chosen_votes`, `rejected_votes`, `label_correct`, `model_ref`. Counts say how many prompts gave
pairs and why the others gave none: `all_agree` (one answer only), `below_tau`, `tie`, `no_answer`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..groups import by_prompt
from ..options import Options
from .base import RowBuilder
from .pair_rows import AUDIT, PAIR_COLUMNS, audit_counts, pair_prompt, pair_row


class VotePairOptions(Options):
    tau: float = Field(0.5, ge=0, le=1, description="Keep a prompt only if its top vote share V+/k is at least this.")
    pairs_per_prompt: int = Field(1, gt=0, description="Pairs per kept prompt, up to the larger of the chosen and rejected "
                                                       "candidates (the smaller side repeats).")
    weight: Literal["vote_margin", "constant"] = Field("vote_margin", description="vote_margin = (V+ - V-)/k (ScPO), or 1.")
    unanswered_as_rejected: bool = Field(False, description="Reject a sample without an answer (V- = 0) ahead of the least-voted "
                                                            "answer (not ScPO's rule, which pairs answers).")


class VotePairs(RowBuilder):
    name = "vote_pairs"
    reads = ("prompt_id", "sample_id", "completion", "model_ref", "cluster", "vote_count", "vote_share")
    writes = PAIR_COLUMNS + ("chosen_votes", "rejected_votes")
    skip_reasons = {"all_agree": "every answered sample agrees: nothing to reject", "below_tau": "the top answer's vote share is below tau",
                    "tie": "two answers share the top: no majority", "no_answer": "no sample has an answer"}
    audit = AUDIT
    Options = VotePairOptions
    version = 2  # 2: the least-voted answer is rejected ahead of an unanswered sample (ScPO's rule)

    @property
    def weighted(self) -> bool:
        return self.options.weight == "vote_margin"

    def build(self, samples: list[dict], prompts: dict[str, dict]) -> tuple[list[dict], dict]:
        o = self.options
        groups = by_prompt(samples)
        counts = {"prompts_in": len(groups), "prompts_with_pairs": 0, "all_agree": 0, "below_tau": 0, "tie": 0, "no_answer": 0}
        rows = []
        by_id = {s["sample_id"]: s for s in samples}
        for group in groups.values():
            answered = [s for s in group if s.get("cluster") is not None]
            if not answered:
                counts["no_answer"] += 1
                continue
            top_votes = max(s["vote_count"] for s in answered)
            best = [s for s in answered if s["vote_count"] == top_votes]
            top_share = float(best[0]["vote_share"])  # V+/k of the kept samples' best answer
            if top_share < o.tau:
                counts["below_tau"] += 1
                continue
            if len({s["cluster"] for s in best}) > 1:
                counts["tie"] += 1  # two answers share the top: neither is the majority
                continue
            top = best[0]["cluster"]
            chosen = best
            pool = [s for s in group if s.get("cluster") is None] if o.unanswered_as_rejected else []
            if not pool:
                others = [s for s in answered if s["cluster"] != top]
                if not others:
                    counts["all_agree"] += 1
                    continue
                low = min(s["vote_count"] for s in others)
                pool = [s for s in others if s["vote_count"] == low]
            counts["prompts_with_pairs"] += 1
            n = min(o.pairs_per_prompt, max(len(chosen), len(pool)))  # the shorter side repeats
            for c, r in ((chosen[i % len(chosen)], pool[i % len(pool)]) for i in range(n)):
                margin = top_share - (float(r["vote_share"]) if r.get("cluster") is not None else 0.0)
                rows.append(pair_row(pair_prompt(prompts, c, by_id), c, r, margin if o.weight == "vote_margin" else 1.0, margin,
                                     chosen_votes=int(c["vote_count"]), rejected_votes=int(r.get("vote_count") or 0)))
        counts["pairs"] = len(rows)
        counts.update(audit_counts(rows))
        return rows, counts

