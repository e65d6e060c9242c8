"""The model's own confidence: P(True) after a self-verification prompt (Kadavath et al. 2022), and the
teacher-forced log-likelihood of a completion (used for sharpening: best-of-N by self log-likelihood)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from .base import ScoreResult, SummaryColumn
from .judge_base import JudgeOptions, ModelScorer, response_of


class PTrueOptions(JudgeOptions):
    template: str = "p_true"
    show: Literal["answer", "completion"] = "answer"
    brainstorm: int = Field(0, ge=0, description="Show up to this many of the model's other samples of the same problem before "
                                                  "the proposed answer (Kadavath et al.'s brainstorm variant: P(True) improves "
                                                  "when the model sees its own alternatives); 0: none.")
    true_token: str = "True"
    false_token: str = "False"


def p_true_from_logprobs(lp_true: float | None, lp_false: float | None) -> float | None:
    """p(True) / (p(True) + p(False)) from the two options' log-probs; None when either is unknown.

    >>> round(p_true_from_logprobs(math.log(0.3), math.log(0.1)), 3)
    0.75
    """
    if lp_true is None or lp_false is None:
        return None
    m = max(lp_true, lp_false)
    a, b = math.exp(lp_true - m), math.exp(lp_false - m)
    return a / (a + b)


class PTrue(ModelScorer):
    """Column `p_true`. Option `show`: `answer` (the extracted answer, default) or `completion` (the whole reply)."""

    name = "p_true"
    writes = ("p_true",)
    summary = {"p_true": SummaryColumn(range=(0.0, 1.0), threshold=0.5, probability=True)}
    Options = PTrueOptions

    def __init__(self, task, options=None, where=None):
        super().__init__(task, options, where)
        self.template = self.options.template
        self.show = self.options.show
        self.candidates = [self.options.true_token, self.options.false_token]

    def shown(self, s: dict) -> str:
        return (s.get("answer") if self.show == "answer" else None) or response_of(s)

    def score(self, prompts, samples, progress=None):
        msgs = []
        k = self.options.brainstorm
        groups: dict[tuple, list[int]] = {}
        for i, s in enumerate(samples):
            groups.setdefault((s["prompt_id"], s.get("turn") or 1), []).append(i)
        for i, s in enumerate(samples):
            others = [self.shown(samples[j]) for j in groups[(s["prompt_id"], s.get("turn") or 1)] if j != i][:k] if k else []
            msgs.append(self.user(self.template, question=prompts[s["prompt_id"]]["question"], answer=self.shown(s), brainstorm=others))
        lps = self.next_token_cached(msgs, self.candidates)
        values, errors = [], []
        t, f = self.candidates
        for d in lps:
            v = p_true_from_logprobs(d.get(t), d.get(f))
            values.append(v)
            errors.append(None if v is not None else f"{self.name}: {t!r}/{f!r} not among the returned log-probs")
        if progress:
            progress(len(samples))
        return ScoreResult({"p_true": values}, errors)


class SelfLogLikelihoodOptions(JudgeOptions):
    include_end: bool = Field(True, description="Score the end-of-turn token after the reply too: log p(reply, end | prompt), "
                                                "the probability of exactly this reply. Without it an empty reply has "
                                                "log-likelihood 0, the highest there is, and a cut-off one is never "
                                                "charged for stopping there: best-of-N and RL on it learn to say nothing.")


class SelfLogLikelihood(ModelScorer):
    """Columns `loglik_sum`, `loglik_mean` (per token), `loglik_tokens`: log p(completion, end of turn | prompt) under
    the judge model (`include_end: false`: without the end of turn)."""

    name = "self_loglik"
    writes = ("loglik_sum", "loglik_mean", "loglik_tokens")
    summary = {"loglik_mean": SummaryColumn(length_bias=False)}
    Options = SelfLogLikelihoodOptions
    version = 2  # 2: the end of turn is scored (an empty reply was the likeliest)

    def score(self, prompts, samples, progress=None):
        res = self.score_texts_cached([prompts[s["prompt_id"]]["messages"] for s in samples], [response_of(s) for s in samples],
                                      end=self.options.include_end)
        if progress:
            progress(len(samples))
        return ScoreResult(
            {
                "loglik_sum": [r["logprob_sum"] for r in res],
                "loglik_mean": [r["logprob_sum"] / r["num_tokens"] if r["num_tokens"] else None for r in res],
                "loglik_tokens": [r["num_tokens"] for r in res],
            },
            [None] * len(samples),
        )
