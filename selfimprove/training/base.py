"""The trainer interface: a training method takes the iteration's starting model and the train-set rows and
writes `out_dir/model` (merged, loadable by every backend) and, with LoRA, `out_dir/adapter`. Each method
declares the row columns it reads, whether it accepts per-row weights, and which stages an iteration of it
runs, so the loop builds its stage list from the configured method."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Literal

from pydantic import BaseModel

from ..columns import DeclaresColumns
from ..options import NoOptions, validate_options
from ..registry import TRAINERS

ProgressFn = Callable[[int, int | None], None]


@dataclass(frozen=True)
class Monitor:
    """A training statistic the run report shows: `key` in the train stats (`final`), or in each logged step
    (`per_step`): `trend` (first -> last) or `mean`. `label`: how the report names it (default: the key)."""

    key: str
    kind: Literal["final", "trend", "mean"] = "final"
    label: str | None = None

    def describe(self, stats: dict) -> str | None:
        name = self.label or self.key
        if self.kind == "final":
            v = stats.get(self.key)
            return f"{name} {v:.3f}" if isinstance(v, (int, float)) else None
        values = [s[self.key] for s in stats.get("per_step") or [] if isinstance(s.get(self.key), (int, float))]
        if not values:
            return None
        return f"{name} {values[0]:.3f} -> {values[-1]:.3f}" if self.kind == "trend" else f"{name} {sum(values) / len(values):.3f}"


class Trainer(DeclaresColumns, ABC):
    """Construct with the `train:` section (a `TrainBase` subclass); `train(...)` returns stats for the manifest.
    `reads` (and `optional_reads`): the row columns it trains on (`columns()`; it writes a model, no columns)."""

    name: ClassVar[str]
    reads: ClassVar[tuple[str, ...]]
    supports_weights: ClassVar[bool] = False
    stages: ClassVar[tuple[str, ...]] = ("generate", "score", "select", "train")
    monitors: ClassVar[tuple[Monitor, ...]] = ()  # what the run report shows of a training run (besides steps and loss)
    supports_control: ClassVar[bool] = False  # honours `self.control` (in-training dev evaluation, step stop rules)
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, cfg, where: str = "train"):
        self.cfg = cfg
        self.options = validate_options(self.Options, getattr(cfg, "options", None), f"{where}.options")
        self.task = None
        self.models = None
        self.policy = None
        self.control = None  # training.control.TrainingControl, set by the train stage when control: asks for it

    def check(self, task) -> None:
        """Validate what depends on the task (e.g. reward scorers) before any model loads; raise ConfigError."""
        return None

    def monitor_report(self, stats: dict) -> list[str]:
        """The declared monitors of one training run, as the run report shows them, then the in-training dev curve and
        the stop, where the control had them."""
        out = [d for m in self.monitors if (d := m.describe(stats)) is not None]
        curve = stats.get("dev_curve") or []
        if curve:
            best = stats.get("best_step")
            out.append("dev accuracy " + " -> ".join(f"{c['accuracy']:.3f}@{c['step']}" for c in curve)
                       + (f"; kept step {best} (the best)" if stats.get("restored_best") else ""))
            if "acc@t2" in curve[0]:
                out.append("dev acc@t2 " + " -> ".join(f"{c['acc@t2']:.3f}@{c['step']}" for c in curve))
        if stats.get("stopped_early"):
            out.append(f"stopped: {stats['stopped_early'].get('reason')}")
        return out

    def attach(self, task, models=None, policy=None) -> "Trainer":
        """The run's task, model access (`generator()`, `request_cache`) and the iteration's starting model, for
        methods that score inside training (GRPO's rewards)."""
        self.task, self.models, self.policy = task, models, policy
        return self

    @abstractmethod
    def train(self, model_path, rows: list[dict], out_dir: Path, progress: ProgressFn | None = None) -> dict:
        """Fine-tune `model_path` on `rows`; save `out_dir/model` (and `out_dir/adapter` with LoRA); return stats
        (at least `steps` and `train_seconds`)."""


def make_trainer(cfg, where: str = "train") -> Trainer:
    """The trainer `cfg.method` names (`registry.TRAINERS`), built with its config section."""
    return TRAINERS.get(cfg.method, f"{where}.method")(cfg, where)
