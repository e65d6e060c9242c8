"""The `control:` section: how the loop chooses its model and when it stops. A labelled `data.dev` split (disjoint from
train and from the held-out test) is evaluated after every iteration; the loop keeps the best iteration, restarts from
it when an iteration is clearly worse (`rollback`), and stops on typed rules over the metrics the run records. The
held-out test set is scored for the report only: no rule and no choice may read it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Strict

# where a rule's metric comes from (`<source>.<name>`): see docs/control.md
METRIC_SOURCES = {
    "dev": "the dev split's evaluation after each iteration (accuracy, acc@t2, ...), and during GRPO/DPO training every "
           "control.eval_every_steps steps (accuracy)",
    "train": "what the trainer logs per step (GRPO: reward, pseudo_label_accuracy, answer_entropy, distinct_answers, all_agree, "
             "completions/mean_length, completions/clipped_ratio, kl; DPO: rewards/accuracies, rewards/margins); per iteration "
             "the mean over the last quarter of the logged steps",
    "probe": "label-free health of the model on a fixed set of train prompts, sampled after each iteration (answer_entropy, "
             "distinct_answers, all_agree, vote_margin, mean_length, cutoff_rate, majority_drift)",
    "judge": "a judge scorer's column in the score stage: <column>.mean and <column>.at_max (its share at the scale's maximum)",
    "select": "the row builder's audit (e.g. pseudo_label_accuracy of vote pairs)",
    "alarm": "reward_up_dev_down: 1 when the training reward rose while the dev metric fell",
}

# the dev metrics with per-problem values (what choosing, rollback and `drops_by: ci` compare): greedy accuracy, and
# with eval.revise_template the two-turn ones (evaluation.metrics.self_correction)
DEV_METRICS = ("accuracy",)
DEV_METRICS_TWO_TURN = ("acc@t1", "acc@t2", "delta", "delta_i2c", "delta_c2i")


class StopRule(Strict):
    """Stop the run when `metric` is `below` / `above` a threshold, or `drops_by` more than an amount (or, for dev
    metrics, `ci`: the paired 95% interval of its change from the best so far lies below zero), in `patience` checks in
    a row. Checked after every iteration, and during GRPO/DPO training at every logged step for `train.*` metrics and at
    every in-training evaluation for `dev.*` (training stops there; the best checkpoint so far is kept)."""

    metric: str = Field(description="<source>.<name>, e.g. dev.accuracy, train.pseudo_label_accuracy, probe.answer_entropy, "
                                    "judge.judge_score.at_max, alarm.reward_up_dev_down.")
    below: float | None = None
    above: float | None = None
    drops_by: float | Literal["ci"] | None = Field(None, description="A drop from the best value so far larger than this, or `ci`.")
    patience: int = Field(1, ge=1, description="Checks in a row the condition must hold.")

    @field_validator("metric")
    @classmethod
    def _known_source(cls, v: str) -> str:
        source, _, name = v.partition(".")
        if source in ("eval", "test"):
            raise ValueError(f"{v}: the held-out test set never chooses (rules read dev.*, the dev split, instead)")
        if source not in METRIC_SOURCES or not name:
            raise ValueError(f"{v}: expected <source>.<name> with source one of {sorted(METRIC_SOURCES)}")
        return v

    @model_validator(mode="after")
    def _one_condition(self) -> "StopRule":
        given = [k for k in ("below", "above", "drops_by") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a rule needs exactly one of below, above, drops_by (got {given or 'none'})")
        if self.drops_by == "ci" and not self.metric.startswith("dev."):
            raise ValueError("drops_by: ci needs a dev.* metric (the only ones measured with an interval); give a number instead")
        return self

    @property
    def source(self) -> str:
        return self.metric.partition(".")[0]

    @property
    def name(self) -> str:
        return self.metric.partition(".")[2]

    def describe(self) -> str:
        cond = (f"below {self.below:g}" if self.below is not None else f"above {self.above:g}" if self.above is not None
                else "drops beyond its 95% interval" if self.drops_by == "ci" else f"drops by more than {self.drops_by:g}")
        return f"{self.metric} {cond}" + (f" in {self.patience} checks in a row" if self.patience > 1 else "")


class ProbeConfig(Strict):
    """A fixed set of train prompts (the first `size` by prompt id, the same every iteration), sampled after every
    iteration for label-free health monitors; no gold answer is read."""

    size: int = Field(32, gt=0)
    n: int = Field(8, ge=2, description="Samples per probe prompt (the vote).")
    temperature: float = Field(0.7, gt=0)
    max_tokens: int | None = Field(None, gt=0, description="Default: eval.max_tokens.")


class ControlConfig(Strict):
    select_on: Literal["dev", "none"] | None = Field(None, description="dev: choose the model on data.dev (default when data.dev "
                                                                       "is set); none: no choice, the last iteration is the model.")
    metric: str = Field("accuracy", description="The dev metric that chooses (accuracy; acc@t2 with eval.revise_template).")
    keep: Literal["best", "last"] | None = Field(None, description="The model the run names: the best on dev so far (default with "
                                                                   "a dev split) or the last.")
    rollback: bool | None = Field(None, description="An iteration clearly worse on dev than the best (the paired 95% interval of the "
                                                    "difference below zero) does not become the next start: the next iteration restarts "
                                                    "from the best, with fresh samples. Default: on with a dev split.")
    eval_every_steps: int | None = Field(None, gt=0, description="GRPO/DPO: greedy accuracy on the dev split every N optimizer "
                                                                 "steps; the best checkpoint (not the last) becomes the iteration's model.")
    dev_slice: int | None = Field(None, gt=0, description="In-training evaluation on the first N dev problems (default: all).")
    probe: ProbeConfig | None = Field(None, description="Label-free health monitors on a fixed set of train prompts (null: off).")
    stop_if: list[StopRule] = Field(default_factory=list, description="Stop rules, checked per iteration and per logged step.")

    def resolved(self, has_dev: bool) -> "ControlConfig":
        """Defaults filled: with a dev split, select on it, keep the best, roll back."""
        select_on = self.select_on or ("dev" if has_dev else "none")
        on_dev = select_on == "dev"
        return self.model_copy(update={"select_on": select_on, "keep": self.keep or ("best" if on_dev else "last"),
                                       "rollback": on_dev if self.rollback is None else self.rollback})

    def step_rules(self) -> list[StopRule]:
        """The rules training checks as it logs: train.* at every logged step, dev.* at every in-training evaluation."""
        return [r for r in self.stop_if if r.source == "train" or (r.source == "dev" and self.eval_every_steps)]
