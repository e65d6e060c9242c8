"""The select stage's settings (`select:`): filters, selectors, the row builder or several (with shares and weights),
and gold SFT rows."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..registry import ROW_BUILDERS
from .base import Strict


class BuilderConfig(Strict):
    name: str = Field("sft", description=f"Registered row builder ({', '.join(ROW_BUILDERS.names())}) or 'package.module:Class'.")
    options: dict[str, Any] = Field(default_factory=dict, description="Validated by the builder's `Options` model.")


class BuilderSource(BuilderConfig):
    """One of several row builders of a select stage (`select.builders`): its rows, weighted, on a subset of prompts,
    capped at a share of the train set."""

    prompts: Literal["all", "labelled", "unlabelled"] = Field("all", description="Which prompts this source builds from: "
                                                                                "labelled = those with a gold answer, within "
                                                                                "select.labelled_size when it is set.")
    weight: float = Field(1.0, gt=0, description="Multiplies the weight of every row of this source.")
    share: float | None = Field(None, gt=0, lt=1, description="At most this share of the train set (rows over it are dropped "
                                                              "at random, seeded); at least one source must have no share.")


class QuantileFilter(Strict):
    column: str = Field(description="A numeric sample column, e.g. ds_deviation.")
    q: float = Field(gt=0, le=1, description="Keep values at or below this quantile (1 keeps every sample with a value).")


class ScoreThreshold(Strict):
    column: str = Field(description="A numeric sample column, e.g. judge_score, reward, self_loglik.")
    tau: float = Field(description="Keep samples whose value is at least tau (above it with strict: true).")
    strict: bool = Field(False, description="Keep only values above tau (B-STaR keeps score > tau).")


class TopKPerPrompt(Strict):
    column: str = Field(description="A numeric sample column; the k highest values of each prompt are kept (best-of-N).")
    k: int = Field(1, gt=0)


class GoldRows(Strict):
    """The task's own solutions as SFT rows, added to every iteration's train set (critique-refine's gold SFT set)."""

    template: str = Field(description="Renders a solution from `question`, `reference`, `answer` (the gold answer) and the "
                                      "prompt's meta fields, e.g. arithmetic_solution: '<problem> = <gold>. The answer is "
                                      "<gold>.', gsm8k_solution: GSM8K's worked solution")
    size: int | None = Field(None, gt=0, description="The first N train prompts (by id) with a gold answer; None: all of them.")


class SelectConfig(Strict):
    correct_only: bool = Field(True, description="Keep samples whose `correct` column is true.")
    require_finished: bool = Field(True, description="Drop samples cut off by max_tokens.")
    min_vote_share: float | None = Field(None, ge=0, le=1, description="Keep samples whose answer has at least this vote share.")
    majority_only: bool = Field(False, description="Keep samples whose answer is their prompt's majority answer (`is_majority`; "
                                                   "IWSI's self-consistency filter, label-free).")
    keep_quantile: QuantileFilter | None = Field(None, description="Keep samples whose `column` is at most its q-quantile over the "
                                                                   "samples kept so far (IWSI: ds_deviation, q 0.79).")
    min_score: ScoreThreshold | None = Field(None, description="Keep samples whose `column` reaches `tau` (a score threshold).")
    dedup: bool = Field(True, description="Drop repeated (prompt, completion) pairs (whitespace-normalised).")
    top_k_per_prompt: TopKPerPrompt | None = Field(None, description="Keep each prompt's k best samples by `column` (best-of-N; "
                                                                     "sharpening: self_loglik).")
    max_per_prompt: int | None = Field(4, gt=0, description="Cap kept samples per prompt.")
    target_size: int | None = Field(None, gt=0, description="Grow a per-prompt cap 1, 2, ... until the kept set reaches this many "
                                                            "samples (B-STaR, RFT); best first by min_score's or top_k_per_prompt's "
                                                            "column when one is set, else in a seeded random order.")
    balance_n: int = Field(8, gt=0, description="n* of the `balance_score` count (B-STaR), recorded where gold (`correct`) exists.")
    balance: bool = Field(False, description="Keep the same number per prompt (the smallest kept count, at least 1).")
    accumulate: bool = Field(False, description="The train set is this iteration's rows after every earlier iteration's (with "
                                                "train.init: base, the base model retrains on all of them).")
    builder: BuilderConfig = Field(default_factory=BuilderConfig, description="Turns the kept samples into training rows (sft: prompt + completion).")
    builders: list[BuilderSource] = Field(default_factory=list, description="Several row builders instead of `builder`, their rows "
                                                                            "concatenated (a `source` column names each row's): gold "
                                                                            "pairs with vote pairs (semi-supervised ScPO), actor with "
                                                                            "judge pairs (Meta-Rewarding).")
    gold_rows: GoldRows | None = Field(None, description="Add the task's solutions of the train prompts as SFT rows (needs an "
                                                         "SFT-row builder).")
    labelled_size: int | None = Field(None, gt=0, description="The first N train prompts (by id) with a gold answer are the labelled "
                                                               "ones (a semi-supervised run on a fully labelled task); None: every "
                                                               "prompt with a gold answer.")

    @model_validator(mode="after")
    def _one_way_to_build(self) -> "SelectConfig":
        if self.builders:
            if self.builder != BuilderConfig():  # (a dumped config carries the default builder: only a changed one conflicts)
                raise ValueError("give select.builder or select.builders, not both")
            if all(b.share is not None for b in self.builders):
                raise ValueError("select.builders: a share is a part of what the other sources give; leave one source without a share")
        elif self.labelled_size is not None:
            raise ValueError("select.labelled_size picks the prompts of select.builders' labelled/unlabelled sources: add builders")
        return self


# what an eval's sampled rows carry without a best_of scorer: the generator's columns and the eval scorers' (gold,
# majority_vote); kept in step with scoring.base.SAMPLE_COLUMNS by tests/test_eval_cli.py
