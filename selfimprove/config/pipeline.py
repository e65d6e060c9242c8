"""Pipeline configuration: the pydantic schema of `pipelines/*.yaml` (one section per stage).

Every model forbids unknown keys so that a typo fails in the first second, with the YAML
path of the offending key in the message (see `ConfigError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError
from ..registry import SCORERS
from .backend import BackendConfig, TransformersBackendConfig
from .base import Strict, format_validation_error, load_config, plain_name
from .control import DEV_METRICS, DEV_METRICS_TWO_TURN, ControlConfig
from .eval import EVAL_SAMPLE_COLUMNS, BestOf, CritiqueRefineEval, EvalConfig  # noqa: F401 (re-exported)
from .propose import ProposeConfig
from .ray import RayConfig
from .refine import RefineConfig
from .sampling import SamplingParams
from .schedule import apply_values, normalise, values_at
from .search import SearchConfig
from .select import BuilderConfig, BuilderSource, GoldRows, QuantileFilter, ScoreThreshold, SelectConfig, TopKPerPrompt  # noqa: F401
from .train import SFTTrainConfig, TrainConfig
from .verify import VerifyConfig


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
    verify: VerifyConfig | None = Field(None, description="Self-rewarding correction's data: the model evaluates its attempts "
                                                         "([VERIFY] correct|wrong) and revises after 'wrong'; scored and added "
                                                         "before select (see config.verify).")
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
        per_problem = DEV_METRICS + (DEV_METRICS_TWO_TURN if self.eval.two_turn else ())
        if c.select_on == "dev" and c.metric not in per_problem:
            raise ValueError(f"control.metric: {c.metric!r} is not a dev metric; choose one of {list(per_problem)}"
                             + ("" if self.eval.two_turn else " (the two-turn ones need eval.revise_template or eval.self_verify)"))
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
    def _verify(self) -> "PipelineConfig":
        if self.verify is not None and ("score" not in self.stages or "select" not in self.stages):
            raise ValueError(f"verify: runs between the score and select stages, which this run leaves out (stages: {self.stages})")
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


