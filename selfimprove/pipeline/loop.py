"""The self-improvement loop: prompts -> [stages of the training method] x iterations, evaluated on held-out prompts.

Iteration 0 evaluates the base model. Iteration k runs the stages its training method declares (SFT:
generate -> score -> select -> train; a method that generates inside training declares fewer), from model k-1
(or from the base model when `train.init: base`), and its trained model is `iter_k`. Every stage is skipped
when its manifest matches, so a rerun of a finished pipeline does no work.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ..config import PipelineConfig
from ..errors import ConfigError
from ..generation import check_backend
from ..prompts import PromptLibrary
from ..runtime.context import RunContext
from ..runtime.tracking import Trackers, check_trackers
from ..scoring import make_scorers
from ..scoring.base import REVISION_COLUMNS, SAMPLE_COLUMNS
from ..selection import filter_columns, make_row_builder
from ..store import atomic_write_json
from ..tasks import make_task
from ..training.base import make_trainer
from .contracts import check_chain
from .stages.data import PromptRows, load_prompt_rows, prompts_stage
from .stages.evaluate import eval_stage
from .stages.generate import generate_stage
from .stages.score import score_stage
from .stages.select import select_stage
from .stages.train import train_stage


def iteration_plan(cfg: PipelineConfig) -> list[str]:
    """The stages of one iteration: the training method's own list, cut at the first stage `stages:` leaves out."""
    trainer = make_trainer(cfg.train)
    plan = []
    for stage in type(trainer).stages:
        if stage not in cfg.stages:
            break
        plan.append(stage)
    return plan


def check_stages(stages: list[str], method_stages: tuple[str, ...], method: str) -> None:
    """`stages:` may stop an iteration early, never skip a stage the method needs before a later one."""
    for stage in stages:
        if stage == "eval":
            continue
        if stage not in method_stages:
            raise ConfigError(f"stages: {stage} is not a stage of train.method {method} (an iteration runs {list(method_stages)})")
        for needs in method_stages[: method_stages.index(stage)]:
            if needs not in stages:
                raise ConfigError(f"stages: {stage} needs {needs}")


def prepare(cfg: PipelineConfig, console: Console | None = None) -> tuple[RunContext, PromptRows]:
    """Everything that can fail on bad input, before any model loads: stages, task, templates, scorers, the column
    chain, datasets. The rows unpack as `train_rows, eval_rows`; no eval problem is among the train rows."""
    trainer = make_trainer(cfg.train)
    check_stages(cfg.stages, type(trainer).stages, cfg.train.method)
    prompts = PromptLibrary(cfg.prompts_dir)
    task = make_task(cfg.task, prompts)
    scorers = make_scorers(cfg.score, task)
    builder = make_row_builder(cfg.select.builder.name, cfg.select.builder.options)
    check_backend(cfg.backend)
    generated = SAMPLE_COLUMNS + (REVISION_COLUMNS if cfg.generate.revise is not None else ())
    check_chain(scorers, cfg.stages, filter_columns(cfg.select), builder, trainer, generated)
    if cfg.generate.revise is not None and not prompts.exists(cfg.generate.revise.template):
        raise ConfigError(f"generate.revise.template: no template {cfg.generate.revise.template!r} (known: {prompts.names()})")
    trainer.check(task)
    check_trackers(cfg.report_to)
    check_trackers(cfg.train.report_to, "train.report_to")
    ctx = RunContext(Path(cfg.run_dir) / cfg.name, task, prompts, model=cfg.model, backend=cfg.backend, console=console, ray=cfg.ray)
    return ctx, load_prompt_rows(task, cfg.data, ctx.warn)


def run_pipeline(cfg: PipelineConfig, console: Console | None = None) -> dict:
    """Run (or resume) the whole pipeline; returns the summary that is also written to summary.json."""
    from ..evaluation.report import build_summary, write_report

    ctx, rows = prepare(cfg, console)
    plan = iteration_plan(cfg)
    ctx.store.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(ctx.store.root / "config.json", cfg.model_dump())
    if cfg.report_to:
        ctx.trackers = Trackers(cfg.report_to, ctx.store.root, cfg.name, cfg.model_dump())
    try:
        train_sd, eval_sd = prompts_stage(ctx, rows)
        if "eval" in cfg.stages:
            eval_stage(ctx, 0, cfg.eval, eval_sd, ctx.models.base_model())
        selects = []
        current = ctx.models.base_model()
        for k in range(1, cfg.iterations + 1):
            if not plan:
                break
            tables = {}
            for stage in plan:
                if stage == "generate":
                    tables["samples"] = generate_stage(ctx, k, cfg.generate, train_sd, current)
                elif stage == "score":
                    tables["scored"] = score_stage(ctx, k, cfg.score, train_sd, tables["samples"], current, cfg.generate.shard_size)
                elif stage == "select":
                    tables["train_set"] = select_stage(ctx, k, cfg.select, cfg.seed + k, cfg.train.accumulate_data, train_sd,
                                                       tables["scored"], selects)
                    selects.append(tables["train_set"])
                elif stage == "train":
                    start = ctx.models.base_model() if cfg.train.init == "base" else current
                    # the train set, or the prompts for a method that generates inside training (no select stage)
                    train_stage(ctx, k, cfg.train, tables.get("train_set", train_sd), start)
                    current = ctx.models.iteration_model(k)
                    if "eval" in cfg.stages:
                        eval_stage(ctx, k, cfg.eval, eval_sd, current)
    finally:
        ctx.close()
        if ctx.trackers is not None:
            ctx.trackers.close()
    summary = build_summary(ctx.store.root, ctx.reports)
    write_report(ctx.store.root, summary)
    return summary
