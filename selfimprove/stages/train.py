"""Train stage: fine-tune the iteration's starting model on the selected rows; output `train/model` (merged) and `train/adapter`."""

from __future__ import annotations

from ..store import StageDir, tree_digest
from ..training.sft import train_sft
from .common import run_stage
from .context import ModelRef, RunContext


def train_stage(ctx: RunContext, iteration: int, select_sd: StageDir, start: ModelRef) -> StageDir:
    cfg = ctx.cfg.train
    config = {"train": cfg.model_dump(), "device": ctx.cfg.backend.device}
    sd = ctx.store.stage(iteration, "train", config, {"data": select_sd.fingerprint, "model": start.fingerprint})

    def work(sd: StageDir):
        ctx.release_generator()  # one model in memory at a time
        rows = select_sd.rows()
        with ctx.progress(f"iter {iteration} train", None) as bar:
            stats = train_sft(start.path, rows, sd.path, cfg, ctx.cfg.backend.device, progress=bar.update)
        counts = {"rows": len(rows), "steps": stats["steps"]}
        sd.finish(
            output_fingerprint=tree_digest(sd.path / "model"),
            counts=counts,
            seconds=stats["train_seconds"],
            extra={"train": stats, "start_model": start.ref, "model_ref": f"iter_{iteration}"},
        )
        return None, counts, {}

    return run_stage(ctx, iteration, sd, work)
