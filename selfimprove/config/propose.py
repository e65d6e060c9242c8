"""The propose stage's settings (`propose:`): new training problems written by the model each iteration, few-shot
from the train pool, kept only when they are new (not a train, eval or dev problem, nor another proposal) and, with
`min_top_share`, when the model's own answers to them agree (ScPO's self-consistency filter), and, with `judge`, when
the model as a judge rates the problem itself at least `min_judge_score` (Self-Rewarding's self-instruct filter)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from .base import Strict


class ProposeConfig(Strict):
    size: int = Field(32, gt=0, description="Problems to ask for per iteration (each request writes one).")
    shots: int = Field(4, gt=0, description="Train problems shown as examples in each request (drawn at random, seeded).")
    template: str = Field("propose_problem", description="Prompt template (prompts/): gets `examples`, a list of questions.")
    temperature: float = Field(1.0, ge=0)
    max_tokens: int = Field(96, gt=0)
    votes: int = Field(8, gt=0, description="Answers sampled per proposed problem for the self-consistency filter.")
    min_top_share: float | None = Field(0.5, ge=0, le=1, description="Keep a proposed problem when its most common answer has at "
                                                                     "least this share of the votes (ScPO); None: keep every "
                                                                     "new problem.")
    judge: dict[str, Any] | None = Field(None, description="pointwise_judge options (template default judge_problem) for a judge "
                                                          "that rates each new problem; None: no judge filter.")
    min_judge_score: float | None = Field(None, description="Keep a proposed problem when its judge score (mean of the "
                                                            "judgments) is at least this; needs `judge`.")

    @model_validator(mode="after")
    def _judge_has_threshold(self) -> "ProposeConfig":
        if (self.judge is None) != (self.min_judge_score is None):
            raise ValueError("propose.judge and propose.min_judge_score go together: the judge rates, the threshold keeps")
        return self

    def judge_options(self) -> dict[str, Any]:
        """The problem judge's pointwise_judge options, with its own template unless one is given."""
        return {"template": "judge_problem", **(self.judge or {})}
