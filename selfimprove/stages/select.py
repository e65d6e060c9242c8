"""Select stage: filter scored samples and build SFT rows (`prompt`, `completion`, `messages`, `weight`, lineage)."""

from __future__ import annotations

from ..selection import select_samples, sft_rows
from ..store import StageDir
from .common import run_stage
from .context import RunContext


def select_stage(ctx: RunContext, iteration: int, prompts_sd: StageDir, scored_sd: StageDir, earlier: list[StageDir]) -> StageDir:
    """`earlier` holds previous iterations' select stages, used when train.accumulate_data is on."""
    cfg = ctx.cfg.select
    inputs = {"prompts": prompts_sd.fingerprint, "scored": scored_sd.fingerprint}
    if ctx.cfg.train.accumulate_data:
        inputs.update({f"select_{i}": e.fingerprint for i, e in enumerate(earlier)})
    config = {"select": cfg.model_dump(), "accumulate": ctx.cfg.train.accumulate_data, "seed": ctx.cfg.seed + iteration}
    sd = ctx.store.stage(iteration, "select", config, inputs)

    def work(sd: StageDir):
        prompts = {p["prompt_id"]: p for p in prompts_sd.rows()}
        kept, counts = select_samples(scored_sd.rows(), cfg, ctx.cfg.seed + iteration)
        rows = sft_rows(kept, prompts)
        counts["rows_this_iteration"] = len(rows)
        if ctx.cfg.train.accumulate_data:
            for e in earlier:
                rows = e.rows() + rows
        counts["rows"] = len(rows)
        return rows, counts, {}

    return run_stage(ctx, iteration, sd, work)
