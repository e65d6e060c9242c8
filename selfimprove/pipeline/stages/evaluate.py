from __future__ import annotations

from ...config import EvalConfig
from ...evaluation.run import evaluate
from ...models import ModelRef
from ...runtime.context import RunContext
from ...runtime.runner import run_stage
from ...scoring.base import versions_of
from ...store import StageDir, atomic_write_json


def eval_stage(ctx: RunContext, iteration: int, cfg: EvalConfig, prompts_sd: StageDir, model: ModelRef, name: str = "eval") -> StageDir:
    """Reads the eval prompts (or, as the `dev` stage, the dev prompts); writes scored rows, `metrics.json` and
    `per_problem.json` (each metric's value per prompt id, for paired comparisons) for `model`."""
    config = {"eval": cfg.model_dump(), "backend": ctx.backend.identity(), "task": ctx.task.cfg.model_dump()}
    named = ([(cfg.best_of.scorer, cfg.best_of.options)] if cfg.best_of is not None and cfg.best_of.scorer else []) + (
        [("critic", cfg.critique_refine.critic_options)] if cfg.critique_refine is not None else [])
    versions = versions_of(named, ctx.task)
    if versions:  # a scorer whose columns changed: evaluate again
        config["versions"] = versions
    sd = ctx.store.stage(iteration, name, config, {"prompts": prompts_sd.fingerprint, "model": model.fingerprint})

    def work(sd: StageDir):
        per_problem: dict = {}
        rows, metrics = evaluate(ctx, sd, prompts_sd.rows(), model, cfg, f"iter {iteration} {name}", iteration, per_problem)
        atomic_write_json(sd.path / "metrics.json", metrics)
        atomic_write_json(sd.path / "per_problem.json", per_problem)
        counts = {"num_problems": metrics.get("num_problems", 0), "samples": len(rows)}
        return rows, counts, {"metrics": metrics, "model_ref": model.ref}

    return run_stage(ctx, iteration, sd, work)
