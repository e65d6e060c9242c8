"""The `train:` section, one model per training method, chosen by `method` (a tagged union; DPO and GRPO
join it as they land). `method` may also be a registered plug-in trainer or `"package.module:Class"`, whose
`options` its class validates (see `registry.TRAINERS`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from .base import Strict, tagged_union


class LoraConfig(Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class TrainBase(Strict):
    """What every trainer shares: the model it starts from, LoRA, the optimiser schedule, the data policy."""

    method: str
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
    device: str | None = Field(None, description="auto (a GPU when there is one), cpu, cuda, cuda:1 ... Default: the backend's device "
                                                 "(local backends), else auto.")
    report_to: list[str] = Field(default_factory=list, description="Trackers: tensorboard, wandb, mlflow.")


class SFTTrainConfig(TrainBase):
    """Supervised fine-tuning on the selected rows (TRL's SFTTrainer); the loss covers the assistant turn."""

    method: Literal["sft"] = "sft"


class DPOTrainConfig(TrainBase):
    """Weighted DPO with an optional per-sequence NLL term on the chosen response (ScPO / IRPO), on TRL's DPOTrainer;
    rows `prompt`, `chosen`, `rejected`, `weight` (a preference-pair builder in `select.builder`)."""

    method: Literal["dpo"] = "dpo"
    beta: float = Field(0.1, gt=0, description="DPO's beta: how far the policy may move from the reference.")
    nll_alpha: float = Field(0.0, ge=0, description="Weight of NLL(chosen)/|chosen| added to each pair's loss (ScPO/IRPO: 1).")
    reference: str = Field("start", description="start = the iteration's starting model (LoRA: the adapter switched off); or a model "
                                                "reference (folder, hub id, builtin:...) kept fixed.")
    precompute_ref: bool = Field(False, description="Compute the reference log-probs once before training (with reference: start, "
                                                    "no second model in memory during training).")


class PluginTrainConfig(TrainBase):
    """A trainer registered by the user or named `"package.module:Class"`."""

    options: dict[str, Any] = Field(default_factory=dict, description="Validated by the trainer class's `Options` model.")

    @field_validator("method")
    @classmethod
    def _known(cls, v: str) -> str:
        from ..registry import TRAINERS

        if v not in TRAINERS:
            raise ValueError(f"unknown training method {v!r}; known: {TRAINERS.names()} (or 'package.module:Class' for your own)")
        return v


BUILTIN_METHODS = {"sft": SFTTrainConfig, "dpo": DPOTrainConfig}


TrainConfig = tagged_union("method", "method", BUILTIN_METHODS, PluginTrainConfig, default="sft")
"""The `train:` section: a missing `method` means sft."""
