"""Pipeline configuration: the pydantic schema of `pipelines/*.yaml`, loading and `--set` overrides.

Every model forbids unknown keys so that a typo fails in the first second, with the YAML
path of the offending key in the message (see `ConfigError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from .errors import ConfigError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


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
    eval: SplitConfig = Field(description="Held-out prompts for evaluation; never trained on.")


class TaskConfig(Strict):
    name: str = Field(description="Registered task: arithmetic, gsm8k, math500.")
    prompt_template: str | None = Field(None, description="Jinja2 template name in prompts/ (default: the task's own).")
    system_prompt_template: str | None = Field(None, description="Optional Jinja2 template rendered as the system message.")
    options: dict[str, Any] = Field(default_factory=dict, description="Task-specific options, validated by the task.")


class BackendConfig(Strict):
    name: Literal["transformers", "vllm", "openai"] = "transformers"
    batch_size: int = Field(64, gt=0, description="Sequences decoded together (transformers).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto = float32 on CPU (bf16 is ~200x slower there), bfloat16 on GPU."
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1 ...")
    prune_finished: bool | None = Field(
        None,
        description="transformers: decode in a loop that drops finished sequences from the batch (true) or with model.generate "
        "(false). Default: true on CPU, where a step costs in proportion to the batch; false on GPU, where a step costs the "
        "same at any batch and model.generate's loop has less overhead (benchmarks/gpu/decode_check.py).",
    )
    tensor_parallel_size: int = Field(1, gt=0, description="vLLM tensor parallelism.")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="vLLM: share of GPU memory to reserve (on CPU: of the machine's memory); default 0.85 on GPU, 0.25 on CPU.")
    max_model_len: int | None = Field(2048, description="vLLM context length.")
    enforce_eager: bool | None = Field(None, description="vLLM: None = eager on CPU only.")
    max_lora_rank: int = Field(64, gt=0, description="vLLM: largest LoRA rank served.")
    base_url: str | None = Field(None, description="openai: server URL, e.g. http://localhost:8000/v1 (vllm serve, SGLang, llama.cpp server, a hosted API).")
    api_key_env: str | None = Field(None, description="openai: name of the environment variable holding the API key (the key itself never goes in a config).")
    served_model: str | None = Field(None, description="openai: model name the server knows (default: the model reference).")
    api: Literal["chat", "completions"] = Field("chat", description="openai: /chat/completions (messages) or /completions (the last user message as a raw prompt).")
    concurrency: int = Field(8, gt=0, description="openai: requests in flight at once.")
    max_retries: int = Field(5, ge=0, description="openai: retries with exponential backoff on 429, 5xx, connection errors and timeouts.")
    request_timeout: float = Field(120.0, gt=0, description="openai: seconds per request.")


class SamplingConfig(Strict):
    n: int = Field(4, gt=0, description="Samples per prompt.")
    temperature: float = Field(0.7, ge=0, description="0 means greedy.")
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(128, gt=0)
    stop: list[str] = Field(default_factory=list, description="Stop strings; the text is cut before them.")
    seed: int = 0


class GenerateConfig(SamplingConfig):
    shard_size: int = Field(32, gt=0, description="Prompts per shard; a killed run resumes at the last finished shard.")
    n: int = Field(8, gt=0, description="Samples per prompt.")


class ScorerConfig(Strict):
    name: str = Field(description="Registered scorer: gold, majority_vote.")
    options: dict[str, Any] = Field(default_factory=dict)


class SelectConfig(Strict):
    correct_only: bool = Field(True, description="Keep samples whose `correct` column is true.")
    require_finished: bool = Field(True, description="Drop samples cut off by max_tokens.")
    min_vote_share: float | None = Field(None, ge=0, le=1, description="Keep samples whose answer has at least this vote share.")
    dedup: bool = Field(True, description="Drop repeated (prompt, completion) pairs (whitespace-normalised).")
    max_per_prompt: int | None = Field(4, gt=0, description="Cap kept samples per prompt.")
    balance: bool = Field(False, description="Keep the same number per prompt (the smallest kept count, at least 1).")


class LoraConfig(Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class TrainConfig(Strict):
    method: Literal["sft"] = "sft"
    lora: LoraConfig | None = Field(default_factory=LoraConfig, description="null = full fine-tuning.")
    learning_rate: float = Field(2e-4, gt=0)
    epochs: float = Field(2.0, gt=0)
    batch_size: int = Field(8, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    max_length: int = Field(512, gt=0)
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    lr_scheduler: str = "linear"
    init: Literal["previous", "base"] = Field("previous", description="Start each iteration from the previous model, or restart from the base model.")
    accumulate_data: bool = Field(False, description="Train on the selected data of all iterations so far, not only the current one.")
    min_rows: int = Field(1, ge=1, description="Fail (with a message) when fewer rows are selected than this.")
    seed: int = 0
    report_to: list[str] = Field(default_factory=list, description="Trackers: tensorboard, wandb, mlflow.")


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

    @model_validator(mode="after")
    def _something_to_do(self) -> "EvalConfig":
        if not self.greedy and self.n == 0:
            raise ValueError("eval needs greedy: true or n > 0")
        if self.revise_template and not self.greedy:
            raise ValueError("revise_template needs greedy: true (the revision turn revises the greedy attempt)")
        return self


STAGES = ("generate", "score", "select", "train", "eval")


class PipelineConfig(Strict):
    name: str = Field(description="Run name; outputs go to <run_dir>/<name>/.")
    run_dir: str = "runs"
    model: str = Field(description="Model reference: hub id, local path, builtin:<name>.")
    iterations: int = Field(1, ge=0)
    seed: int = 0
    stages: list[str] = Field(default_factory=lambda: list(STAGES), description="Stages of each iteration, in order.")
    task: TaskConfig
    data: DataConfig
    backend: BackendConfig = Field(default_factory=BackendConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    score: list[ScorerConfig] = Field(default_factory=lambda: [ScorerConfig(name="gold"), ScorerConfig(name="majority_vote")])
    select: SelectConfig = Field(default_factory=SelectConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    prompts_dir: str | None = Field(None, description="Extra folder searched for prompt templates before the bundled ones.")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return plain_name(v)

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


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        loc = _format_loc(tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the documented keys in README.md)"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`generate.n=4` -> (["generate", "n"], 4); the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, value = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set {text!r}: empty key")
    return path, yaml.safe_load(value) if value.strip() else ""


def apply_override(data: dict, path: list[str], value: Any) -> None:
    node = data
    for i, part in enumerate(path[:-1]):
        nxt = node.get(part) if isinstance(node, dict) else None
        if nxt is None:
            nxt = {}
            node[part] = nxt
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {'.'.join(path[: i + 1])} is not a mapping")
        node = nxt
    node[path[-1]] = value


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    return data


def load_config(path: str | Path, model: type[BaseModel], overrides: list[str] | None = None):
    """Read a YAML file (pipeline, eval suite, judge job), apply `--set` overrides, validate it as `model`."""
    data = load_yaml(path)
    for text in overrides or []:
        key, value = parse_override(text)
        apply_override(data, key, value)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, str(path))) from None


def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a pipeline YAML, apply `--set` overrides, validate everything (no model is touched)."""
    return load_config(path, PipelineConfig, overrides)


def plain_name(v: str) -> str:
    """Run, suite and job names become folder names."""
    if not v or "/" in v or v.startswith("."):
        raise ValueError("must be a plain folder name (no '/', not starting with '.')")
    return v
