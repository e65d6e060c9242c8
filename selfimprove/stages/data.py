"""Prompt tables: `data/train_prompts` and `data/eval_prompts` (columns: prompt_id, messages, reference, task, question, meta)."""

from __future__ import annotations

from .common import run_stage
from .context import RunContext


def load_prompt_rows(ctx: RunContext) -> tuple[list[dict], list[dict]]:
    """Read both splits through the task (validates fields and templates; loads no model)."""
    eval_rows = ctx.task.load(ctx.cfg.data.eval, "data.eval")
    train_rows = ctx.task.load(ctx.cfg.data.train, "data.train")
    held_out = {r["question"].strip() for r in eval_rows}
    train_rows = [r for r in train_rows if r["question"].strip() not in held_out]  # never train on eval problems
    return train_rows, eval_rows


def prompts_stage(ctx: RunContext, rows: tuple[list[dict], list[dict]]):
    """Write the two prompt tables; returns their StageDirs."""
    train_rows, eval_rows = rows
    base_cfg = {"task": ctx.cfg.task.model_dump(), **ctx.task.template_info()}
    eval_sd = ctx.store.stage(None, "eval_prompts", {**base_cfg, "split": ctx.cfg.data.eval.model_dump()})
    run_stage(ctx, None, eval_sd, lambda sd: (eval_rows, {"prompts": len(eval_rows)}, ctx.task.template_info()))
    train_sd = ctx.store.stage(
        None, "train_prompts", {**base_cfg, "split": ctx.cfg.data.train.model_dump()}, {"eval_prompts": eval_sd.fingerprint}
    )
    run_stage(ctx, None, train_sd, lambda sd: (train_rows, {"prompts": len(train_rows)}, ctx.task.template_info()))
    return train_sd, eval_sd
