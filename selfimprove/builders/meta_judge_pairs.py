"""Judge-training pairs (Meta-Rewarding): where the meta-judge ranked a response's judgments (`meta_chosen`,
`meta_rejected` from the `meta_judge` scorer), the judge prompt the judge answered is the row's prompt, the
best-rated judgment is chosen and the worst rejected, so DPO trains the model as a judge. As in the paper, a pair
whose judgments give the same score is dropped (`same_score`), and so is one with a judgment longer than
`max_words` (`too_long`: long judgments are how a judge games a meta-judge); `max_class_share` caps the pairs whose
chosen judgment gives any one score as NeMo's code does (its 0.4: the meta-judge prefers generous judgments, and the
judge drifts to 5 otherwise): pairs are taken in a seeded random order, each only while its score's share of the
pairs taken so far is below the cap (so the first pair is always taken, and a lone score class keeps one pair). Mix
them with actor pairs in `select.builders`, capped at a share (NeMo keeps judge pairs under 15%).

Rows: the pair columns plus `chosen_score`, `rejected_score` (the judgments' own scores) and `elo_gap`.
"""

from __future__ import annotations

import random

from pydantic import Field

from ..options import Options
from ..stats import as_number
from .base import RowBuilder
from .pair_rows import PAIR_COLUMNS


class MetaJudgePairOptions(Options):
    max_words: int | None = Field(200, gt=0, description="Drop a pair with a judgment longer than this many words (None: keep).")
    max_class_share: float | None = Field(None, gt=0, le=1, description="NeMo's cap (its 0.4): a pair is kept only while "
                                                                        "its chosen score's share of the pairs kept so far "
                                                                        "is below this; None: no cap.")
    seed: int = 0


class MetaJudgePairs(RowBuilder):
    name = "meta_judge_pairs"
    version = 2  # 2: the class cap is NeMo's rule (class_capped)
    reads = ("prompt_id", "sample_id", "model_ref", "judge_prompt", "judge_raw", "judge_scores", "meta_chosen", "meta_rejected")
    optional_reads = ("meta_elo", "meta_battles")
    writes = PAIR_COLUMNS + ("chosen_score", "rejected_score", "elo_gap")
    skip_unit = "samples"
    skip_reasons = {"not_meta_judged": "not meta-judged (only each prompt's most disputed response is, by default)",
                    "no_battles": "meta-judged, but its judgments gave no two different scores to compare",
                    "meta_unparsed": "meta-judged, but none of the meta-judge's verdicts parsed (see its parse failures; "
                                     "`read_unparsed` on meta_judge)",
                    "meta_tied": "the meta-judge's verdicts left every judgment at the same rating (it picked the same "
                                 "position in both orders, or its wins cancel out)",
                    "unscored": "a judgment's score did not parse",
                    "same_score": "both judgments give the same score",
                    "too_long": "a judgment is longer than max_words", "class_cap": "its score class is over max_class_share"}
    Options = MetaJudgePairOptions

    def build(self, samples: list[dict], prompts: dict[str, dict]) -> tuple[list[dict], dict]:
        o = self.options
        counts = {"samples_in": len(samples), **{k: 0 for k in self.skip_reasons}}
        rows = []
        for s in samples:
            c, r = s.get("meta_chosen"), s.get("meta_rejected")
            if c is None or r is None:
                battles = s.get("meta_battles")  # None: not picked; 0: nothing to compare; else every verdict unparsed
                counts["not_meta_judged" if battles is None else "no_battles" if battles == 0 else "meta_unparsed"] += 1
                continue
            if c == r:
                counts["meta_tied"] += 1
                continue
            raws, scores = list(s["judge_raw"]), list(s["judge_scores"])
            if as_number(scores[c]) is None or as_number(scores[r]) is None:
                counts["unscored"] += 1
                continue
            if scores[c] == scores[r]:
                counts["same_score"] += 1
                continue
            if o.max_words is not None and max(len(raws[c].split()), len(raws[r].split())) > o.max_words:
                counts["too_long"] += 1
                continue
            elo = s.get("meta_elo") or []
            gap = (elo[c] - elo[r]) if len(elo) > max(c, r) and as_number(elo[c]) is not None and as_number(elo[r]) is not None else None
            rows.append({"prompt_id": s["prompt_id"], "prompt": list(s["judge_prompt"]),
                         "chosen": [{"role": "assistant", "content": raws[c]}], "rejected": [{"role": "assistant", "content": raws[r]}],
                         "weight": 1.0, "margin": float(gap) if gap is not None else 0.0,
                         "chosen_id": f"{s['sample_id']}/judgment{c}", "rejected_id": f"{s['sample_id']}/judgment{r}",
                         "label_correct": None, "rejected_correct": None, "model_ref": s["model_ref"],
                         "chosen_score": float(scores[c]), "rejected_score": as_number(scores[r]), "elo_gap": gap})
        if o.max_class_share is not None and rows:
            kept = class_capped(rows, o.max_class_share, random.Random(o.seed))
            counts["class_cap"] = len(rows) - len(kept)
            rows = kept
        counts["pairs"] = len(rows)
        return rows, counts


def class_capped(rows: list[dict], share: float, rng: random.Random) -> list[dict]:
    """NeMo's class cap (`meta_max_relative_pcnt`): in a seeded random order, a pair is taken while its chosen score's
    share of the pairs taken so far is below `share`; returned in the rows' own order. Unlike NeMo, the count is per
    select stage (NeMo's runs over the whole training), and NeMo's second, absolute cap per class (steps x batch /
    (score range)^2) is left out. With two classes and a share under one half at most two pairs stay."""
    taken: dict[float, int] = {}
    keep: set[int] = set()
    for i in rng.sample(range(len(rows)), len(rows)):
        k = rows[i]["chosen_score"]
        if taken.get(k, 0) / max(len(keep), 1) < share:
            taken[k] = taken.get(k, 0) + 1
            keep.add(i)
    return [r for i, r in enumerate(rows) if i in keep]
