"""Score stage: extract each completion's answer, then run the configured scorers (`score:`).

Reads `prompts` and `samples`; writes the samples' columns + `answer`, every scorer's columns, `scorer_errors`.
"""

from __future__ import annotations

from ...config import ScorerConfig
from ...judging.diagnostics import judge_report
from ...models import ModelRef
from ...runtime.context import RunContext
from ...scoring import make_scorers
from ...scoring.apply import score_samples
from ...scoring.judge_base import bind_scorers
from ...store import StageDir
from ..runner import run_stage


def score_counts(rows: list[dict]) -> dict:
    counts = {"samples": len(rows), "answered": sum(r["answer"] is not None for r in rows)}
    if rows and "correct" in rows[0]:
        counts["correct"] = sum(r["correct"] is True for r in rows)
        counts["prompts_with_correct"] = len({r["prompt_id"] for r in rows if r["correct"] is True})
    counts["scorer_errors"] = sum(bool(r["scorer_errors"]) for r in rows)
    if rows and "outcome" in rows[0]:  # code tasks: sandbox outcomes, `forged_type` = reward-hacking attempts
        names = sorted({r["outcome"] for r in rows} - {None})
        counts["outcomes"] = {k: sum(r["outcome"] == k for r in rows) for k in names}
    return counts


def score_stage(ctx: RunContext, iteration: int, cfg: list[ScorerConfig], prompts_sd: StageDir, samples_sd: StageDir, policy: ModelRef) -> StageDir:
    """`policy` wrote the samples: the judge of scorers whose `judge` option is `policy`."""
    task = ctx.task
    scorers = make_scorers(cfg, task)
    judges = bind_scorers(scorers, ctx, policy)
    config = {"score": [s.model_dump() for s in cfg], "task": task.cfg.model_dump()}
    inputs = {"prompts": prompts_sd.fingerprint, "samples": samples_sd.fingerprint, **{f"judge:{k}": v for k, v in judges.items()}}
    sd = ctx.store.stage(iteration, "score", config, inputs)

    def work(sd: StageDir):
        prompts = {p["prompt_id"]: p for p in prompts_sd.rows()}
        samples = samples_sd.rows() if samples_sd.table_path.exists() else samples_sd.read_shards()
        rows = score_samples(scorers, task, prompts, samples, f"iter {iteration} score", ctx.progress)
        extra = {"judge": judge_report(rows)}
        if task.outcome_column:
            extra["sandbox"] = task.sandbox().isolation()  # the isolation layers that applied
        return rows, score_counts(rows), {k: v for k, v in extra.items() if v}

    return run_stage(ctx, iteration, sd, work)
