"""Probe stage: label-free health of a model. The first `control.probe.size` train prompts (by prompt id: the same set
every iteration) are sampled `n` times with a fixed seed and voted on (majority vote, unfinished samples do not vote);
the manifest records the monitors of `control.health` (distinct answers, answer entropy, agreement, vote margin, length,
cut-off rate). No gold answer is read. Writes `iter_<k>/probe/`."""

from __future__ import annotations

from ...config import EvalConfig
from ...config.control import ProbeConfig
from ...control.health import health
from ...generation import SamplingParams
from ...models import ModelRef
from ...runtime.context import RunContext
from ...runtime.generate_shards import generate_sharded
from ...runtime.runner import run_stage
from ...scoring import make_scorers
from ...scoring.apply import score_samples
from ...store import StageDir

PROBE_SEED = 4242


def probe_prompts(rows: list[dict], size: int) -> list[dict]:
    """The probe set: the first `size` prompts by prompt id."""
    return sorted(rows, key=lambda r: str(r["prompt_id"]))[:size]


def probe_stage(ctx: RunContext, iteration: int, cfg: ProbeConfig, eval_cfg: EvalConfig, prompts_sd: StageDir, model: ModelRef) -> StageDir:
    params = SamplingParams(n=cfg.n, temperature=cfg.temperature, max_tokens=cfg.max_tokens or eval_cfg.max_tokens, stop=tuple(eval_cfg.stop),
                            seed=PROBE_SEED)
    config = {"probe": cfg.model_dump(), "params": params.to_dict(), "backend": ctx.backend.identity(), "task": ctx.task.cfg.model_dump()}
    sd = ctx.store.stage(iteration, "probe", config, {"prompts": prompts_sd.fingerprint, "model": model.fingerprint})

    def work(sd: StageDir):
        rows = probe_prompts(prompts_sd.rows(), cfg.size)
        samples = generate_sharded(ctx, sd, rows, model, params, eval_cfg.shard_size, iteration, f"iter {iteration} probe")
        names = [] if ctx.task.outcome_column else [{"name": "majority_vote", "options": {"count_unfinished": False}}]
        scored = score_samples(make_scorers(names, ctx.task), ctx.task, {p["prompt_id"]: p for p in rows}, samples)
        h = health(scored)
        return scored, {"prompts": len(rows), "samples": len(scored)}, {"health": h, "model_ref": model.ref}

    return run_stage(ctx, iteration, sd, work)
