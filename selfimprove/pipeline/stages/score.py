"""Score stage: extract each completion's answer, then run the configured scorers (`score:`).

Reads `prompts` and `samples`; writes the samples' columns + `answer`, every scorer's columns, `scorer_errors`.
Shards are whole prompts (every sample and turn of a prompt together, so votes and pairwise judges see their
group): a killed run resumes at the last finished shard, and with `ray:` the shards are judged on the Ray workers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ...config import ScorerConfig
from ...groups import by_prompt
from ...judging.diagnostics import judge_report
from ...models import ModelRef, reachable
from ...runtime.context import RunContext
from ...runtime.runner import run_shards, run_stage
from ...scoring import make_scorers
from ...scoring.apply import score_samples
from ...scoring.base import changed_versions
from ...scoring.judge_base import bind_scorers
from ...store import StageDir

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class ScoreWork:
    """One shard of prompt groups (`{"prompt": row, "samples": [...]}`) through the stage's scorers, bound in the
    context that runs it (model-based ones judge with `policy` or the model their `judge` option names)."""

    scorers: tuple[ScorerConfig, ...]
    policy: ModelRef

    def __call__(self, ctx: RunContext, index: int, groups: list[dict], advance) -> list[dict]:
        scorers = ctx.models.bound_scorers(list(self.scorers), reachable(self.policy))
        prompts = {g["prompt"]["prompt_id"]: g["prompt"] for g in groups}
        rows = score_samples(scorers, ctx.task, prompts, [s for g in groups for s in g["samples"]])
        advance(len(groups))
        return rows


def unparsed_fixes(options) -> list[str]:
    """The options of a judge, not already set, that give its unparsed judgments a verdict (each valid with the others
    as they are: `read_unparsed` needs `mode: generate`, `mode: logprobs` needs it off)."""
    fields = getattr(type(options), "model_fields", {})
    mode, reads = getattr(options, "mode", None), getattr(options, "read_unparsed", False)
    fixes = []
    if "read_unparsed" in fields and not reads and mode in (None, "generate"):
        fixes.append("read_unparsed: true (the verdict read after the written text)")
    if "mode" in fields and mode != "logprobs":
        fixes.append("mode: logprobs" + (" without read_unparsed" if reads else "") + " (no text, the verdict from log-probs)")
    return fixes


def warn_unparsed(iteration: int, scorers, report: dict) -> None:
    """Say so when most of a judge's written verdicts did not parse: its column is empty for them, so builders and
    rewards skip those samples, and the options that give every judgment a verdict."""
    read = report.get("read_after_unparsed_rate") or {}
    for k, sc in enumerate(scorers):
        missing = (report.get("parse_failure_rate") or {}).get(sc.name, 0.0) - read.get(sc.name, 0.0)
        if missing < 0.5:
            continue
        fixes = unparsed_fixes(getattr(sc, "options", None))
        log.warning("iter %d score: %.0f%% of %s's verdicts did not parse, so its columns are empty for those samples "
                    "(builders and rewards skip them)%s", iteration, 100 * missing, sc.name,
                    f"; set score[{k}].options.{' or '.join(fixes)}" if fixes else "")


def score_stage(ctx: RunContext, iteration: int, cfg: list[ScorerConfig], prompts_sd: StageDir, samples_sd: StageDir, policy: ModelRef) -> StageDir:
    """`policy` wrote the samples: the judge of scorers whose `judge` option is `policy`. Shards have the prompts of the
    samples table's shards (one shard when a scorer needs the whole table, like ds_weight)."""
    shard_size = int((samples_sd.config.get("generate") or {}).get("shard_size", 32))
    task = ctx.task
    scorers = make_scorers(cfg, task)
    judges = bind_scorers(scorers, ctx.models, policy)
    config = {"score": [s.model_dump() for s in cfg], "task": task.cfg.model_dump(), "shard_size": shard_size}
    versions = changed_versions(scorers)
    if versions:
        config["versions"] = versions
    inputs = {"prompts": prompts_sd.fingerprint, "samples": samples_sd.fingerprint, **{f"judge:{k}": v for k, v in judges.items()}}
    sd = ctx.store.stage(iteration, "score", config, inputs)

    def work(sd: StageDir):
        samples = samples_sd.rows() if samples_sd.table_path.exists() else samples_sd.read_shards()
        per_prompt = by_prompt(samples, turns=False)  # a prompt's turns stay in one shard (scorers group them apart)
        groups = [{"prompt": p, "samples": per_prompt[p["prompt_id"]]} for p in prompts_sd.rows() if p["prompt_id"] in per_prompt]
        size = len(groups) if any(s.whole_table for s in scorers) else shard_size
        scored = run_shards(ctx, sd, groups, max(size, 1), ScoreWork(tuple(cfg), policy), f"iter {iteration} score")
        order = {s["sample_id"]: i for i, s in enumerate(samples)}
        rows = sorted(scored, key=lambda r: order[r["sample_id"]])  # the samples table's order
        extra = {"judge": judge_report(rows, scorers)}
        warn_unparsed(iteration, scorers, extra["judge"])
        if task.outcome_column:
            extra["sandbox"] = task.sandbox().isolation()  # the isolation layers that applied
        return rows, score_counts(rows), {k: v for k, v in extra.items() if v}

    return run_stage(ctx, iteration, sd, work)
