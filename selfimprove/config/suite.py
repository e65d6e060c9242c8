"""Eval suites (`evals/*.yaml`): a dataset, a prompt template, sampling and a model, for `selfimprove eval`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ..models import DEFAULT_MODEL
from .backend import BackendConfig, TransformersBackendConfig
from .base import Strict, load_config, plain_name
from .pipeline import EvalConfig, SplitConfig, TaskConfig
from .ray import RayConfig


class EvalSuiteConfig(Strict):
    """One evaluation: which problems, how they are asked, how they are sampled and scored."""

    name: str = Field(description="Suite name; results go to <output_dir>/<name>/<model>/ unless --output is given.")
    description: str | None = None
    model: str = Field(DEFAULT_MODEL, description="Model reference (overridden by --model).")
    task: TaskConfig
    data: SplitConfig = Field(default_factory=SplitConfig, description="The problems: local file or hub dataset, split, field mapping, size.")
    backend: BackendConfig = Field(default_factory=TransformersBackendConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig, description="greedy and/or n samples, max_tokens, revise_template, bootstrap.")
    ray: RayConfig | None = Field(None, description="Run the shards on a pool of Ray actors (see config.ray).")
    output_dir: str = Field("eval_runs", description="Parent folder of results.")
    prompts_dir: str | None = Field(None, description="Extra folder searched for prompt templates before the bundled ones.")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return plain_name(v)


def load_suite(path: str | Path, overrides: list[str] | None = None) -> EvalSuiteConfig:
    """Read an eval suite YAML, apply `--set` overrides, validate (no model, no data touched)."""
    return load_config(path, EvalSuiteConfig, overrides)
