"""An iteration as data: the stages of the training method, each a record of its name, the config section it reads,
the tables it reads and the one it writes, and how to run it. `build_plan` makes the records once, in `prepare()`,
from the plug-ins already built there (the trainer, the scorers, the row builder); the loop is a `for` over them.

Tables: `prompts` (the train prompts), `eval_prompts`, `dev_prompts` (None without a dev split), `samples` (generate), `scored` (score), `train_set` (select).
A stage reads its own section only: the score stage shards as its `samples` table was sharded, the select stage's
accumulation is `select.accumulate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..config import PipelineConfig
from ..models import ModelRef
from ..runtime.context import RunContext
from ..store import StageDir
from .stages.evaluate import eval_stage
from .stages.generate import generate_stage
from .stages.propose import propose_stage
from .stages.refine import refine_stage
from .stages.score import score_stage
from .stages.select import select_stage
from .stages.train import train_stage
from .stages.verify import verify_stage


@dataclass
class Iteration:
    """What an iteration's stages share: its number and seed, its tables, the model it generates with (`model`, the
    last iteration's), the model it trains (`start`), and every earlier iteration's tables (`history`)."""

    k: int
    seed: int
    tables: dict[str, StageDir]
    model: ModelRef
    start: ModelRef
    history: dict[str, list[StageDir]] = field(default_factory=dict)


@dataclass(frozen=True)
class Stage:
    """One stage: `run(ctx, it)` reads `inputs` from `it.tables` and returns the table `output` names (or None)."""

    name: str
    section: str
    inputs: tuple[str, ...]
    output: str | None
    run: Callable[[RunContext, Iteration], StageDir | None]


@dataclass(frozen=True)
class Plan:
    """The stages of one iteration, in order; `eval` (also run on the base model, as iteration 0) or None; the
    plug-ins `prepare()` built, kept so that nothing is built twice."""

    stages: tuple[Stage, ...]
    eval: Stage | None
    trainer: object
    scorers: tuple
    builder: object
    control: tuple[str, ...] = ()  # what runs after eval: dev, probe, control (pipeline.controller)
    search: bool = False  # B-STaR's search stage runs first (pipeline.stages.search), choosing generate/select settings

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def describe(self) -> str:
        """One line a dry run prints: each stage with the plug-ins it runs, e.g. `generate -> score [gold, majority_vote]
        -> select [sft] -> train [sft] -> eval`."""
        used = {"score": [s.name for s in self.scorers], "select": [self.builder.name] if self.builder is not None else [],
                "train": [getattr(self.trainer, "name", type(self.trainer).__name__)]}
        parts = (["search [temperature x threshold by balance score]"] if self.search else []) + [
            f"{s.name} [{', '.join(used[s.name])}]" if used.get(s.name) else s.name for s in self.stages]
        if self.eval is not None:
            parts.append("eval")
            parts.extend(self.control)
        return " -> ".join(parts)


def build_plan(cfg: PipelineConfig, trainer, scorers, builder) -> Plan:
    """The stage records of `cfg`'s training method, cut where `stages:` stops (checked by `check_stages`)."""

    def generate(ctx: RunContext, it: Iteration) -> StageDir:
        return generate_stage(ctx, it.k, cfg.generate, it.tables["prompts"], it.model)

    def score(ctx: RunContext, it: Iteration) -> StageDir:
        return score_stage(ctx, it.k, cfg.score, it.tables["prompts"], it.tables["samples"], it.model)

    def propose(ctx: RunContext, it: Iteration) -> StageDir:
        held = [t for t in (it.tables.get("eval_prompts"), it.tables.get("dev_prompts")) if t is not None]
        return propose_stage(ctx, it.k, cfg.propose, it.seed, it.tables["prompts"], held, it.model, cfg.generate.shard_size)

    def refine(ctx: RunContext, it: Iteration) -> StageDir:
        return refine_stage(ctx, it.k, cfg.refine, cfg.generate, cfg.score, it.tables["prompts"], it.tables["scored"], it.model)

    def verify(ctx: RunContext, it: Iteration) -> StageDir:
        return verify_stage(ctx, it.k, cfg.verify, cfg.generate, cfg.score, it.tables["prompts"], it.tables["scored"], it.model)

    def select(ctx: RunContext, it: Iteration) -> StageDir:
        return select_stage(ctx, it.k, cfg.select, it.seed, it.tables["prompts"], it.tables["scored"], it.history.get("train_set", []),
                            builder)

    def train(ctx: RunContext, it: Iteration) -> StageDir:
        # the train set, or the prompts for a method that generates inside training (it has no select stage)
        return train_stage(ctx, it.k, cfg.train, it.tables.get("train_set", it.tables["prompts"]), it.start, trainer,
                           cfg.control, it.tables.get("dev_prompts"), cfg.eval, previous=it.model)

    def evaluate(ctx: RunContext, it: Iteration) -> StageDir:
        return eval_stage(ctx, it.k, cfg.eval, it.tables["eval_prompts"], it.model)

    known = {
        "generate": Stage("generate", "generate", ("prompts",), "samples", generate),
        "score": Stage("score", "score", ("prompts", "samples"), "scored", score),
        "select": Stage("select", "select", ("prompts", "scored"), "train_set", select),
        "train": Stage("train", "train", ("train_set",) if "select" in type(trainer).stages else ("prompts",), None, train),
    }
    stages = [Stage("propose", "propose", ("prompts",), "prompts", propose)] if cfg.propose is not None else []
    for name in type(trainer).stages:
        if name not in cfg.stages:
            break
        stages.append(known[name])
        if name == "score" and cfg.refine is not None:  # the refinements join the scored table before select
            stages.append(Stage("refine", "refine", ("prompts", "scored"), "scored", refine))
        if name == "score" and cfg.verify is not None:  # the self-evaluations and revisions join the scored table
            stages.append(Stage("verify", "verify", ("prompts", "scored"), "scored", verify))
    ev = Stage("eval", "eval", ("eval_prompts",), None, evaluate) if "eval" in cfg.stages else None
    c = cfg.control
    after = (("dev",) if cfg.data.dev is not None else ()) + (("probe",) if c.probe is not None else ())
    if after or c.stop_if:
        rules = f"{len(c.stop_if)} stop rule{'s' if len(c.stop_if) != 1 else ''}"
        after += (f"control [{'keep ' + c.keep}{', rollback' if c.rollback else ''}, {rules}]",)
    return Plan(tuple(stages), ev, trainer, tuple(scorers), builder, after, cfg.search is not None)
