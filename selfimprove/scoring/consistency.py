"""Self-consistency: cluster each prompt's answers by equivalence and count votes.

Per sample: `cluster`, `vote_count` (V, size of the sample's answer cluster), `vote_share` (V/k,
k = samples of the prompt), `is_majority` (in the top cluster; ties broken by the cluster seen first).
Per prompt (repeated on each of its samples): `top_share` (V+/k), `runner_up_share` (V-/k),
`vote_margin` = (top - runner-up)/k (ScPO's margin is against the least-voted answer: vote_pairs computes it),
`majority_answer`, and `abstain` when the top share is below
the `abstain_below` option (default 0: never) or, with `ties: none`, when two answers share the top. A sample with
no answer has V = 0 and is never in the majority; with `count_unfinished: false` a sample cut off by max_tokens
has no answer either (its last number is not a conclusion).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..columns import Columns
from ..groups import indices_by_prompt
from ..options import Options
from .base import Scorer, ScoreResult


class MajorityOptions(Options):
    abstain_below: float = Field(0.0, ge=0, le=1, description="`abstain` is true where the top vote share is below this.")
    count_unfinished: bool = Field(True, description="A sample cut off by max_tokens votes with the answer read from its partial "
                                                     "text; false: it has no answer (V = 0) and still counts in k.")
    ties: Literal["first_seen", "none"] = Field("first_seen", description="Top clusters with equal votes: the one seen first is the "
                                                                          "majority, or none is (no `majority_answer`, no `is_majority`; "
                                                                          "for rewards, where an arbitrary winner is noise).")


def cluster_answers(answers: list[str | None], same) -> list[int | None]:
    """Cluster id per answer (None for no answer). `same(pairs)` -> [(bool, err)], e.g. `Equivalence.same`.

    Identical strings share a cluster without a check; distinct strings are compared with each
    cluster's first member (equivalence is treated as transitive).
    """
    reps: list[str] = []
    by_string: dict[str, int] = {}
    out: list[int | None] = []
    for a in answers:
        if a is None or not str(a).strip():
            out.append(None)
            continue
        a = str(a).strip()
        if a in by_string:
            out.append(by_string[a])
            continue
        cid = None
        if reps:
            verdicts = same([(r, a) for r in reps])
            cid = next((j for j, (ok, _err) in enumerate(verdicts) if ok), None)
        if cid is None:
            reps.append(a)
            cid = len(reps) - 1
        by_string[a] = cid
        out.append(cid)
    return out


class MajorityVote(Scorer):
    name = "majority_vote"
    groupwise = True
    # programs are not answers to compare: `check` would read one program as the other's tests
    task_kinds = ("answer",)
    unsupported_hint = "For code, reward the tests' verdict (`gold`: the task's tests in the sandbox) or a judge."
    writes = ("cluster", "vote_count", "vote_share", "is_majority", "top_share", "runner_up_share", "vote_margin", "majority_answer", "abstain")

    Options = MajorityOptions

    def columns(self) -> Columns:
        """Reads `finish_reason` too when unfinished samples do not vote."""
        return Columns(self.reads + (() if self.options.count_unfinished else ("finish_reason",)), (), self.writes)

    def _answer(self, sample: dict):
        if not self.options.count_unfinished and sample.get("finish_reason") == "length":
            return None
        return sample.get("answer")

    def _same(self, pairs):
        return self.task.check([a for a, _ in pairs], [b for _, b in pairs])

    def score(self, prompts, samples, progress=None):
        n = len(samples)
        abstain_below = self.options.abstain_below
        cols: dict[str, list] = {c: [None] * n for c in self.writes}
        for _pid, idx in indices_by_prompt(samples).items():
            ids = cluster_answers([self._answer(samples[i]) for i in idx], self._same)
            sizes: dict[int, int] = {}
            for c in ids:
                if c is not None:
                    sizes[c] = sizes.get(c, 0) + 1
            ranked = sorted(sizes, key=lambda c: (-sizes[c], c))  # most votes, then first seen
            k = len(idx)
            top_v = sizes[ranked[0]] if ranked else 0
            second_v = sizes[ranked[1]] if len(ranked) > 1 else 0
            tied = second_v == top_v and top_v > 0 and self.options.ties == "none"
            top_answer = None if tied else next((str(samples[i].get("answer")).strip() for i, c in zip(idx, ids) if ranked and c == ranked[0]), None)
            for i, c in zip(idx, ids):
                v = sizes.get(c, 0) if c is not None else 0
                cols["cluster"][i] = c
                cols["vote_count"][i] = v
                cols["vote_share"][i] = v / k
                cols["is_majority"][i] = c is not None and c == ranked[0] and not tied
                cols["top_share"][i] = top_v / k
                cols["runner_up_share"][i] = second_v / k
                cols["vote_margin"][i] = (top_v - second_v) / k
                cols["majority_answer"][i] = top_answer
                cols["abstain"][i] = top_v / k < abstain_below or tied
        return ScoreResult(cols, [None] * n)
