from __future__ import annotations

from dataclasses import dataclass

from ..generation import Generator, Request, SamplingParams
from ..models import ModelRef, reachable
from ..store import StageDir, stable_hash
from .context import RunContext
from .runner import run_shards


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


def shard_params(params: SamplingParams, shard: int) -> SamplingParams:
    """The shard's own seed, so a resumed shard samples as the lost one would have."""
    return SamplingParams(**{**params.to_dict(), "stop": tuple(params.stop), "seed": int(stable_hash([params.seed, shard])[:8], 16)})


def generate_shard(gen: Generator, prompt_rows: list[dict], model: ModelRef, params: SamplingParams, shard: int, iteration: int,
                   progress=None) -> list[dict]:
    """One shard's samples: plain rows in, plain rows out."""
    outs = gen.generate([Request(p["prompt_id"], p["messages"]) for p in prompt_rows], shard_params(params, shard), progress=progress)
    return sample_rows(prompt_rows, outs, model, params, iteration)


@dataclass(frozen=True)
class GenerateWork:
    """Shard work of every generating stage (generate, revise, eval): the context's backend on `model`."""

    model: ModelRef
    params: SamplingParams
    iteration: int

    def __call__(self, ctx: RunContext, index: int, prompt_rows: list[dict], advance) -> list[dict]:
        return generate_shard(ctx.models.generator(reachable(self.model)), prompt_rows, self.model, self.params, index, self.iteration, advance)


def generate_sharded(ctx: RunContext, sd: StageDir, prompt_rows: list[dict], model: ModelRef, params: SamplingParams,
                     shard_size: int, iteration: int, label: str) -> list[dict]:
    """Generate every missing shard with the run's backend (here or on its Ray workers); returns all samples."""
    return run_shards(ctx, sd, prompt_rows, shard_size, GenerateWork(model, params, iteration), label)


