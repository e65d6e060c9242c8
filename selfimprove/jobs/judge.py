"""`selfimprove judge`: score a dataset of (prompt, response[, response_b][, reference][, label]) rows with
a judge (LLM judge, P(True), log-likelihood, reward model), sharded and resumable by the shared runner.

Output folder: `results/table.parquet` (written in shards first; one row per input row: its fields, every
scorer's columns for `response`, the same with suffix `_b` for `response_b`, `verdict`/`flipped` for
pairwise jobs, `correct` where a label or reference exists, `errors`), `summary.json` / `summary.md`, and
`request_cache.sqlite` (every model answer, so a killed job never asks twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import JudgeJobConfig, ScorerConfig
from ..errors import ConfigError
from ..generation import check_backend
from ..judging.diagnostics import diagnostics, summarize, summary_markdown
from ..judging.rows import add_correctness, merge, prompt_and_samples, read_rows
from ..models import ModelRef, reachable
from ..prompts import PromptLibrary
from ..runtime.context import RunContext
from ..runtime.runner import run_shards, run_stage
from ..scoring import make_scorers
from ..scoring.apply import score_samples
from ..scoring.judge_base import bind_scorers
from ..store import StageDir, atomic_write_bytes, atomic_write_json, stable_hash
from ..tasks import make_task


@dataclass(frozen=True)
class JudgeWork:
    """One shard of judge rows: the job's scorers (bound in the context that runs it) over them, merged back."""

    scorers: tuple[ScorerConfig, ...]
    policy: ModelRef
    name: str
    shard_size: int

    def __call__(self, ctx: RunContext, index: int, shard: list[dict], advance) -> list[dict]:
        scorers = ctx.models.bound_scorers(list(self.scorers), reachable(self.policy), "scorers")
        prompts, samples = prompt_and_samples(shard)
        first = index * self.shard_size
        scored = score_samples(scorers, ctx.task, prompts, samples, f"{self.name} rows {first}-{first + len(shard)}", ctx.progress)
        out = merge(shard, scored, [c for s in scorers for c in s.columns().writes])
        add_correctness(ctx.task, out)
        advance(len(shard))
        return out


def run_job(cfg: JudgeJobConfig, console, *, output: Path | None = None, diagnose: bool = False) -> tuple[dict, Path]:
    """Judge every row (resuming finished shards), then write the table and the summary (and diagnostics)."""
    prompts_lib = PromptLibrary(cfg.prompts_dir)
    task = make_task(cfg.task, prompts_lib)
    scorers = make_scorers(cfg.scorers, task, "scorers")
    check_backend(cfg.backend)
    if cfg.diagnose.other_backend is not None:
        check_backend(cfg.diagnose.other_backend, "diagnose.other_backend")
    rows = read_rows(cfg)
    if any(s.name == "pairwise_judge" for s in scorers) and not all(r.get("response_b") is not None for r in rows):
        raise ConfigError("pairwise_judge needs `response_b` in every row (input.fields.response_b names its column)")
    root = Path(output) if output else Path(cfg.output_dir) / cfg.name
    ctx = RunContext(root, task, prompts_lib, model=cfg.model, backend=cfg.backend, console=console, ray=cfg.ray)
    policy = ctx.models.base_model()
    config = {"scorers": [s.model_dump() for s in cfg.scorers], "task": cfg.task.model_dump(), "backend": cfg.backend.identity(),
              "shard_size": cfg.shard_size}
    sd = StageDir(root / "results", "judge", config, {"rows": stable_hash(rows), "model": policy.fingerprint})  # a subfolder: a changed config clears only it

    def work(sd: StageDir):
        bind_scorers(scorers, ctx.models, policy)  # judge models must resolve before any shard runs
        table = run_shards(ctx, sd, rows, cfg.shard_size, JudgeWork(tuple(cfg.scorers), policy, cfg.name, cfg.shard_size), cfg.name,
                           unit="rows", verb="judged")
        counts = {"rows": len(table), "requests": ctx.models.request_cache.misses, "cached": ctx.models.request_cache.hits}
        return table, counts, {"summary": summarize(table, scorers)}

    try:
        run_stage(ctx, None, sd, work)
        table = sd.rows()
        summary = dict(sd.manifest()["summary"])
        if diagnose:
            ctx.models.release()  # the Ray workers' models leave the GPU before diagnostics load judges here
            summary["diagnostics"] = diagnostics(ctx, cfg, task, table, policy, scorers)
    finally:
        ctx.close()
    summary.update(job=cfg.name, judge_model=cfg.model, rows=len(table))
    atomic_write_json(root / "summary.json", summary)
    atomic_write_bytes(root / "summary.md", summary_markdown(summary).encode())
    return summary, root
