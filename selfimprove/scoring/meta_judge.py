"""Meta-judge (Meta-Rewarding, Wu et al. 2024): the model compares two of its own judgments of the same
response, in both orders; the battles become Bradley-Terry/Elo scores per judgment and the best and
worst judgments become a chosen/rejected pair for training the judge.

Runs after `pointwise_judge` (needs its `judge_raw` and `judge_scores`, n >= 2). By default only the
response with the highest judgment variance per prompt is meta-judged (the paper's choice); every pair of its
parsed, distinct judgments is compared, those giving the same score too (the paper and NeMo's code compare all pairs;
a chosen and rejected judgment with the same score is dropped later, by `meta_judge_pairs`); `skip_same_score: true`
compares only judgments whose scores differ (fewer calls). With `read_unparsed`, a written verdict that names
no winner gets `Winner: Judgement ` appended and the likelier of A and B decides (counted in `meta_read`); the
pointwise judge's option of the same name does the same for scores.
"""

from __future__ import annotations

from itertools import combinations
from typing import Literal

from pydantic import Field

from ..errors import ConfigError
from ..groups import indices_by_prompt
from .base import ScoreResult
from .elo import bradley_terry, elo
from .judge_base import ModelScorer, response_of
from .judges import SamplingOptions, after, likelier
from .parsers import SCORE_RE, parse_meta


class MetaJudgeOptions(SamplingOptions):
    template: str = "meta_judge"
    select: Literal["highest_variance", "all"] = "highest_variance"
    position_weights: bool = True
    read_unparsed: bool = Field(False, description="a written verdict that names no winner gets `Winner: Judgement ` appended "
                                "and the likelier next token of A and B decides")
    skip_same_score: bool = Field(False, description="compare only judgments whose scores differ (fewer meta-judge calls; "
                                  "the paper compares every pair)")
    hide_scores: bool = Field(False, description="strip `Score: n` from the judgments the meta-judge compares (NeMo's code: "
                              "it then weighs their reasoning, not their verdicts)")


class MetaJudge(ModelScorer):
    """Columns: `meta_elo` (Elo per judgment, None where not meta-judged), `meta_chosen` / `meta_rejected`
    (index into `judge_raw`), `meta_battles`, `meta_parse_failures`, `meta_read` (verdicts read after an unparsed one)."""

    name = "meta_judge"
    groupwise = True
    writes = ("meta_elo", "meta_chosen", "meta_rejected", "meta_battles", "meta_parse_failures", "meta_read")
    version = 3  # 2: meta_read; 3: same-score judgments are compared too (skip_same_score)
    reads = ("prompt_id", "completion", "judge_raw", "judge_scores", "judge_var")
    Options = MetaJudgeOptions

    @classmethod
    def parse_failures(cls, rows):
        """Written verdicts that named no winner, those read afterwards included."""
        battles = sum(int(r.get("meta_battles") or 0) for r in rows)
        unparsed = sum(int(r.get("meta_parse_failures") or 0) + int(r.get("meta_read") or 0) for r in rows)
        return (unparsed, battles) if battles else None

    @classmethod
    def read_after_unparsed(cls, rows):
        read = sum(int(r.get("meta_read") or 0) for r in rows)
        return (read, sum(int(r.get("meta_battles") or 0) for r in rows)) if read else None

    def __init__(self, task, options=None, where=None):
        super().__init__(task, options, where)
        self.template = self.options.template
        self.select = self.options.select
        self.weighted = self.options.position_weights
        self.params = self.options.params(n=1)
        self.read_unparsed = self.options.read_unparsed

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
                if raws[a] == raws[b] or (self.options.skip_same_score and scores[a] == scores[b]):
                    continue
                q = prompts[s["prompt_id"]]["question"]
                for first, second in ((a, b), (b, a)):
                    shown = [hidden(raws[j]) if self.options.hide_scores else raws[j] for j in (first, second)]
                    msgs = self.user(self.template, question=q, response=response_of(s), judgment_a=shown[0], judgment_b=shown[1])
                    jobs.append((i, first, second, msgs))
        outs = self.generate_cached([j[3] for j in jobs], self.params, progress)
        texts = [comps[0]["text"] for comps in outs]
        verdicts = [p.value if (p := parse_meta(t)).ok else None for t in texts]
        read = self.read_verdicts([j[3] for j in jobs], texts, verdicts) if self.read_unparsed else [False] * len(jobs)
        battles: dict[int, list[tuple[int, int, int]]] = {}
        fails: dict[int, int] = {}
        reads: dict[int, int] = {}
        for (i, first, second, _), verdict, was_read in zip(jobs, verdicts, read):
            outcome = 0 if verdict is None else (1 if verdict == "A" else -1)
            fails[i] = fails.get(i, 0) + int(verdict is None)
            reads[i] = reads.get(i, 0) + int(was_read)
            battles.setdefault(i, []).append((first, second, outcome))
        for i in chosen:
            k = len(samples[i]["judge_raw"])
            b = battles.get(i, [])
            cols["meta_battles"][i] = len(b)
            cols["meta_parse_failures"][i] = fails.get(i, 0)
            cols["meta_read"][i] = reads.get(i, 0)
            if not any(r != 0 for _, _, r in b):
                continue
            ratings = elo(bradley_terry(k, b, weighted=self.weighted))
            played = sorted({x for a, c, _ in b for x in (a, c)})
            cols["meta_elo"][i] = [ratings[j] if j in played else None for j in range(k)]
            cols["meta_chosen"][i] = int(max(played, key=lambda j: ratings[j]))
            cols["meta_rejected"][i] = int(min(played, key=lambda j: ratings[j]))
        errors = [f"{self.name}: {cols['meta_parse_failures'][i]} unparsed verdicts" if cols["meta_parse_failures"][i] else None for i in range(n)]
        return ScoreResult(cols, errors)

    def read_verdicts(self, msgs: list[list[dict]], texts: list[str], verdicts: list[str | None]) -> list[bool]:
        """Fill in `verdicts` (in place) where the written one named no winner: the likelier of A and B after the
        verdict's own text and `Winner: Judgement `, where that line does not contradict the text (one that named both
        winners stays unparsed). Returns which were read."""
        todo = [k for k, v in enumerate(verdicts) if v is None]
        lps = self.next_token_cached([msgs[k] for k in todo], ["A", "B"], [after(texts[k], "Winner: Judgement ") for k in todo])
        read = [False] * len(verdicts)
        for k, d in zip(todo, lps):
            a, b = d.get("A"), d.get("B")
            if a is None and b is None:
                continue
            winner = likelier(a, b)
            if parse_meta(after(texts[k], f"Winner: Judgement {winner}")).value == winner:
                verdicts[k], read[k] = winner, True
        return read


def hidden(judgment: str) -> str:
    """A judgment without its `Score: n` / `Points: n` (NeMo's meta-judge input)."""
    return SCORE_RE.sub("", judgment)
