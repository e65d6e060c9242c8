"""The propose stage's settings (`propose:`): new training problems written by the model each iteration, few-shot
from the train pool, kept only when they are new (not a train, eval or dev problem, nor another proposal) and, with
`min_top_share`, when the model's own answers to them agree (ScPO's self-consistency filter)."""

from __future__ import annotations

from pydantic import Field

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
