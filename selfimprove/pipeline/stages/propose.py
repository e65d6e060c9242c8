"""Propose stage (`propose:`): before an iteration samples its train prompts, the model writes new problems like
them (few-shot from the train pool), and a problem joins this iteration's prompts when it is new (its normalised text
is not a train, eval or dev question nor an earlier proposal: the held-out guard holds for what the model writes too)
and, with `min_top_share`, when the model's own `votes` answers to it agree enough (ScPO's self-consistency filter:
the majority_vote scorer's top share, answers compared by equivalence) and, with `judge`, when the model as a judge
rates the problem itself at least `min_judge_score` (Self-Rewarding's self-instruct filter; `prompts/judge_problem`).
Proposed problems have no gold answer (`reference` None, `meta.proposed` = the iteration): label-free scorers use
them, the gold scorer leaves them unscored.

Reads `prompts` (and the eval and dev prompts, for the guard); writes the iteration's prompts: the train prompts,
then the accepted proposals.
"""

from __future__ import annotations

import json
import random
import re

from ...config.propose import ProposeConfig
from ...generation import SamplingParams
from ...models import ModelRef
from ...runtime.context import RunContext
from ...runtime.generate_shards import generate_sharded
from ...runtime.runner import run_stage
from ...scoring import make_scorers
from ...scoring.apply import score_samples
from ...scoring.judges import PointwiseJudge
from ...store import StageDir
from ...tasks.base import normalize_question

PROBLEM_RE = re.compile(r"problem\s*:", re.I)


def parse_problem(text: str, max_chars: int = 600) -> str | None:
    """The proposed problem: the text after the last `Problem:` (else all of it), up to the first blank line; None
    when empty or longer than `max_chars`."""
    parts = PROBLEM_RE.split(text or "")
    body = parts[-1].strip().split("\n\n", 1)[0].strip()
    return body if body and len(body) <= max_chars else None


def propose_stage(ctx: RunContext, iteration: int, cfg: ProposeConfig, seed: int, prompts_sd: StageDir, held: list[StageDir],
                  model: ModelRef, shard_size: int) -> StageDir:
    config = {"propose": cfg.model_dump(), "seed": seed, "backend": ctx.backend.identity(), "task": ctx.task.cfg.model_dump()}
    inputs = {"prompts": prompts_sd.fingerprint, "model": model.fingerprint, **{f"held_{i}": h.fingerprint for i, h in enumerate(held)}}
    sd = ctx.store.stage(iteration, "propose", config, inputs)

    def work(sd: StageDir):
        train = prompts_sd.rows()
        seen = {normalize_question(r["question"]) for r in train} | {normalize_question(r["question"]) for h in held for r in h.rows()}
        rng = random.Random(seed)
        pool = [r["question"] for r in train]
        requests = [{"prompt_id": f"p{iteration}_{i}", "messages": [{"role": "user", "content": ctx.prompts.render(
            cfg.template, examples=rng.sample(pool, min(cfg.shots, len(pool))))}]} for i in range(cfg.size)]
        params = SamplingParams(n=1, temperature=cfg.temperature, max_tokens=cfg.max_tokens, seed=seed)
        part = StageDir(sd.path / "write", "propose_write", {"params": params.to_dict()}, sd.inputs)  # shards only
        written = sorted(generate_sharded(ctx, part, requests, model, params, shard_size, iteration, f"iter {iteration} propose"),
                         key=lambda r: int(r["prompt_id"].rsplit("_", 1)[1]))
        counts = {"requested": cfg.size, "unparsed": 0, "duplicates": 0, "inconsistent": 0}
        candidates = []
        for r in written:
            q = parse_problem(r["completion"])
            if q is None:
                counts["unparsed"] += 1
                continue
            if normalize_question(q) in seen:
                counts["duplicates"] += 1  # a train, eval or dev question, or an earlier proposal
                continue
            seen.add(normalize_question(q))
            candidates.append({"prompt_id": f"proposed/{iteration}/{len(candidates)}", "task": ctx.task.name, "question": q,
                               "reference": None, "messages": ctx.task.messages(q),
                               "meta": json.dumps({"proposed": iteration, "source": r["prompt_id"]}, sort_keys=True)})
        accepted = candidates
        if cfg.min_top_share is not None and candidates:
            vparams = SamplingParams(n=cfg.votes, temperature=0.7, max_tokens=cfg.max_tokens, seed=seed + 1)
            vpart = StageDir(sd.path / "votes", "propose_votes", {"params": vparams.to_dict()}, sd.inputs)
            votes = generate_sharded(ctx, vpart, candidates, model, vparams, shard_size, iteration, f"iter {iteration} propose votes")
            scored = score_samples(make_scorers([{"name": "majority_vote"}], ctx.task), ctx.task, {c["prompt_id"]: c for c in candidates},
                                   votes, f"iter {iteration} propose vote", ctx.progress)
            share = {r["prompt_id"]: float(r["top_share"] or 0.0) for r in scored}
            accepted = [c for c in candidates if share.get(c["prompt_id"], 0.0) >= cfg.min_top_share]
            counts["inconsistent"] = len(candidates) - len(accepted)
            for c in accepted:
                c["meta"] = json.dumps({**json.loads(c["meta"]), "top_share": round(share[c["prompt_id"]], 4)}, sort_keys=True)
        if cfg.judge is not None and accepted:
            judge = problem_judge(ctx.task, cfg)
            judge.bind(ctx.models, model)
            accepted, dropped = judge_problems(ctx.task, judge, accepted, cfg.min_judge_score, f"iter {iteration} propose", ctx.progress)
            counts["judged_out"] = dropped
        counts.update(accepted=len(accepted), prompts=len(train) + len(accepted))
        return train + accepted, counts, {}

    return run_stage(ctx, iteration, sd, work)


def problem_judge(task, cfg: ProposeConfig) -> PointwiseJudge:
    """The pointwise judge that rates proposed problems (checked at load: its template, its options, the threshold
    within its scale; proposals have no reference to guide it)."""
    from ...errors import ConfigError

    judge = PointwiseJudge(task, cfg.judge_options(), where="propose.judge")
    if judge.reference_guided:
        raise ConfigError("propose.judge.reference_guided: a proposed problem has no reference answer to guide the judge")
    if not judge.low <= cfg.min_judge_score <= judge.high:
        raise ConfigError(f"propose.min_judge_score: {cfg.min_judge_score} is outside the judge's scale [{judge.low:g}, {judge.high:g}]")
    return judge


def judge_problems(task, judge: PointwiseJudge, candidates: list[dict], min_score: float, label: str = "propose",
                   progress=None) -> tuple[list[dict], int]:
    """The candidates the (bound) judge scores at least `min_score` (all judgments unparsed: dropped), each with its
    `judge_score` in meta; and how many it dropped."""
    rows = score_samples([judge], task, {c["prompt_id"]: c for c in candidates},
                         [{"prompt_id": c["prompt_id"], "completion": ""} for c in candidates], label, progress)
    kept = []
    for c, score in zip(candidates, (r["judge_score"] for r in rows)):
        if score is not None and score >= min_score:
            c["meta"] = json.dumps({**json.loads(c["meta"]), "judge_score": round(score, 4)}, sort_keys=True)
            kept.append(c)
    return kept, len(candidates) - len(kept)
