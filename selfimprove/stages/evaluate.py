"""Eval stage: greedy and/or sampled completions on held-out prompts (and an optional revision turn),
scored by the gold verifier and majority vote; writes per-sample rows (`table.parquet`, column `mode` =
greedy|sampled|revision) and `metrics.json`. The loop and `selfimprove eval` run the same code."""

from __future__ import annotations

from ..config import EvalConfig, ScorerConfig
from ..evals import compute_metrics
from ..generation import SamplingParams
from ..scoring import make_scorers
from ..store import StageDir, atomic_write_json
from .common import run_stage
from .context import ModelRef, RunContext
from .generate import generate_sharded
from .score import score_rows


def eval_scorers(ctx: RunContext):
    """Gold verifier, plus majority vote where answers can be compared (not for code)."""
    names = ["gold"] if ctx.task.outcome_column else ["gold", "majority_vote"]
    return make_scorers([ScorerConfig(name=n) for n in names], ctx.task)


def revision_prompts(ctx: RunContext, e: EvalConfig, prompt_rows: list[dict], first: list[dict]) -> list[dict]:
    """Turn-2 prompts: the problem, the model's first attempt, then the self-correction instruction."""
    attempt = {r["prompt_id"]: r["completion"] for r in first}
    instruction = ctx.prompts.render(e.revise_template)
    return [
        dict(p, messages=list(p["messages"]) + [{"role": "assistant", "content": attempt[p["prompt_id"]]}, {"role": "user", "content": instruction}])
        for p in prompt_rows
        if p["prompt_id"] in attempt
    ]


def evaluate(ctx: RunContext, sd: StageDir, prompt_rows: list[dict], model: ModelRef, e: EvalConfig, label: str, iteration: int = 0) -> tuple[list[dict], dict]:
    """Generate (resumable shards under `sd`), score, and compute metrics; returns (rows, metrics)."""
    prompts = {p["prompt_id"]: p for p in prompt_rows}
    scorers = eval_scorers(ctx)
    stop = tuple(e.stop)
    modes = []
    if e.greedy:
        modes.append(("greedy", SamplingParams(n=1, temperature=0.0, max_tokens=e.max_tokens, stop=stop, seed=e.seed)))
    if e.n:
        modes.append(("sampled", SamplingParams(n=e.n, temperature=e.temperature, top_p=e.top_p, max_tokens=e.max_tokens, stop=stop, seed=e.seed)))
    scored: dict[str, list[dict]] = {}

    def run_mode(mode: str, rows_for_mode: list[dict], params: SamplingParams, turn: int) -> None:
        part = StageDir(sd.path / mode, f"eval_{mode}", {"params": params.to_dict()}, sd.inputs)  # shards only
        samples = generate_sharded(ctx, part, rows_for_mode, model, params, e.shard_size, iteration, f"{label} {mode}")
        rows = score_rows(ctx, scorers, prompts, samples, f"{label} {mode} score")
        scored[mode] = [dict(r, mode=mode, turn=turn, question=prompts[r["prompt_id"]]["question"]) for r in rows]

    for mode, params in modes:
        run_mode(mode, prompt_rows if mode == "greedy" or not e.sample_problems else prompt_rows[: e.sample_problems], params, 1)
    if e.revise_template:
        params = SamplingParams(n=1, temperature=0.0, max_tokens=e.revise_max_tokens or e.max_tokens, stop=stop, seed=e.seed)
        run_mode("revision", revision_prompts(ctx, e, prompt_rows, scored["greedy"]), params, 2)
    metrics = compute_metrics(scored.get("greedy"), scored.get("sampled"), revision=scored.get("revision"), prompts=prompts,
                              resamples=e.bootstrap, seed=e.seed)
    metrics["model_ref"] = model.ref
    return [r for mode in scored for r in scored[mode]], metrics


def eval_stage(ctx: RunContext, iteration: int, prompts_sd: StageDir, model: ModelRef) -> StageDir:
    e = ctx.cfg.eval
    config = {"eval": e.model_dump(), "backend": ctx.cfg.backend.model_dump(), "task": ctx.cfg.task.model_dump()}
    sd = ctx.store.stage(iteration, "eval", config, {"prompts": prompts_sd.fingerprint, "model": model.fingerprint})

    def work(sd: StageDir):
        rows, metrics = evaluate(ctx, sd, prompts_sd.rows(), model, e, f"iter {iteration} eval", iteration)
        atomic_write_json(sd.path / "metrics.json", metrics)
        counts = {"num_problems": metrics.get("num_problems", 0), "samples": len(rows)}
        return rows, counts, {"metrics": metrics, "model_ref": model.ref}

    return run_stage(ctx, iteration, sd, work)
