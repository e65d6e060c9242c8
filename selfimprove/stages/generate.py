"""Generate stage: n samples per prompt, written in shards so a killed run resumes at the last finished shard.

Output columns: prompt_id, sample_id, turn, completion, num_tokens, logprob_sum, finish_reason,
model_ref, sampling (the parameters used), iteration.
"""

from __future__ import annotations

import logging

from ..generation import Request, SamplingParams
from ..store import StageDir, stable_hash
from .context import ModelRef, RunContext

log = logging.getLogger("selfimprove.generate")


def sample_rows(prompt_rows: list[dict], outs, model: ModelRef, params: SamplingParams, iteration: int) -> list[dict]:
    rows = []
    sampling = params.to_dict()
    for p, comps in zip(prompt_rows, outs):
        for j, c in enumerate(comps):
            rows.append(
                {
                    "prompt_id": p["prompt_id"],
                    "sample_id": f"{p['prompt_id']}/s{j:04d}",
                    "turn": 1,
                    "completion": c.text,
                    "num_tokens": c.num_tokens,
                    "logprob_sum": c.logprob_sum,
                    "finish_reason": c.finish_reason,
                    "model_ref": model.ref,
                    "sampling": sampling,
                    "iteration": iteration,
                }
            )
    return rows


def generate_sharded(ctx: RunContext, sd: StageDir, prompt_rows: list[dict], model: ModelRef, params: SamplingParams,
                     shard_size: int, iteration: int, label: str) -> list[dict]:
    """Generate every missing shard (seeded per shard, so a resumed shard samples as the lost one would have)."""
    shards = [prompt_rows[i : i + shard_size] for i in range(0, len(prompt_rows), shard_size)]
    done = sum(len(s) for i, s in enumerate(shards) if sd.has_shard(i))
    if done:
        log.info("resuming %s: %d of %d prompts already generated", sd.path, done, len(prompt_rows))
        ctx.console.print(f"[dim]resuming {label}: {done}/{len(prompt_rows)} prompts already done[/dim]")
    with ctx.progress(label, len(prompt_rows)) as bar:
        bar.update(done)
        for i, shard in enumerate(shards):
            if sd.has_shard(i):
                continue
            gen = ctx.generator(model)
            shard_params = SamplingParams(**{**params.to_dict(), "stop": tuple(params.stop), "seed": int(stable_hash([params.seed, i])[:8], 16)})
            outs = gen.generate([Request(p["prompt_id"], p["messages"]) for p in shard], shard_params, progress=bar.advance)
            sd.write_shard(i, sample_rows(shard, outs, model, params, iteration))
    return sd.read_shards()


def generation_counts(rows: list[dict]) -> dict:
    n = len(rows)
    return {
        "samples": n,
        "prompts": len({r["prompt_id"] for r in rows}),
        "tokens": sum(r["num_tokens"] for r in rows),
        "truncated": sum(r["finish_reason"] == "length" for r in rows),
    }


def generate_stage(ctx: RunContext, iteration: int, prompts_sd: StageDir, model: ModelRef) -> StageDir:
    from .common import run_stage

    g = ctx.cfg.generate
    params = SamplingParams(n=g.n, temperature=g.temperature, top_p=g.top_p, max_tokens=g.max_tokens, stop=tuple(g.stop), seed=g.seed + iteration)
    config = {"generate": g.model_dump(), "backend": ctx.cfg.backend.model_dump(), "iteration_seed": params.seed}
    sd = ctx.store.stage(iteration, "generate", config, {"prompts": prompts_sd.fingerprint, "model": model.fingerprint})
    prompt_rows = prompts_sd.rows()

    def work(sd: StageDir):
        rows = generate_sharded(ctx, sd, prompt_rows, model, params, g.shard_size, iteration, f"iter {iteration} generate")
        counts = generation_counts(rows)
        return rows, counts, {"model_ref": model.ref, "backend": ctx.cfg.backend.name}

    return run_stage(ctx, iteration, sd, work)
