"""The self-improvement loop: prompts -> [generate -> score -> select -> train -> eval] x iterations.

Iteration 0 evaluates the base model. Iteration k samples from model k-1 (or trains from the base
model when `train.init: base`), and its trained model is `iter_k`. Every stage is skipped when
its manifest matches, so a rerun of a finished pipeline does no work.
"""

from __future__ import annotations

from rich.console import Console

from .config import PipelineConfig
from .errors import ConfigError
from .prompts import PromptLibrary
from .scoring import make_scorers
from .stages.context import RunContext
from .stages.data import PromptRows, load_prompt_rows, prompts_stage
from .stages.evaluate import eval_stage
from .stages.generate import generate_stage
from .stages.score import score_stage
from .stages.select import select_stage
from .stages.train import train_stage
from .store import atomic_write_json
from .tasks import make_task


def prepare(cfg: PipelineConfig, console: Console | None = None) -> tuple[RunContext, PromptRows]:
    """Everything that can fail on bad input, before any model loads: stages, task, templates, scorers, datasets.

    The rows unpack as `train_rows, eval_rows`; no eval problem is among the train rows (see stages/data.py)."""
    for stage, needs in (("train", "select"), ("select", "score"), ("score", "generate")):
        if stage in cfg.stages and needs not in cfg.stages:
            raise ConfigError(f"stages: {stage} needs {needs}")
    prompts = PromptLibrary(cfg.prompts_dir)
    task = make_task(cfg.task, prompts)
    make_scorers(cfg.score, task)
    ctx = RunContext(cfg, task, prompts, console)
    return ctx, load_prompt_rows(ctx)


def run_pipeline(cfg: PipelineConfig, console: Console | None = None) -> dict:
    """Run (or resume) the whole pipeline; returns the summary that is also written to summary.json."""
    from .report import build_summary, write_report

    ctx, rows = prepare(cfg, console)
    ctx.store.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(ctx.store.root / "config.json", cfg.model_dump())
    try:
        train_sd, eval_sd = prompts_stage(ctx, rows)
        if "eval" in cfg.stages:
            eval_stage(ctx, 0, eval_sd, ctx.base_model())
        selects = []
        current = ctx.base_model()
        for k in range(1, cfg.iterations + 1):
            if "generate" not in cfg.stages:
                break
            samples = generate_stage(ctx, k, train_sd, current)
            if "score" not in cfg.stages:
                continue
            scored = score_stage(ctx, k, train_sd, samples, current)
            if "select" not in cfg.stages:
                continue
            selected = select_stage(ctx, k, train_sd, scored, selects)
            selects.append(selected)
            if "train" not in cfg.stages:
                continue
            start = ctx.base_model() if cfg.train.init == "base" else current
            train_stage(ctx, k, selected, start)
            current = ctx.iteration_model(k)
            if "eval" in cfg.stages:
                eval_stage(ctx, k, eval_sd, current)
    finally:
        ctx.release_generator()
    summary = build_summary(ctx.store.root, ctx.reports)
    write_report(ctx.store.root, summary)
    return summary
