"""The eval's settings (`eval:`, in a pipeline and an eval suite): greedy accuracy, pass@k/maj@k, the revision turn,
best-of-N by a column and test-time critique-then-refine."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from .base import Strict
from .sampling import SamplingParams

EVAL_SAMPLE_COLUMNS = ("num_tokens", "logprob_sum", "correct", "vote_count", "vote_share", "top_share", "vote_margin")


class BestOf(Strict):
    """Inference-time best-of-N: among each problem's `eval.n` samples, the one with the highest `column`."""

    column: str = Field(description="The sample column to choose by: a scorer's (loglik_sum, judge_score, p_true, reward) or "
                                    "the generator's `logprob_sum`.")
    scorer: str | None = Field(None, description="The scorer that writes `column`, run on the eval samples with the evaluated "
                                                 "model as its judge (self_loglik: maximum-likelihood sharpening); None: a "
                                                 "column the samples already have (logprob_sum).")
    options: dict[str, Any] = Field(default_factory=dict, description="The scorer's options.")


class CritiqueRefineEval(Strict):
    """Test-time critique-then-refine (Xi et al.): each sampled answer is critiqued by the `critic` scorer (the
    evaluated model unless `critic_options.judge` names another) and refined with its critique; reports the
    refinements' accuracy and their majority vote."""

    template: str = Field("refine_with_critique", description="The refinement prompt (gets `critique`).")
    critic_options: dict[str, Any] = Field(default_factory=dict, description="Options of the critic scorer (template, judge, max_tokens).")


class SelfVerifyEval(Strict):
    """Self-rewarding correction at inference (Xiong et al.): after the greedy attempt the model evaluates it (ending in
    `[VERIFY] correct|wrong`) and revises only after "wrong" (at most once); acc@t2 is the final answer's accuracy,
    beside the self-verification rates per class and the share revised."""

    template: str = Field("self_verify", description="The self-evaluation instruction.")
    correct_template: str = Field("correct_after_verify", description="The correction instruction after 'wrong'.")
    max_tokens: int = Field(96, gt=0, description="Length of the self-evaluation.")


class EvalConfig(Strict):
    greedy: bool = Field(True, description="Greedy decoding -> accuracy.")
    n: int = Field(0, ge=0, description="Sampled completions per problem for pass@k / maj@k (0 = none).")
    sample_problems: int | None = Field(None, gt=0, description="Sample only the first N held-out problems (sampling all is n times the cost of greedy).")
    temperature: float = Field(0.7, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(128, gt=0)
    stop: list[str] = Field(default_factory=list)
    seed: int = 1234
    shard_size: int = Field(64, gt=0)
    bootstrap: int = Field(1000, gt=0, description="Bootstrap resamples for the 95% intervals.")
    revise_template: str | None = Field(None, description="Two-turn self-correction: template of the turn-2 instruction (e.g. self_correct); needs greedy.")
    revise_max_tokens: int | None = Field(None, gt=0, description="max_tokens of the revision turn (default: max_tokens).")
    critique_refine: CritiqueRefineEval | None = Field(None, description="Also critique and refine each sampled answer: "
                                                                         "`refined_pass@1` (the refinements' accuracy) and "
                                                                         "`refined_maj@n` (their majority vote); needs n >= 1.")
    best_of: BestOf | None = Field(None, description="Also report `best_of@n`: the accuracy of each problem's sample with the "
                                                     "highest `column` (inference-time sharpening; needs n >= 2).")
    self_verify: SelfVerifyEval | None = Field(None, description="Self-rewarding correction: the model checks its greedy answer and "
                                                                 "revises it only after '[VERIFY] wrong'; reports acc@t1, acc@t2 "
                                                                 "(final), delta, i->c, c->i, verify_tpr, verify_tnr, revised.")
    gold_slice: int | None = Field(None, ge=2, description="Also estimate accuracy as if only the first N problems (by id) had gold "
                                                           "answers: gold only, pseudo-labels only (the greedy answer agrees with the "
                                                           "sampled majority) and PPI++ combining both (needs greedy and n >= 2).")

    def mode_params(self) -> dict[str, SamplingParams]:
        """The first-turn modes this config asks for: `greedy` and/or `sampled`, as sampling parameters."""
        out = {}
        if self.greedy:
            out["greedy"] = SamplingParams(n=1, temperature=0.0, max_tokens=self.max_tokens, stop=tuple(self.stop), seed=self.seed)
        if self.n:
            out["sampled"] = SamplingParams(n=self.n, temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                                            stop=tuple(self.stop), seed=self.seed)
        return out

    @property
    def two_turn(self) -> bool:
        """Whether the eval has a second turn (acc@t1, acc@t2, ...): a revision after every attempt or after 'wrong'."""
        return bool(self.revise_template) or self.self_verify is not None

    def revision_params(self) -> SamplingParams:
        """The revision turn: greedy, `revise_max_tokens` (default max_tokens)."""
        return SamplingParams(n=1, temperature=0.0, max_tokens=self.revise_max_tokens or self.max_tokens, stop=tuple(self.stop), seed=self.seed)

    @model_validator(mode="after")
    def _something_to_do(self) -> "EvalConfig":
        if not self.greedy and self.n == 0:
            raise ValueError("eval needs greedy: true or n > 0")
        if self.revise_template and not self.greedy:
            raise ValueError("revise_template needs greedy: true (the revision turn revises the greedy attempt)")
        if self.self_verify is not None and not self.greedy:
            raise ValueError("self_verify checks the greedy attempt: needs greedy: true")
        if self.self_verify is not None and self.revise_template:
            raise ValueError("self_verify and revise_template are two ways to get a second turn: choose one")
        if self.critique_refine is not None and self.n < 1:
            raise ValueError("critique_refine refines the sampled completions: set eval.n to 1 or more")
        if self.best_of is not None and self.n < 2:
            raise ValueError("best_of chooses among the sampled completions: set eval.n to 2 or more")
        if self.best_of is not None and self.best_of.scorer is None and self.best_of.column not in EVAL_SAMPLE_COLUMNS:
            raise ValueError(f"best_of.column: the eval samples have no {self.best_of.column!r} of their own (they have "
                             f"{list(EVAL_SAMPLE_COLUMNS)}); name the scorer that writes it in best_of.scorer")
        if self.gold_slice and not (self.greedy and self.n >= 2):
            raise ValueError("gold_slice compares the greedy answer with the majority of n samples: needs greedy: true and n >= 2")
        return self
