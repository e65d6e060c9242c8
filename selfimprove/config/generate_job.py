"""Generate jobs (`jobs/*.yaml`, `selfimprove generate`): n samples per input row from any backend, as a batch job."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from ..models import DEFAULT_MODEL
from .backend import BackendConfig, TransformersBackendConfig
from .base import Strict, load_config, plain_name
from .pipeline import SamplingConfig, SplitConfig
from .ray import RayConfig


class GenerateJobConfig(Strict):
    """Which model samples, how, over which rows; the output is one row per sample."""

    name: str
    description: str | None = None
    model: str = Field(DEFAULT_MODEL, description="Model reference: hub id, local folder, builtin:<name>.")
    backend: BackendConfig = Field(default_factory=TransformersBackendConfig)
    input: SplitConfig = Field(
        default_factory=SplitConfig,
        description="Rows (overridden by --input): a .jsonl/.parquet/.csv file, a dataset folder or a hub id. `fields` maps "
                    "prompt (text), messages (a chat list, instead of prompt), system and id to its columns.")
    template: str | None = Field(None, description="A Jinja2 template in prompts/ rendered with the row's columns as the user message "
                                                   "(instead of the prompt field).")
    system: str | None = Field(None, description="A system message for every row (a `system` field overrides it per row).")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="n, temperature, top_p, max_tokens, stop, seed.")
    shard_size: int = Field(64, gt=0, description="Rows per shard; a killed job resumes at the last finished shard.")
    output_dir: str = "generate_runs"
    prompts_dir: str | None = None
    ray: RayConfig | None = Field(None, description="Run the shards on a pool of Ray actors (see config.ray).")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return plain_name(v)

    @model_validator(mode="after")
    def _greedy_is_one_sample(self) -> "GenerateJobConfig":
        if self.sampling.temperature == 0 and self.sampling.n > 1:
            raise ValueError("sampling: temperature 0 (greedy) gives one completion per row: set sampling.n to 1 or raise the temperature")
        return self


def load_generate_job(path: str | Path, overrides: list[str] | None = None) -> GenerateJobConfig:
    """Read a generate job YAML, apply `--set` overrides, validate (no model, no data touched)."""
    return load_config(path, GenerateJobConfig, overrides)
