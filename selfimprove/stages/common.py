"""Stage runner: skip a stage whose manifest matches, otherwise run it, time it, log it, record it."""

from __future__ import annotations

from typing import Callable

from ..store import StageDir
from .context import RunContext, StageReport, Timer


def run_stage(ctx: RunContext, iteration: int | None, sd: StageDir, work: Callable[[StageDir], tuple[list[dict] | None, dict, dict]]) -> StageDir:
    """Run `work(sd) -> (rows or None, counts, extra)` unless `sd` is complete; rows go to table.parquet.

    When `work` returns None for rows it has written its own output and called `sd.finish`.
    """
    if sd.is_complete():
        m = sd.manifest() or {}
        ctx.record(StageReport(iteration, sd.stage, True, m.get("seconds", 0.0), m.get("counts", {}), _extra(m)))
        return sd
    sd.begin()
    timer = Timer()
    with sd.logging_to_file():
        rows, counts, extra = work(sd)
        if rows is not None:
            sd.finish_table(rows, counts=counts, seconds=timer.seconds, extra=extra)
        else:
            m = sd.manifest() or {}
            if m.get("status") != "complete":
                raise RuntimeError(f"stage {sd.path} did not finish its manifest")
    m = sd.manifest() or {}
    ctx.record(StageReport(iteration, sd.stage, False, m.get("seconds", timer.seconds), m.get("counts", counts), _extra(m)))
    return sd


def _extra(manifest: dict) -> dict:
    return {k: manifest[k] for k in ("metrics", "train", "judge") if k in manifest}
