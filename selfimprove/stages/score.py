"""Score stage: extract each completion's answer, then run the configured scorers.

Output: the samples' columns + `answer`, one column (or more) per scorer, `scorer_errors`.
"""

from __future__ import annotations

from ..scoring import make_scorers
from ..store import StageDir
from .common import run_stage
from .context import RunContext


def score_rows(ctx: RunContext, scorers, prompts: dict[str, dict], samples: list[dict], label: str) -> list[dict]:
    """Add `answer`, every scorer's columns and `scorer_errors` (joined messages, '' when none)."""
    rows = [dict(s, answer=ctx.task.extract_answer(s["completion"])) for s in samples]
    errors: list[list[str]] = [[] for _ in rows]
    for scorer in scorers:
        with ctx.progress(f"{label} ({scorer.name})", len(rows)) as bar:
            res = scorer.score(prompts, rows, progress=bar.advance)
            bar.update(len(rows))
            for col, values in res.columns.items():
                for r, v in zip(rows, values):
                    r[col] = v
        for e, err in zip(errors, res.errors):
            if err:
                e.append(err)
    for r, e in zip(rows, errors):
        r["scorer_errors"] = "; ".join(e)
    return rows


def score_counts(rows: list[dict]) -> dict:
    counts = {"samples": len(rows), "answered": sum(r["answer"] is not None for r in rows)}
    if rows and "correct" in rows[0]:
        counts["correct"] = sum(r["correct"] is True for r in rows)
        counts["prompts_with_correct"] = len({r["prompt_id"] for r in rows if r["correct"] is True})
    counts["scorer_errors"] = sum(bool(r["scorer_errors"]) for r in rows)
    return counts


def score_stage(ctx: RunContext, iteration: int, prompts_sd: StageDir, samples_sd: StageDir) -> StageDir:
    scorers = make_scorers(ctx.cfg.score, ctx.task)
    config = {"score": [s.model_dump() for s in ctx.cfg.score], "task": ctx.cfg.task.model_dump()}
    sd = ctx.store.stage(iteration, "score", config, {"prompts": prompts_sd.fingerprint, "samples": samples_sd.fingerprint})

    def work(sd: StageDir):
        prompts = {p["prompt_id"]: p for p in prompts_sd.rows()}
        rows = score_rows(ctx, scorers, prompts, samples_sd_rows(samples_sd), f"iter {iteration} score")
        return rows, score_counts(rows), {}

    return run_stage(ctx, iteration, sd, work)


def samples_sd_rows(sd: StageDir) -> list[dict]:
    return sd.rows() if sd.table_path.exists() else sd.read_shards()
