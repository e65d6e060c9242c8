"""The verify stage's settings (`verify:`, self-rewarding correction's data, Xiong et al. 2025): after scoring, the
model evaluates each of its attempts (`[VERIFY] correct|wrong`, several samples), and after an evaluation that says
"wrong" it revises (for wrong attempts and, fewer, for right ones); the gold checker types the trajectories."""

from __future__ import annotations

from pydantic import Field

from .base import Strict


class VerifyConfig(Strict):
    template: str = Field("self_verify", description="The self-evaluation instruction after the attempt (prompts/); its reply ends "
                                                     "in `[VERIFY] correct|wrong`.")
    correct_template: str = Field("correct_after_verify", description="The correction instruction after an evaluation that says wrong.")
    evaluations: int = Field(4, gt=0, description="Self-evaluations sampled per attempt (the paper's N2 = 8); the first whose "
                                                  "verdict agrees with gold is the trajectory's.")
    revisions_wrong: int = Field(4, ge=0, description="Revisions per wrong attempt after its 'wrong' evaluation (M1 = 8).")
    revisions_right: int = Field(2, ge=0, description="Revisions per right attempt after an evaluation that wrongly says 'wrong' "
                                                      "(M2 = 4: right -> right traces).")
    temperature: float | None = Field(None, ge=0, description="Default: generate.temperature.")
    max_tokens: int = Field(96, gt=0, description="Length of a self-evaluation.")
    revision_max_tokens: int | None = Field(None, gt=0, description="Default: generate.max_tokens.")
    templated_verdict: bool = Field(False, description="Where no sampled evaluation of an attempt gives the verdict a trajectory "
                                                       "needs, use the bare line '[VERIFY] correct|wrong' (gold's verdict for the "
                                                       "confirmation; 'wrong', as the paper tells the model, before revisions): "
                                                       "teaches the format to a model too weak to write it (counted as templated).")
