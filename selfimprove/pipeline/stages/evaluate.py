from __future__ import annotations

from ...config import EvalConfig
from ...evaluation.run import evaluate
from ...models import ModelRef
from ...runtime.context import RunContext
from ...runtime.runner import run_stage
from ...store import StageDir, atomic_write_json


def eval_stage(ctx: RunContext, iteration: int, cfg: EvalConfig, prompts_sd: StageDir, model: ModelRef) -> StageDir:
    """Reads the eval prompts; writes scored rows and `metrics.json` for `model`."""
    config = {"eval": cfg.model_dump(), "backend": ctx.backend.identity(), "task": ctx.task.cfg.model_dump()}
    sd = ctx.store.stage(iteration, "eval", config, {"prompts": prompts_sd.fingerprint, "model": model.fingerprint})

    def work(sd: StageDir):
        rows, metrics = evaluate(ctx, sd, prompts_sd.rows(), model, cfg, f"iter {iteration} eval", iteration)
        atomic_write_json(sd.path / "metrics.json", metrics)
        counts = {"num_problems": metrics.get("num_problems", 0), "samples": len(rows)}
        return rows, counts, {"metrics": metrics, "model_ref": model.ref}

    return run_stage(ctx, iteration, sd, work)
