"""Score stage: extract each completion's answer, then run the configured scorers.

Output: the samples' columns + `answer`, one column (or more) per scorer, `scorer_errors`.
"""

from __future__ import annotations

from ..scoring import make_scorers
from ..store import StageDir
from .common import run_stage
from .context import RunContext


def bind_scorers(ctx: RunContext, scorers, policy) -> dict[str, str]:
    """Point model-based scorers (judges, P(True), log-likelihood) at their model; returns their fingerprints."""
    out = {}
    for sc in scorers:
        if getattr(sc, "needs_model", False):
            sc.bind(ctx, policy)
            out[sc.name] = sc.model.fingerprint
    return out


def score_rows(ctx: RunContext, scorers, prompts: dict[str, dict], samples: list[dict], label: str, policy=None) -> list[dict]:
    """Add `answer`, every scorer's columns and `scorer_errors` (joined messages, '' when none).

    `policy` is the model that wrote the samples: the judge of scorers whose `judge` option is `policy`."""
    if any(getattr(sc, "needs_model", False) and sc.ctx is None for sc in scorers):
        if policy is None:
            raise ValueError("model-based scorers need the policy model")
        bind_scorers(ctx, scorers, policy)
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
    if rows and "outcome" in rows[0]:  # code tasks: sandbox outcomes, `forged_type` = reward-hacking attempts
        names = sorted({r["outcome"] for r in rows} - {None})
        counts["outcomes"] = {k: sum(r["outcome"] == k for r in rows) for k in names}
    return counts


def judge_report(rows: list[dict]) -> dict:
    """Judge numbers for the run report: score means/histograms, parse failures, position and length bias,
    agreement with the gold verifier (where `correct` exists)."""
    from ..judge_diagnostics import PASS_THRESHOLD, SCORES, agreement, length_bias, summarize

    if not rows or not any(c in rows[0] for c in SCORES):
        return {}
    table = [dict(r, response=r.get("completion")) for r in rows]
    out = summarize(table)
    out["length_bias"] = length_bias(table)
    out["agreement_with_gold"] = agreement(table, PASS_THRESHOLD)
    flips = [r for r in rows if r.get("pair_games")]
    if flips:
        out["position_bias"] = {"flip_rate": sum(r["pair_flips"] for r in flips) / max(1, sum(r["pair_games"] for r in flips))}
    return out


def score_stage(ctx: RunContext, iteration: int, prompts_sd: StageDir, samples_sd: StageDir, policy=None) -> StageDir:
    scorers = make_scorers(ctx.cfg.score, ctx.task)
    judges = bind_scorers(ctx, scorers, policy) if policy is not None else {}
    config = {"score": [s.model_dump() for s in ctx.cfg.score], "task": ctx.cfg.task.model_dump()}
    sd = ctx.store.stage(iteration, "score", config, {"prompts": prompts_sd.fingerprint, "samples": samples_sd.fingerprint, **{f"judge:{k}": v for k, v in judges.items()}})

    def work(sd: StageDir):
        prompts = {p["prompt_id"]: p for p in prompts_sd.rows()}
        rows = score_rows(ctx, scorers, prompts, samples_sd_rows(samples_sd), f"iter {iteration} score", policy)
        extra = {"judge": judge_report(rows)}
        if ctx.task.outcome_column:
            extra["sandbox"] = ctx.task.sandbox().isolation()  # the isolation layers that applied
        return rows, score_counts(rows), {k: v for k, v in extra.items() if v}

    return run_stage(ctx, iteration, sd, work)


def samples_sd_rows(sd: StageDir) -> list[dict]:
    return sd.rows() if sd.table_path.exists() else sd.read_shards()
