"""Prompt tables: `data/train_prompts`, `data/eval_prompts` and, with `data.dev`, `data/dev_prompts` (columns: prompt_id,
messages, reference, task, question, meta).

Held out means held out: no eval problem reaches the train or dev table, and no dev problem the train table. A generated task (arithmetic) draws its
train problems around the eval problems, so the train split still has `data.train.size` problems; a dataset
task's train rows whose question is also an eval question are dropped, counted in the train_prompts
manifest (`counts.heldout_overlap`) and the report, and warned about.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ...config import DataConfig
from ...errors import ConfigError
from ...runtime.context import RunContext
from ...runtime.runner import run_stage
from ...store import StageDir
from ...tasks import Task

# Part of both prompt tables' config: bump it when the same config yields different rows, so that stored
# tables are rebuilt (2: arithmetic problems distinct by identity, train drawn around the eval problems).
PROMPT_ROWS_VERSION = 2


@dataclass(frozen=True)
class PromptRows:
    """The splits' prompt rows, the held-out check's numbers and the `data:` section they were read with;
    unpacks as `train_rows, eval_rows`."""

    train: list[dict]
    eval: list[dict]
    heldout_overlap: dict  # {"train_rows_dropped": n, "eval_problems": m} (with a dev split, also "dev_rows_dropped")
    data: DataConfig
    dev: list[dict] = ()

    def __iter__(self):
        return iter((self.train, self.eval))


def load_prompt_rows(task: Task, data: DataConfig, warn: Callable[[str], None]) -> PromptRows:
    """Read both splits through the task (validates fields and templates; loads no model), eval problems kept out of train."""
    eval_rows = task.load(data.eval, "data.eval")
    held_out = {task.problem_key(r) for r in eval_rows}
    dev_rows: list[dict] = []
    dev_dropped = 0
    if data.dev is not None:
        dev_rows = task.load(data.dev, "data.dev", exclude=held_out if task.generated else frozenset())
        dev_rows, dev_overlap = drop_heldout(task, dev_rows, eval_rows)
        dev_dropped = dev_overlap["train_rows_dropped"]
        if dev_dropped:
            warn(f"held-out overlap: {dev_dropped} data.dev row(s) ask a data.eval problem; they are dropped from the dev split, "
                 f"leaving {len(dev_rows)}")
        if not dev_rows:
            raise ConfigError("data.dev: no dev problem is left once the eval problems are taken out")
        held_out |= {task.problem_key(r) for r in dev_rows}
    train_rows = task.load(data.train, "data.train", exclude=held_out if task.generated else frozenset())
    train_rows, overlap = drop_heldout(task, train_rows, eval_rows + dev_rows)
    if data.dev is not None:
        overlap["dev_rows_dropped"] = dev_dropped
    if overlap["train_rows_dropped"]:
        dropped, involved = overlap["train_rows_dropped"], overlap["eval_problems"]
        warn(
            f"held-out overlap: {dropped} data.train row(s) ask one of {involved} held-out problem(s) "
            f"({'data.eval or data.dev' if data.dev is not None else 'data.eval'}) "
            f"(compared by {task.heldout_key}); they are dropped from training, leaving {len(train_rows)} train prompts"
        )
    return PromptRows(train_rows, eval_rows, overlap, data, dev_rows)


def drop_heldout(task: Task, train_rows: list[dict], eval_rows: list[dict]) -> tuple[list[dict], dict]:
    """Train rows minus those whose problem (`task.problem_key`) is an eval problem, and how many overlapped:
    train rows dropped, eval rows whose problem appears in the train rows."""
    held_out = {task.problem_key(r) for r in eval_rows}
    kept = [r for r in train_rows if task.problem_key(r) not in held_out]
    train_keys = {task.problem_key(r) for r in train_rows}
    involved = sum(task.problem_key(r) in train_keys for r in eval_rows)
    return kept, {"train_rows_dropped": len(train_rows) - len(kept), "eval_problems": involved}


def heldout_info(task: Task) -> dict:
    """How the held-out check compares problems and what it does with overlap (kept in the train_prompts manifest)."""
    handling = "train problems are drawn around the eval problems" if task.generated else "overlapping train rows are dropped"
    return {"compared_by": task.heldout_key, "handling": handling}


@dataclass(frozen=True)
class PromptTables:
    """The prompt tables' StageDirs (`dev` None without a dev split); unpacks as `train, eval`."""

    train: StageDir
    eval: StageDir
    dev: StageDir | None = None

    def __iter__(self):
        return iter((self.train, self.eval))


def prompts_stage(ctx: RunContext, rows: PromptRows) -> PromptTables:
    """Write the prompt tables."""
    train_rows, eval_rows = rows
    data = rows.data
    task = ctx.task
    base_cfg = {"task": task.cfg.model_dump(), "rows_version": PROMPT_ROWS_VERSION, **task.template_info()}
    eval_sd = ctx.store.stage(None, "eval_prompts", {**base_cfg, "split": data.eval.model_dump()})
    run_stage(ctx, None, eval_sd, lambda sd: (eval_rows, {"prompts": len(eval_rows)}, task.template_info()))
    train_inputs = {"eval_prompts": eval_sd.fingerprint}
    dev_sd = None
    if data.dev is not None:
        dev_sd = ctx.store.stage(None, "dev_prompts", {**base_cfg, "split": data.dev.model_dump()}, {"eval_prompts": eval_sd.fingerprint})
        run_stage(ctx, None, dev_sd, lambda sd: (list(rows.dev), {"prompts": len(rows.dev)}, task.template_info()))
        train_inputs["dev_prompts"] = dev_sd.fingerprint
    train_sd = ctx.store.stage(None, "train_prompts", {**base_cfg, "split": data.train.model_dump()}, train_inputs)
    counts = {"prompts": len(train_rows), "heldout_overlap": rows.heldout_overlap}
    extra = {**task.template_info(), "heldout": heldout_info(task)}
    run_stage(ctx, None, train_sd, lambda sd: (train_rows, counts, extra))
    return PromptTables(train_sd, eval_sd, dev_sd)
