"""One lazy registry for every plug-in kind: tasks, backends, scorers, row builders, trainers.

An entry maps a YAML name to `"module:Class"`; the module is imported only when that name is used, so
validating a config (`--dry-run`, `--help`) imports no torch. A YAML name that is itself `"module:Class"`
loads a class from the user's own package without registering it. Every class is checked against the
kind's base class, and an unknown name fails naming the YAML path and the known names.
"""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def load_object(target: str, where: str):
    """Import `"package.module:Name"` (a dotted path after the colon is followed attribute by attribute)."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{where}: {target!r} is not of the form 'package.module:Class'")
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not (module_name == e.name or module_name.startswith(e.name + ".")):
            raise  # the module exists but a dependency of it is missing: show where
        raise ConfigError(f"{where}: cannot import {module_name!r} for {target!r}: {e}. Python imports it from the folders on its "
                          f"path: run with the folder that holds it on PYTHONPATH (PYTHONPATH=. selfimprove ...) or pip install the "
                          f"package it is part of") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{where}: {module_name!r} has no {attr!r}") from None
    return obj


def _target_name(target: str | type) -> str:
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


class Registry(Generic[T]):
    """Names -> classes of one kind (`base`, given as `"module:Class"` too, so the registry itself imports nothing)."""

    def __init__(self, kind: str, base: str, entries: dict[str, str] | None = None):
        self.kind = kind
        self.base = base
        self._entries: dict[str, str | type] = dict(entries or {})
        self._loaded: dict[str, type] = {}

    def register(self, name: str, target: str | type | None = None):
        """Add `name` -> `"module:Class"` (or a class). Without `target`, works as a class decorator. A name already
        registered to a different target is refused (two plug-ins claiming one YAML name would silently shadow one
        another); registering the same target again is a no-op."""
        if target is None:
            def deco(cls):
                self.register(name, cls)
                return cls

            return deco
        old = self._entries.get(name)
        if old is not None and _target_name(old) != _target_name(target):
            raise ConfigError(f"{self.kind} {name!r} is registered already (to {_target_name(old)}); not re-registering it to "
                              f"{_target_name(target)}: choose another name")
        self._entries[name] = target
        self._loaded.pop(name, None)
        return target

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries or (":" in name)

    def get(self, name: str, where: str | None = None) -> type[T]:
        """The class registered as `name` (or at `"module:Class"`), imported now; ConfigError naming `where` otherwise."""
        where = where or self.kind
        if name in self._loaded:
            return self._loaded[name]
        target = self._entries.get(name)
        if target is None and ":" not in name:
            raise ConfigError(f"{where}: unknown {self.kind} {name!r}; known: {self.names()} (or 'package.module:Class' for your own)")
        cls = load_object(target if isinstance(target, str) else name, where) if not isinstance(target, type) else target
        base = load_object(self.base, f"registry of {self.kind}s")
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise ConfigError(f"{where}: {name!r} is not a {base.__module__}.{base.__qualname__} subclass")
        self._loaded[name] = cls
        return cls


TASKS: Registry = Registry("task", "selfimprove.tasks.base:Task", {
    "arithmetic": "selfimprove.tasks.arithmetic:ArithmeticTask",
    "gsm8k": "selfimprove.tasks.math:GSM8KTask",
    "math500": "selfimprove.tasks.math:MATH500Task",
    "humaneval": "selfimprove.tasks.code:HumanEvalTask",
    "mbpp": "selfimprove.tasks.code:MBPPTask",
    "freeform": "selfimprove.tasks.freeform:FreeformTask",
})

BACKENDS: Registry = Registry("backend", "selfimprove.generation.base:Generator", {
    "transformers": "selfimprove.generation.hf:TransformersGenerator",
    "vllm": "selfimprove.generation.vllm:VLLMGenerator",
    "openai": "selfimprove.generation.openai_api:OpenAIGenerator",
    "ray_llm": "selfimprove.generation.ray_llm:RayLLMGenerator",
})

SCORERS: Registry = Registry("scorer", "selfimprove.scoring.base:Scorer", {
    "gold": "selfimprove.scoring.verifier:GoldVerifier",
    "majority_vote": "selfimprove.scoring.consistency:MajorityVote",
    "pointwise_judge": "selfimprove.scoring.judges:PointwiseJudge",
    "pairwise_judge": "selfimprove.scoring.judges:PairwiseJudge",
    "meta_judge": "selfimprove.scoring.meta_judge:MetaJudge",
    "p_true": "selfimprove.scoring.confidence:PTrue",
    "self_loglik": "selfimprove.scoring.confidence:SelfLogLikelihood",
    "reward_model": "selfimprove.scoring.reward_model:RewardModel",
    "ds_weight": "selfimprove.scoring.ds_weight:DSWeight",
    "critic": "selfimprove.scoring.critic:Critic",
    "prm": "selfimprove.scoring.prm:ProcessRewardModel",
    "weighted_sum": "selfimprove.scoring.weighted_sum:WeightedSum",
})

ROW_BUILDERS: Registry = Registry("row builder", "selfimprove.builders.base:RowBuilder", {
    "sft": "selfimprove.builders.sft:SFTRows",
    "vote_pairs": "selfimprove.builders.vote_pairs:VotePairs",
    "judge_pairs": "selfimprove.builders.judge_pairs:JudgePairs",
    "correctness_pairs": "selfimprove.builders.correctness_pairs:CorrectnessPairs",
    "meta_judge_pairs": "selfimprove.builders.meta_judge_pairs:MetaJudgePairs",
    "correction_trajectories": "selfimprove.builders.trajectories:CorrectionTrajectories",
    "self_verify_trajectories": "selfimprove.builders.self_verify:SelfVerifyTrajectories",
})

TRAINERS: Registry = Registry("trainer", "selfimprove.training.base:Trainer", {
    "sft": "selfimprove.training.sft:SFTTrainer",
    "dpo": "selfimprove.training.dpo:DPOTrainer",
    "grpo": "selfimprove.training.grpo:GRPOTrainer",
})

__all__ = ["BACKENDS", "ROW_BUILDERS", "Registry", "SCORERS", "TASKS", "TRAINERS", "load_object"]
