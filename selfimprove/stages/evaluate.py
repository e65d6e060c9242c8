"""Eval stage: greedy and/or sampled completions on the held-out prompts, scored by the gold verifier
and majority vote; writes per-sample rows (`table.parquet`, column `mode` = greedy|sampled) and `metrics.json`."""

from __future__ import annotations

from ..evals import compute_metrics
from ..generation import SamplingParams
from ..scoring import make_scorers
from ..config import ScorerConfig
from ..store import StageDir, atomic_write_json
from .common import run_stage
from .context import ModelRef, RunContext
from .generate import generate_sharded
from .score import score_rows


def eval_stage(ctx: RunContext, iteration: int, prompts_sd: StageDir, model: ModelRef) -> StageDir:
    e = ctx.cfg.eval
    config = {"eval": e.model_dump(), "backend": ctx.cfg.backend.model_dump(), "task": ctx.cfg.task.model_dump()}
    sd = ctx.store.stage(iteration, "eval", config, {"prompts": prompts_sd.fingerprint, "model": model.fingerprint})

    def work(sd: StageDir):
        prompt_rows = prompts_sd.rows()
        prompts = {p["prompt_id"]: p for p in prompt_rows}
        modes = []
        if e.greedy:
            modes.append(("greedy", SamplingParams(n=1, temperature=0.0, max_tokens=e.max_tokens, stop=tuple(e.stop), seed=e.seed)))
        if e.n:
            modes.append(("sampled", SamplingParams(n=e.n, temperature=e.temperature, top_p=e.top_p, max_tokens=e.max_tokens, stop=tuple(e.stop), seed=e.seed)))
        scorers = make_scorers([ScorerConfig(name="gold"), ScorerConfig(name="majority_vote")], ctx.task)
        scored: dict[str, list[dict]] = {}
        for mode, params in modes:
            part = StageDir(sd.path / mode, f"eval_{mode}", {"params": params.to_dict()}, sd.inputs)  # shards only
            rows_for_mode = prompt_rows if mode == "greedy" or not e.sample_problems else prompt_rows[: e.sample_problems]
            samples = generate_sharded(ctx, part, rows_for_mode, model, params, e.shard_size, iteration, f"iter {iteration} eval {mode}")
            scored[mode] = [dict(r, mode=mode) for r in score_rows(ctx, scorers, prompts, samples, f"iter {iteration} eval {mode} score")]
        metrics = compute_metrics(scored.get("greedy"), scored.get("sampled"), resamples=e.bootstrap, seed=e.seed)
        metrics["model_ref"] = model.ref
        atomic_write_json(sd.path / "metrics.json", metrics)
        rows = [r for mode in scored for r in scored[mode]]
        counts = {"num_problems": metrics.get("num_problems", 0), "samples": len(rows)}
        return rows, counts, {"metrics": metrics, "model_ref": model.ref}

    return run_stage(ctx, iteration, sd, work)
