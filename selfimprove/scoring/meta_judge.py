"""Meta-judge (Meta-Rewarding, Wu et al. 2024): the model compares two of its own judgments of the same
response, in both orders; the battles become Bradley-Terry/Elo scores per judgment and the best and
worst judgments become a chosen/rejected pair for training the judge.

Runs after `pointwise_judge` (needs its `judge_raw` and `judge_scores`, n >= 2). By default only the
response with the highest judgment variance per prompt is meta-judged (the paper's choice); pairs of
judgments that give the same score are skipped, as in the paper.
"""

from __future__ import annotations

from itertools import combinations
from typing import Literal

from ..errors import ConfigError
from ..groups import indices_by_prompt
from .base import ScoreResult
from .elo import bradley_terry, elo
from .judge_base import ModelScorer, response_of
from .judges import SamplingOptions
from .parsers import parse_meta


class MetaJudgeOptions(SamplingOptions):
    template: str = "meta_judge"
    select: Literal["highest_variance", "all"] = "highest_variance"
    position_weights: bool = True


class MetaJudge(ModelScorer):
    """Columns: `meta_elo` (Elo per judgment, None where not meta-judged), `meta_chosen` / `meta_rejected`
    (index into `judge_raw`), `meta_battles`, `meta_parse_failures`."""

    name = "meta_judge"
    groupwise = True
    writes = ("meta_elo", "meta_chosen", "meta_rejected", "meta_battles", "meta_parse_failures")
    reads = ("prompt_id", "completion", "judge_raw", "judge_scores", "judge_var")
    Options = MetaJudgeOptions

    @classmethod
    def parse_failures(cls, rows):
        battles = sum(int(r.get("meta_battles") or 0) for r in rows)
        return (sum(int(r.get("meta_parse_failures") or 0) for r in rows), battles) if battles else None

    def __init__(self, task, options=None, where=None):
        super().__init__(task, options, where)
        self.template = self.options.template
        self.select = self.options.select
        self.weighted = self.options.position_weights
        self.params = self.options.params(n=1)

    def chosen_samples(self, samples: list[dict]) -> list[int]:
        out = []
        for _pid, idx in indices_by_prompt(samples).items():
            cands = [i for i in idx if len([v for v in (samples[i].get("judge_scores") or []) if v is not None]) >= 2]
            if not cands:
                continue
            if self.select == "all":
                out.extend(cands)
            else:
                out.append(max(cands, key=lambda i: (samples[i].get("judge_var") or 0.0, -i)))
        return out

    def score(self, prompts, samples, progress=None):
        if samples and "judge_raw" not in samples[0]:
            raise ConfigError("meta_judge needs pointwise_judge before it in `score` (with n >= 2 judgments)")
        n = len(samples)
        cols: dict[str, list] = {c: [None] * n for c in self.writes}
        chosen = self.chosen_samples(samples)
        jobs = []  # (sample index, first judgment, second judgment, messages)
        for i in chosen:
            s = samples[i]
            raws, scores = s["judge_raw"], s["judge_scores"]
            valid = [j for j, v in enumerate(scores) if v is not None]
            for a, b in combinations(valid, 2):
                if scores[a] == scores[b]:
                    continue
                q = prompts[s["prompt_id"]]["question"]
                for first, second in ((a, b), (b, a)):
                    msgs = self.user(self.template, question=q, response=response_of(s), judgment_a=raws[first], judgment_b=raws[second])
                    jobs.append((i, first, second, msgs))
        outs = self.generate_cached([j[3] for j in jobs], self.params, progress)
        battles: dict[int, list[tuple[int, int, int]]] = {}
        fails: dict[int, int] = {}
        for (i, first, second, _), comps in zip(jobs, outs):
            p = parse_meta(comps[0]["text"])
            outcome = 0 if not p.ok else (1 if p.value == "A" else -1)
            fails[i] = fails.get(i, 0) + int(not p.ok)
            battles.setdefault(i, []).append((first, second, outcome))
        for i in chosen:
            k = len(samples[i]["judge_raw"])
            b = battles.get(i, [])
            cols["meta_battles"][i] = len(b)
            cols["meta_parse_failures"][i] = fails.get(i, 0)
            if not any(r != 0 for _, _, r in b):
                continue
            ratings = elo(bradley_terry(k, b, weighted=self.weighted))
            played = sorted({x for a, c, _ in b for x in (a, c)})
            cols["meta_elo"][i] = [ratings[j] if j in played else None for j in range(k)]
            cols["meta_chosen"][i] = int(max(played, key=lambda j: ratings[j]))
            cols["meta_rejected"][i] = int(min(played, key=lambda j: ratings[j]))
        errors = [f"{self.name}: {cols['meta_parse_failures'][i]} unparsed verdicts" if cols["meta_parse_failures"][i] else None for i in range(n)]
        return ScoreResult(cols, errors)


