"""Generate stage: n samples per prompt, written in shards so a killed run resumes at the last finished shard.

Output columns: prompt_id, sample_id, turn, completion, num_tokens, logprob_sum, finish_reason,
model_ref, sampling (the parameters used), iteration. With `generate.revise`, each first-turn sample also gets
`revise.n` turn-2 samples (`turn` 2, `parent_id` = the first attempt's sample_id, `revise_instruction`): the
problem, the first attempt as the assistant's turn, then the instruction; sharded and resumed like turn 1.
"""

from __future__ import annotations

from ...config import GenerateConfig
from ...generation import SamplingParams
from ...models import ModelRef
from ...prompts import after_attempt
from ...runtime.context import RunContext
from ...runtime.generate_shards import generate_sharded
from ...runtime.runner import run_stage
from ...store import StageDir


def revise_turn(ctx: RunContext, sd: StageDir, cfg: GenerateConfig, prompt_rows: list[dict], first: list[dict], model: ModelRef,
                params: SamplingParams, iteration: int) -> list[dict]:
    """Turn-2 samples: per first attempt, `revise.n` completions of [problem, attempt, instruction]."""
    r = cfg.revise
    instruction = ctx.prompts.render(r.template)
    messages = {p["prompt_id"]: p["messages"] for p in prompt_rows}
    requests = [{"prompt_id": s["sample_id"], "messages": after_attempt(messages[s["prompt_id"]], s["completion"], instruction)}
                for s in first]
    rparams = SamplingParams(**{**params.to_dict(), "stop": tuple(params.stop), "n": r.n,
                                "temperature": params.temperature if r.temperature is None else r.temperature,
                                "max_tokens": r.max_tokens or params.max_tokens, "seed": params.seed + 7919})
    part = StageDir(sd.path / "revision", "generate_revision", {"params": rparams.to_dict(), "template": r.template}, sd.inputs)  # shards only
    out = generate_sharded(ctx, part, requests, model, rparams, cfg.shard_size * cfg.n, iteration, f"iter {iteration} revise")
    parent_prompt = {s["sample_id"]: s["prompt_id"] for s in first}
    return [dict(row, prompt_id=parent_prompt[row["prompt_id"]], parent_id=row["prompt_id"], turn=2,
                 sample_id=f"{row['prompt_id']}/t2{row['sample_id'].rsplit('/', 1)[1]}", revise_instruction=instruction) for row in out]


def generation_counts(rows: list[dict]) -> dict:
    n = len(rows)
    return {
        "samples": n,
        "prompts": len({r["prompt_id"] for r in rows}),
        "tokens": sum(r["num_tokens"] for r in rows),
        "truncated": sum(r["finish_reason"] == "length" for r in rows),
    }


def generate_stage(ctx: RunContext, iteration: int, cfg: GenerateConfig, prompts_sd: StageDir, model: ModelRef) -> StageDir:
    """Reads the `prompts` table; writes the `samples` table (iteration k samples with seed `generate.seed + k`)."""
    params = cfg.params(seed=cfg.seed + iteration)
    config = {"generate": cfg.model_dump(), "backend": ctx.backend.identity(), "iteration_seed": params.seed}
    sd = ctx.store.stage(iteration, "generate", config, {"prompts": prompts_sd.fingerprint, "model": model.fingerprint})

    def work(sd: StageDir):
        prompt_rows = prompts_sd.rows()
        rows = generate_sharded(ctx, sd, prompt_rows, model, params, cfg.shard_size, iteration, f"iter {iteration} generate")
        counts = generation_counts(rows)
        if cfg.revise is not None:
            second = revise_turn(ctx, sd, cfg, prompt_rows, rows, model, params, iteration)
            counts["revisions"] = generation_counts(second)
            rows = [dict(r, parent_id=None, revise_instruction=None) for r in rows] + second
        return rows, counts, {"model_ref": model.ref, "backend": ctx.backend.name}

    return run_stage(ctx, iteration, sd, work)
