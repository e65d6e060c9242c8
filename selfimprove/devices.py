"""Device and dtype choice, shared by generation, scorers and trainers: float32 on CPU (bf16 there is ~200x
slower on CPUs without bf16 matrix units), bfloat16 on GPUs that support it. A core module: torch is imported when a
function runs, never when this module is imported."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def pick_device(device: str) -> torch.device:
    """`auto` -> the first GPU when there is one, else the CPU."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` -> float32 on CPU, bfloat16 on GPU (inference)."""
    import torch

    if dtype == "auto":
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    return getattr(torch, dtype)


def training_dtype(device: torch.device) -> torch.dtype:
    """float32 on CPU and on GPUs without bf16, else bfloat16."""
    import torch

    if device.type == "cpu" or not torch.cuda.is_bf16_supported():
        return torch.float32
    return torch.bfloat16


def free_accelerator_memory() -> None:
    """Hand the memory of objects that are gone back to the device (torch keeps freed blocks cached for itself): a
    vLLM engine that starts next measures what is free on the GPU, and torch's cache counts as taken."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
