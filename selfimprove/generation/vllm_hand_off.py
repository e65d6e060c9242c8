"""The vLLM engine's hand-off to training and back (`backend.hand_off`): what it does while training takes the
machine, and how the next iteration's model gets onto it without starting a new engine.

- `restart`: shut down, start a new engine after training (frees everything; pays the engine start every iteration:
  process spawn, weight load, on GPU CUDA-graph capture).
- `sleep`: vLLM's sleep mode (CUDA/ROCm/XPU only): level 1 keeps the weights in CPU memory (the base model of served
  LoRA adapters does not change), level 2 drops them (a fully fine-tuned iteration replaces them); the KV cache is
  dropped either way and re-allocated on wake-up.
- `keep`: the engine stays loaded while training runs beside it (CPU, or a GPU with room for both).
Sleep and keep load a new model's weights in place (vLLM's `reload_weights(weights_path=...)`) when its layout is the
engine's (same architecture and sizes, safetensors), else the engine restarts; the prefix cache is cleared after a
reload (its blocks hold keys and values of the old weights).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError

# config keys that decide the engine's tensors and kernels (read through transformers' AutoConfig, which writes an older
# config's top-level rope_theta / rope_scaling as `rope_parameters`): a model that differs in one is not loaded in place
LAYOUT_KEYS = ("architectures", "model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings", "max_position_embeddings", "rope_parameters",
               "rope_scaling", "sliding_window", "quantization_config")


def sleep_available() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_sleep_mode_available())


def resolve_hand_off(mode: str, on_cpu: bool) -> str:
    """`auto` made concrete: sleep where vLLM offers it (not on CPU), restart elsewhere."""
    if mode != "auto":
        return mode
    return "sleep" if not on_cpu and sleep_available() else "restart"


def check_hand_off(backend, on_cpu: bool, where: str = "backend") -> None:
    """Before the engine starts: `sleep` needs vLLM's sleep mode on this device."""
    if getattr(backend, "hand_off", "auto") != "sleep":
        return
    if on_cpu or not sleep_available():
        raise ConfigError(f"{where}.hand_off: sleep: vLLM's sleep mode releases CUDA/ROCm/XPU memory and this engine runs on "
                          f"{'CPU' if on_cpu else 'a device without it'}; use keep (the engine stays loaded during training, "
                          "new weights load in place) or restart")


def model_folder(model_path: str | Path) -> Path | None:
    """The local folder of a model: the path itself, or a hub id's snapshot in the local cache (not downloaded)."""
    p = Path(model_path)
    if p.is_dir():
        return p
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(model_path), local_files_only=True))
    except Exception:  # noqa: BLE001 - not a hub id, or not in the cache
        return None


def layout(model_path: str | Path) -> dict | None:
    """The engine-deciding part of a model's config (normalised by AutoConfig); None when it cannot be loaded in
    place (no local folder with a config.json, or weights other than safetensors)."""
    from transformers import AutoConfig

    p = model_folder(model_path)
    if p is None or not (p / "config.json").is_file() or not any(p.glob("*.safetensors")):
        return None
    cfg = AutoConfig.from_pretrained(p).to_dict()
    return {k: cfg.get(k) for k in LAYOUT_KEYS}


def why_not_in_place(current: str | Path, new: str | Path) -> str | None:
    """None when `new`'s weights can replace `current`'s in a running engine; else the reason (the engine restarts)."""
    a, b = layout(current), layout(new)
    if a is None or b is None:
        return f"{current if a is None else new} is not a local folder of safetensors weights with a config.json"
    diff = [k for k in LAYOUT_KEYS if a[k] != b[k]]
    return f"its {', '.join(diff)} differ from the engine's model" if diff else None
