"""The one runner every job uses (the loop's stages, `selfimprove eval`, `selfimprove judge`): skip a stage whose
manifest matches its config and inputs, otherwise run it, time it, log it, record it; and run a stage's work in
shards so a killed job resumes at the last finished shard (a finished shard is never redone).

A shard's rows are plain values and each stage's shard work is a picklable object of plain values (its config
section, model references) called with a run context (`stages.generate.GenerateWork`): here the job's own, on Ray
(`ray:`) a worker's (`runtime.shard_worker`), which rebuilds the backend or scorers it needs once and keeps them."""

from __future__ import annotations

import logging
from typing import Callable, Protocol, TypeVar

from ..store import StageDir
from .context import RunContext, StageReport, Timer

log = logging.getLogger("selfimprove.runner")
T = TypeVar("T")


class ShardWork(Protocol):
    """One shard's work: `(ctx, shard_index, items, advance) -> rows`; pickled to Ray workers when `ray:` is set."""

    def __call__(self, ctx: RunContext, index: int, items: list, advance: Callable[[int], None]) -> list[dict]: ...


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


def run_shards(ctx: RunContext, sd: StageDir, items: list[T], shard_size: int, work: ShardWork, label: str, unit: str = "prompts",
               verb: str = "done") -> list[dict]:
    """Every missing shard of `items` through `work(ctx, shard_index, shard_items, advance) -> rows`, each shard's rows
    written as soon as it finishes; returns the rows of all shards in order. With `ray:` the shards run on the job's
    Ray workers, several at once (`work` must then pickle: a dataclass of plain values, like `GenerateWork`). The
    caller has called `sd.begin()` (directly or through `run_stage`), which keeps shards made with the same config
    and inputs."""
    shards = [items[i : i + shard_size] for i in range(0, len(items), shard_size)]
    done = sum(len(s) for i, s in enumerate(shards) if sd.has_shard(i))
    if done:
        log.info("resuming %s: %d of %d %s already %s", sd.path, done, len(items), unit, verb)
        ctx.console.print(f"[dim]resuming {label}: {done}/{len(items)} {unit} already {verb}[/dim]")
    pending = [(i, shard) for i, shard in enumerate(shards) if not sd.has_shard(i)]
    pool = workers(ctx) if pending else None
    with ctx.progress(label, len(items)) as bar:
        bar.update(done)
        if pool is None:
            for i, shard in pending:
                sd.write_shard(i, work(ctx, i, shard, bar.advance))
        else:
            def finished(i: int, rows: list[dict], stats: dict) -> None:
                sd.write_shard(i, rows)
                ctx.models.request_cache.hits += stats.get("cached", 0)
                ctx.models.request_cache.misses += stats.get("requests", 0)
                bar.advance(len(shards[i]))

            pool.run(work, pending, finished)
    return sd.read_shards()


def workers(ctx: RunContext):
    """The job's Ray actor pool (started on first use, ended by `ctx.models.release()` / `ctx.close()`); None without `ray:`."""
    if ctx.ray is None:
        return None
    if ctx.models.pool is None:
        from .ray_pool import WorkerPool

        with ctx.console.status(f"starting {ctx.ray.num_workers} Ray workers"):
            ctx.models.pool = WorkerPool(ctx.ray, ctx.spec(), ctx.warn)
    return ctx.models.pool


def _extra(manifest: dict) -> dict:
    return {k: manifest[k] for k in ("metrics", "train", "judge") if k in manifest}
