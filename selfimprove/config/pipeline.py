"""Pipeline configuration: the pydantic schema of `pipelines/*.yaml` (one section per stage).

Every model forbids unknown keys so that a typo fails in the first second, with the YAML
path of the offending key in the message (see `ConfigError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError
from ..registry import ROW_BUILDERS, SCORERS
from .backend import BackendConfig, TransformersBackendConfig
from .base import Strict, format_validation_error, load_config, plain_name
from .control import DEV_METRICS, DEV_METRICS_TWO_TURN, ControlConfig
from .propose import ProposeConfig
from .ray import RayConfig
from .refine import RefineConfig
from .sampling import SamplingParams
from .schedule import apply_values, normalise, values_at
from .search import SearchConfig
from .train import SFTTrainConfig, TrainConfig


class SplitConfig(Strict):
    """Where one split of prompts comes from: a local JSONL/Parquet/CSV file, a hub dataset, or (synthetic tasks) a seeded generator."""

    source: str | None = Field(None, description="Local file/directory or hub dataset id; synthetic tasks leave it empty.")
    split: str = Field("train", description="Split name for hub datasets and dataset directories.")
    subset: str | None = Field(None, description="Hub dataset configuration name, e.g. `main` for openai/gsm8k.")
    size: int | None = Field(None, gt=0, description="Rows to use (first N after an optional seeded shuffle); required for synthetic tasks.")
    seed: int = Field(0, description="Seed of the synthetic generator or of the shuffle.")
    shuffle: bool = Field(False, description="Shuffle rows (seeded) before taking `size`.")
    fields: dict[str, str] = Field(default_factory=dict, description="Task field -> dataset column, e.g. {question: Body, answer: Answer}.")


class DataConfig(Strict):
    train: SplitConfig = Field(description="Prompts the loop samples and trains on.")
    eval: SplitConfig = Field(description="Held-out prompts for evaluation; never trained on, never used to choose.")
    dev: SplitConfig | None = Field(None, description="A small labelled split, disjoint from train and eval, evaluated after every "
                                                      "iteration to choose the model and roll back (see control:).")


class TaskConfig(Strict):
    name: str = Field(description="Registered task (arithmetic, gsm8k, math500, humaneval, mbpp, freeform) or 'package.module:Class'.")
    prompt_template: str | None = Field(None, description="Jinja2 template name in prompts/ (default: the task's own).")
    system_prompt_template: str | None = Field(None, description="Optional Jinja2 template rendered as the system message.")
    options: dict[str, Any] = Field(default_factory=dict, description="Task-specific options, validated by the task.")


class SamplingConfig(Strict):
    n: int = Field(4, gt=0, description="Samples per prompt.")
    temperature: float = Field(0.7, ge=0, description="0 means greedy.")
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(128, gt=0)
    stop: list[str] = Field(default_factory=list, description="Stop strings; the text is cut before them.")
    seed: int = 0

    def params(self, **changes) -> SamplingParams:
        """These settings as the backends' `SamplingParams` (`changes` override fields, e.g. a per-iteration seed)."""
        d = {"n": self.n, "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens, "stop": tuple(self.stop), "seed": self.seed}
        d.update(changes)
        return SamplingParams(**d)


class ReviseConfig(Strict):
    """A second turn per sample: the problem, the model's first attempt, then `template`'s instruction (SCoRe's
    self-correction prompt by default); `n` revisions per first attempt."""

    template: str = "self_correct"
    n: int = Field(1, gt=0)
    temperature: float | None = Field(None, ge=0, description="Default: generate.temperature.")
    max_tokens: int | None = Field(None, gt=0, description="Default: generate.max_tokens.")


class GenerateConfig(SamplingConfig):
    shard_size: int = Field(32, gt=0, description="Prompts per shard; a killed run resumes at the last finished shard.")
    n: int = Field(8, gt=0, description="Samples per prompt.")
    revise: ReviseConfig | None = Field(None, description="Also sample a revision turn of every sample (self-correction data).")


class ScorerConfig(Strict):
    name: str = Field(description=f"Registered scorer ({', '.join(SCORERS.names())}) or 'package.module:Class'.")
    options: dict[str, Any] = Field(default_factory=dict)


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

    template: str = Field(description="Renders a solution from `question`, `reference` and `answer` (the gold answer), e.g. "
                                      "ds_valid_arithmetic: 'The answer is <gold>.'")
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

    def revision_params(self) -> SamplingParams:
        """The revision turn: greedy, `revise_max_tokens` (default max_tokens)."""
        return SamplingParams(n=1, temperature=0.0, max_tokens=self.revise_max_tokens or self.max_tokens, stop=tuple(self.stop), seed=self.seed)

    @model_validator(mode="after")
    def _something_to_do(self) -> "EvalConfig":
        if not self.greedy and self.n == 0:
            raise ValueError("eval needs greedy: true or n > 0")
        if self.revise_template and not self.greedy:
            raise ValueError("revise_template needs greedy: true (the revision turn revises the greedy attempt)")
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


STAGES = ("generate", "score", "select", "train", "eval")


class AboutConfig(Strict):
    """What a recipe is, for `selfimprove recipes` and the docs: never read by the loop."""

    method: str = Field(description="The method's usual name, e.g. ScPO.")
    paper: str | None = Field(None, description="Where it was published, e.g. arXiv 2411.04109.")
    labels: Literal["gold", "label-free", "few labels"] = Field(description="What training uses: gold answers, none (the gold scorer "
                                                                             "only audits), or a small labelled set.")
    summary: str = Field(description="One line: what an iteration does.")


class PipelineConfig(Strict):
    name: str = Field(description="Run name; outputs go to <run_dir>/<name>/.")
    run_dir: str = "runs"
    model: str = Field(description="Model reference: hub id, local path, builtin:<name>.")
    about: AboutConfig | None = Field(None, description="What this recipe is (method, paper, label use, one line).")
    iterations: int = Field(1, ge=0)
    seed: int = 0
    stages: list[str] = Field(default_factory=lambda: list(STAGES), description="Stages of each iteration, in order (default: the "
                                                                                "training method's own stages, then eval).")
    task: TaskConfig
    data: DataConfig
    backend: BackendConfig = Field(default_factory=TransformersBackendConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    score: list[ScorerConfig] = Field(default_factory=lambda: [ScorerConfig(name="gold"), ScorerConfig(name="majority_vote")],
                                      description="Scorers, in order (default: gold and majority_vote; gold alone for a code task).")
    select: SelectConfig = Field(default_factory=SelectConfig)
    train: TrainConfig = Field(default_factory=SFTTrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    control: ControlConfig = Field(default_factory=ControlConfig, description="Choosing the model on data.dev, rollback, stop "
                                                                              "rules, in-training evaluation, health monitors.")
    prompts_dir: str | None = Field(None, description="Extra folder searched for prompt templates before the bundled ones.")
    ray: RayConfig | None = Field(None, description="Run generate, score and eval shards on a pool of Ray actors (see config.ray).")
    propose: ProposeConfig | None = Field(None, description="New train problems written by the model each iteration, kept when "
                                                           "new and self-consistent (ScPO; see config.propose).")
    refine: RefineConfig | None = Field(None, description="A second generation after scoring for the samples a condition picks "
                                                         "(critique-then-refine, STaR's rationalization), scored and added "
                                                         "before select (see config.refine).")
    search: SearchConfig | None = Field(None, description="B-STaR: per iteration, choose generate.temperature and a reward "
                                                         "threshold (select.min_score) on a slice of the train prompts by "
                                                         "balance score (see config.search).")
    schedule: dict[Any, Any] = Field(default_factory=dict, description="Values that change by iteration under generate, score, "
                                     "select, train: {2: {select.builder.options.tau: 0.5}} (from iteration 2 on) or "
                                     "{train.learning_rate: [2.0e-4, 1.0e-4]} (iterations 1, 2, ...); see config.schedule.")
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        default_factory=list, description="Trackers for every stage's numbers per iteration, and (unless train.report_to is set) "
                                          "for TRL's per-step training logs.")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return plain_name(v)

    @model_validator(mode="after")
    def _train_device(self) -> "PipelineConfig":
        """Training runs where the backend's model does unless `train.device` says otherwise."""
        if self.train.device is None:
            self.train.device = getattr(self.backend, "device", "auto")
        if "report_to" not in self.train.model_fields_set:
            self.train.report_to = list(self.report_to)
        return self

    @model_validator(mode="after")
    def _control(self) -> "PipelineConfig":
        """Defaults filled from `data.dev`; everything that chooses on dev needs it."""
        c = self.control.resolved(self.data.dev is not None)
        if self.data.dev is None:
            needs = [k for k, bad in (("select_on: dev", c.select_on == "dev"), ("keep: best", c.keep == "best"), ("rollback", c.rollback),
                                      ("eval_every_steps", c.eval_every_steps is not None))
                     if bad] + [r.metric for r in c.stop_if if r.source == "dev"]
            if needs:
                raise ValueError(f"control: {', '.join(needs)} need(s) a labelled dev split: add data.dev (e.g. {{size: 64, seed: 3}} "
                                 "for a generated task)")
        if c.select_on == "none" and (c.keep == "best" or c.rollback):
            raise ValueError("control: keep: best and rollback choose on dev; with select_on: none use keep: last, rollback: false")
        if (c.select_on == "dev" or c.eval_every_steps or any(r.source == "dev" for r in c.stop_if)) and not self.eval.greedy:
            raise ValueError("control: the dev split is scored by greedy decoding (the eval section's): set eval.greedy: true")
        per_problem = DEV_METRICS + (DEV_METRICS_TWO_TURN if self.eval.revise_template else ())
        if c.select_on == "dev" and c.metric not in per_problem:
            raise ValueError(f"control.metric: {c.metric!r} is not a dev metric; choose one of {list(per_problem)}"
                             + ("" if self.eval.revise_template else " (the two-turn ones need eval.revise_template)"))
        for i, r in enumerate(c.stop_if):
            if r.drops_by == "ci" and r.name not in per_problem:
                raise ValueError(f"control.stop_if[{i}]: drops_by: ci compares per-problem dev values: {r.metric} is not one of "
                                 f"{['dev.' + m for m in per_problem]}")
        if c.select_on == "dev" and "eval" not in self.stages:
            raise ValueError("control.select_on: dev evaluates the dev split in the eval stage: keep eval in stages (or select_on: none)")
        if self.train.distributed is not None and c.step_rules() + ([1] if c.eval_every_steps else []):
            raise ValueError("control: in-training evaluation and per-step stop rules run in this process; under train.distributed "
                             "use per-iteration rules (dev.*, probe.*) instead")
        self.control = c
        return self

    @model_validator(mode="after")
    def _accumulate(self) -> "PipelineConfig":
        """`train.accumulate_data` is `select.accumulate` (the select stage builds the train set and reads its own section)."""
        if self.train.accumulate_data:
            self.select.accumulate = True
        return self

    @model_validator(mode="after")
    def _default_scorers(self) -> "PipelineConfig":
        """Unless `score:` is given: gold and the majority vote, or gold alone for a code task (programs are not votes)."""
        if "score" not in self.model_fields_set:
            from ..registry import TASKS

            try:
                kind = getattr(TASKS.get(self.task.name, "task.name"), "kind", "answer")
            except (ConfigError, ImportError):  # an unknown task is reported where the task is built, with its message
                kind = "answer"
            if kind != "answer":
                self.score = [ScorerConfig(name="gold")]
        return self

    @model_validator(mode="after")
    def _method_stages(self) -> "PipelineConfig":
        """Unless `stages:` is given, an iteration runs its training method's stages (GRPO samples inside training)."""
        if "stages" not in self.model_fields_set:
            from ..registry import TRAINERS

            method = TRAINERS.get(self.train.method, "train.method")
            self.stages = [s for s in STAGES if s in method.stages or s == "eval"]
        return self

    @field_validator("schedule")
    @classmethod
    def _schedule_keys(cls, v: dict) -> dict:
        """Iteration numbers as strings (`2:` and `"2":` alike), so the config writes as JSON."""
        return {str(k): val for k, val in v.items()}

    @model_validator(mode="after")
    def _schedule(self) -> "PipelineConfig":
        """Every iteration's config, with its scheduled values, must validate as a whole (named by iteration)."""
        if self.schedule:
            plan = normalise(self.schedule, self.iterations)
            for k in sorted({k for by_k in plan.values() for k in by_k if k <= self.iterations}):
                self.at_iteration(k)
        return self

    def scheduled(self, k: int) -> dict[str, Any]:
        """The scheduled values in force at iteration k ({} without a schedule)."""
        return values_at(normalise(self.schedule, self.iterations), k) if self.schedule else {}

    def at_iteration(self, k: int) -> "PipelineConfig":
        """This config as iteration k runs it: its scheduled values set (self when nothing is scheduled by then)."""
        values = self.scheduled(k)
        return self.with_values(values, f"at iteration {k} (schedule: {values})") if values else self

    def with_values(self, values: dict[str, Any], where: str) -> "PipelineConfig":
        """A copy with `values` (key path -> value) set and no schedule, validated whole (errors name `where`)."""
        data = self.model_dump()
        data["schedule"] = {}
        try:
            return type(self).model_validate(apply_values(data, values))
        except ValidationError as e:
            raise ValueError(format_validation_error(e, where).replace("\n", "\n  ")) from None

    @model_validator(mode="after")
    def _propose(self) -> "PipelineConfig":
        if self.propose is not None and not ({"generate", "train"} & set(self.stages)):
            raise ValueError("propose: adds train prompts for the generate (or GRPO's train) stage, which this run leaves out")
        return self

    @model_validator(mode="after")
    def _refine(self) -> "PipelineConfig":
        if self.refine is not None and ("score" not in self.stages or "select" not in self.stages):
            raise ValueError(f"refine: runs between the score and select stages, which this run leaves out (stages: {self.stages})")
        return self

    @model_validator(mode="after")
    def _search(self) -> "PipelineConfig":
        """B-STaR's search samples and selects as the iteration would, then sets its temperature and threshold."""
        if self.search is None:
            return self
        if "generate" not in self.stages or "select" not in self.stages:
            raise ValueError(f"search: chooses the settings of the generate and select stages, which this run leaves out "
                             f"(stages: {self.stages}); drop search or use a method with them (sft, dpo)")
        clash = [key for key in normalise(self.schedule, self.iterations)
                 if key == "generate.temperature" or key.startswith("select.min_score")]
        if clash:
            raise ValueError(f"schedule: {clash[0]} is what search: chooses each iteration; drop one of them")
        return self

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, v: list[str]) -> list[str]:
        unknown = [s for s in v if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; known stages: {list(STAGES)}")
        order = [STAGES.index(s) for s in v]
        if order != sorted(order) or len(set(v)) != len(v):
            raise ValueError(f"stages must appear once each, in the order {list(STAGES)}")
        return v


def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a pipeline YAML, apply `--set` overrides, validate everything (no model is touched)."""
    return load_config(path, PipelineConfig, overrides)


