from __future__ import annotations

from ..config import EvalConfig, ScorerConfig
from ..errors import ConfigError
from ..generation import SamplingParams
from ..models import ModelRef, reachable
from ..prompts import PromptLibrary
from ..runtime.context import RunContext
from ..runtime.generate_shards import generate_sharded
from ..scoring import make_scorers
from ..scoring.apply import score_samples
from ..store import StageDir
from ..tasks import Task
from .metrics import compute_metrics, gold_slice_estimates


def eval_scorers(task: Task):
    """Gold verifier, plus majority vote where answers can be compared (not for code)."""
    names = ["gold"] if task.outcome_column else ["gold", "majority_vote"]
    return make_scorers([{"name": n} for n in names], task)


def revision_prompts(prompts: PromptLibrary, e: EvalConfig, prompt_rows: list[dict], first: list[dict]) -> list[dict]:
    """Turn-2 prompts: the problem, the model's first attempt, then the self-correction instruction."""
    attempt = {r["prompt_id"]: r["completion"] for r in first}
    instruction = prompts.render(e.revise_template)
    return [
        dict(p, messages=list(p["messages"]) + [{"role": "assistant", "content": attempt[p["prompt_id"]]}, {"role": "user", "content": instruction}])
        for p in prompt_rows
        if p["prompt_id"] in attempt
    ]


def evaluate(ctx: RunContext, sd: StageDir, prompt_rows: list[dict], model: ModelRef, e: EvalConfig, label: str, iteration: int = 0,
             per_problem_out: dict | None = None) -> tuple[list[dict], dict]:
    """Generate (resumable shards under `sd`), score, and compute metrics; returns (rows, metrics). `per_problem_out`
    receives each metric's per-problem values (see `compute_metrics`)."""
    prompts = {p["prompt_id"]: p for p in prompt_rows}
    scorers = eval_scorers(ctx.task)
    scored: dict[str, list[dict]] = {}

    def run_mode(mode: str, rows_for_mode: list[dict], params: SamplingParams, turn: int) -> None:
        part = StageDir(sd.path / mode, f"eval_{mode}", {"params": params.to_dict()}, sd.inputs)  # shards only
        samples = generate_sharded(ctx, part, rows_for_mode, model, params, e.shard_size, iteration, f"{label} {mode}")
        rows = score_samples(scorers, ctx.task, prompts, samples, f"{label} {mode} score", ctx.progress)
        scored[mode] = [dict(r, mode=mode, turn=turn, question=prompts[r["prompt_id"]]["question"]) for r in rows]

    for mode, params in e.mode_params().items():
        run_mode(mode, prompt_rows if mode == "greedy" or not e.sample_problems else prompt_rows[: e.sample_problems], params, 1)
    if e.best_of is not None and e.best_of.scorer and scored.get("sampled"):
        chooser = ctx.models.bound_scorers([ScorerConfig(name=e.best_of.scorer, options=e.best_of.options)], reachable(model), "eval.best_of")
        rows = score_samples(chooser, ctx.task, prompts, scored["sampled"], f"{label} best-of ({e.best_of.scorer})", ctx.progress)
        missing = [r["sample_id"] for r in rows if e.best_of.column not in r]
        if missing:
            raise ConfigError(f"eval.best_of.column: {e.best_of.scorer} writes no {e.best_of.column!r} (sample {missing[0]})")
        scored["sampled"] = rows
    if e.revise_template:
        run_mode("revision", revision_prompts(ctx.prompts, e, prompt_rows, scored["greedy"]), e.revision_params(), 2)
    metrics = compute_metrics(scored.get("greedy"), scored.get("sampled"), revision=scored.get("revision"), prompts=prompts,
                              resamples=e.bootstrap, seed=e.seed, per_problem_out=per_problem_out,
                              best_of=e.best_of.column if e.best_of is not None else None)
    if e.gold_slice and scored.get("greedy") and scored.get("sampled"):
        task = ctx.task
        est = gold_slice_estimates(scored["greedy"], scored["sampled"], e.gold_slice,
                                   lambda pairs: [ok for ok, _ in task.check([a for a, _ in pairs], [b for _, b in pairs])])
        if est is not None:
            metrics["accuracy_estimates"] = est
    metrics["model_ref"] = model.ref
    return [r for mode in scored for r in scored[mode]], metrics


