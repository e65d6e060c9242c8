"""Critic (critique-then-refine): the model checks a solution step by step and ends with a final-answer verdict,
`Verdict: correct|wrong` (parsed; an unparsable critique is counted, never read as either). The critique text feeds a
refinement (`refine: {variables: [critique], when: {column: critic_verdict, equals: wrong}}`); the verdict's agreement
with gold is an audit of the critic."""

from __future__ import annotations

from pydantic import Field

from .base import ScoreResult, SummaryColumn
from .judge_base import ModelScorer, response_of
from .judges import SamplingOptions
from .parsers import parse_verdict


class CriticOptions(SamplingOptions):
    template: str = Field("critic", description="Prompt template (prompts/critic.jinja): gets question and response.")


class Critic(ModelScorer):
    """Columns: `critique` (the critic's text), `critic_verdict` (correct / wrong / None when unparsed),
    `critic_correct` (the verdict as a bool), `critic_parse_failures` (0 or 1)."""

    name = "critic"
    writes = ("critique", "critic_verdict", "critic_correct", "critic_parse_failures")
    version = 2  # 2: a verdict the response states is not the critic's
    summary = {"critic_correct": SummaryColumn(range=(0.0, 1.0), discrete=True, threshold=0.5, length_bias=False)}
    Options = CriticOptions

    @classmethod
    def parse_failures(cls, rows):
        judged = sum(r.get("critique") is not None for r in rows)
        return (sum(int(r.get("critic_parse_failures") or 0) for r in rows), judged) if judged else None

    def __init__(self, task, options=None, where=None):
        super().__init__(task, options, where)
        self.template = self.options.template
        self.params = self.options.params(n=1)

    def score(self, prompts, samples, progress=None):
        msgs = [self.user(self.template, question=prompts[s["prompt_id"]]["question"], response=response_of(s)) for s in samples]
        outs = self.generate_cached(msgs, self.params, progress)
        cols: dict[str, list] = {c: [] for c in self.writes}
        errors: list[str | None] = []
        for s, comps in zip(samples, outs):
            text = comps[0]["text"]
            p = parse_verdict(text, response_of(s))
            cols["critique"].append(text)
            cols["critic_verdict"].append(p.value if p.ok else None)
            cols["critic_correct"].append((p.value == "correct") if p.ok else None)
            cols["critic_parse_failures"].append(int(not p.ok))
            errors.append(None if p.ok else f"{self.name}: {p.error}")
        return ScoreResult(cols, errors)
