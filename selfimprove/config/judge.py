"""Judge jobs (`judges/*.yaml`, `selfimprove judge`): which model judges, with which scorers, over which rows."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ..models import DEFAULT_MODEL
from .backend import BackendConfig, TransformersBackendConfig
from .base import Strict, load_config, plain_name
from .pipeline import ScorerConfig, SplitConfig, TaskConfig
from .ray import RayConfig

PASS_THRESHOLD = 3.0  # a 0-5 rubric score at or above this counts as "judged good" when compared with gold labels


class DiagnoseConfig(Strict):
    pass_threshold: float = Field(PASS_THRESHOLD, description="Pointwise: a judge score >= this counts as judged good (for kappa vs gold).")
    other_judge: str | None = Field(None, description="Self-preference: a second judge (model reference) for the same rows.")
    other_backend: BackendConfig | None = Field(None, description="Backend of the other judge (default: the job's).")
    policy_source: str | None = Field(None, description="Self-preference: the `source` value that marks the judge's own responses.")


class JudgeJobConfig(Strict):
    """A judge job: which model judges, with which scorers, over which rows."""

    name: str
    description: str | None = None
    model: str = Field(DEFAULT_MODEL, description="The judge (scorers with `judge: policy` use it).")
    backend: BackendConfig = Field(default_factory=TransformersBackendConfig)
    task: TaskConfig = Field(default_factory=lambda: TaskConfig(name="freeform"), description="How answers are extracted and checked against `reference`.")
    input: SplitConfig = Field(
        default_factory=SplitConfig,
        description="Rows to judge (overridden by --input); `fields` maps prompt/response/response_b/reference/label/source/group.")
    scorers: list[ScorerConfig] = Field(description="pointwise_judge, pairwise_judge, meta_judge, p_true, self_loglik, reward_model.")
    shard_size: int = Field(64, gt=0)
    ray: RayConfig | None = Field(None, description="Run the shards on a pool of Ray actors (see config.ray).")
    output_dir: str = "judge_runs"
    prompts_dir: str | None = None
    diagnose: DiagnoseConfig = Field(default_factory=DiagnoseConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return plain_name(v)


def load_job(path: str | Path, overrides: list[str] | None = None) -> JudgeJobConfig:
    """Read a judge job YAML, apply `--set` overrides, validate (no model, no data touched)."""
    return load_config(path, JudgeJobConfig, overrides)


