"""The refine stage's settings (`refine:`): a second generation after scoring, for the samples (or prompts) a
condition picks, whose prompt template receives per-sample columns (a critique, a verdict) and, as a hint, the gold
answer. Critique-then-refine refines what a critic flags; STaR's rationalization regenerates the problems no sample
solved with the answer as a hint; the refined completion becomes an answer to the original question (`as: answer`,
the hint gone from the training row) or a revision turn after the attempt (`as: revision`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from .base import Strict


class RefineWhen(Strict):
    """Which samples are refined: those whose `column` equals `equals` (critique-refine: critic_verdict = wrong), or
    one per prompt none of whose samples has `prompt_without` true (STaR's rationalization: correct)."""

    column: str | None = None
    equals: Any = None
    prompt_without: str | None = None

    @model_validator(mode="after")
    def _one(self) -> "RefineWhen":
        if (self.column is None) == (self.prompt_without is None):
            raise ValueError("give when.column (with when.equals) for samples, or when.prompt_without for prompts, not both")
        return self


class RefineConfig(Strict):
    template: str = Field(description="Prompt template of the refinement (in prompts/): it gets `question`, `prompt` (the "
                                      "problem's last user message), `attempt` (the sample's completion), `answer` (its "
                                      "extracted answer), each of `variables`, and `reference` when `hint` is on.")
    when: RefineWhen
    context: Literal["attempt", "question"] = Field("attempt", description="attempt: the problem, the attempt, then the "
                                                                          "template as the next user turn; question: the "
                                                                          "template replaces the problem's user message.")
    variables: list[str] = Field(default_factory=list, description="Sample columns the template receives, e.g. [critique].")
    hint: bool = Field(False, description="The template also gets the gold `reference` (STaR's rationalization hint).")
    as_: Literal["answer", "revision"] = Field("answer", alias="as", description="answer: the refined completion is a turn-1 "
                                                                                "answer to the original question (the hint and "
                                                                                "critique are not in its training row); "
                                                                                "revision: a turn-2 sample after the attempt.")
    n: int = Field(1, gt=0, description="Refinements per picked sample.")
    require_working: bool = Field(False, description="Drop refinements that only state an answer without deriving it (the "
                                  "task's `shows_working`: on math tasks a computation between numbers), before scoring: a "
                                  "rationalization that copies the hinted answer teaches guessing.")
    temperature: float | None = Field(None, ge=0, description="Default: generate.temperature.")
    max_tokens: int | None = Field(None, gt=0, description="Default: generate.max_tokens.")

    model_config = {"extra": "forbid", "populate_by_name": True, "protected_namespaces": ()}

    @model_validator(mode="after")
    def _revision_needs_the_attempt(self) -> "RefineConfig":
        if self.as_ == "revision" and self.context == "question":
            raise ValueError("refine: as: revision trains the refinement after its attempt, but context: question samples it without "
                             "the attempt; use context: attempt, or as: answer")
        return self
