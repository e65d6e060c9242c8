from __future__ import annotations

from ..config import EvalConfig, ScorerConfig
from ..errors import ConfigError
from ..generation import SamplingParams
from ..models import ModelRef, reachable
from ..prompts import PromptLibrary, after_attempt
from ..runtime.context import RunContext
from ..runtime.generate_shards import generate_sharded
from ..scoring import make_scorers
from ..scoring.apply import score_samples
from ..scoring.parsers import parse_self_verify
from ..scoring.self_check import self_verification_rates
from ..store import StageDir
from ..tasks import Task
from .metrics import compute_metrics, gold_slice_estimates


def eval_scorers(task: Task):
    """Gold verifier, plus majority vote where answers can be compared (not for code)."""
    names = ["gold"] if task.outcome_column else ["gold", "majority_vote"]
    return make_scorers([{"name": n} for n in names], task)


def check_eval(e: EvalConfig, task: Task) -> None:
    """The eval's templates and its critic's or chooser's options, before any model loads."""
    task.prompts.require(e.revise_template or None, "eval.revise_template")
    if e.self_verify is not None:
        task.prompts.require(e.self_verify.template, "eval.self_verify.template")
        task.prompts.require(e.self_verify.correct_template, "eval.self_verify.correct_template")
    if e.critique_refine is not None:
        task.prompts.require(e.critique_refine.template, "eval.critique_refine.template")
        make_scorers([ScorerConfig(name="critic", options=e.critique_refine.critic_options)], task)
    if e.best_of is not None and e.best_of.scorer:
        make_scorers([ScorerConfig(name=e.best_of.scorer, options=e.best_of.options)], task)


def revision_prompts(prompts: PromptLibrary, e: EvalConfig, prompt_rows: list[dict], first: list[dict]) -> list[dict]:
    """Turn-2 prompts: the problem, the model's first attempt, then the self-correction instruction."""
    attempt = {r["prompt_id"]: r["completion"] for r in first}
    instruction = prompts.render(e.revise_template)
    return [
        dict(p, messages=after_attempt(p["messages"], attempt[p["prompt_id"]], instruction))
        for p in prompt_rows
        if p["prompt_id"] in attempt
    ]


def critique_and_refine(ctx: RunContext, e: EvalConfig, prompts: dict[str, dict], sampled: list[dict], model: ModelRef, label: str,
                        iteration: int, sd: StageDir) -> list[dict]:
    """Test-time critique-then-refine: the critic critiques each sampled answer, the model refines it with the critique
    in context (one refinement per answer, at the eval's temperature); the refinements, scored like the samples."""
    c = e.critique_refine
    critic = ctx.models.bound_scorers([ScorerConfig(name="critic", options=c.critic_options)], reachable(model), "eval.critique_refine")
    critiqued = score_samples(critic, ctx.task, prompts, sampled, f"{label} critique", ctx.progress)
    requests = [{"prompt_id": s["sample_id"], "messages": after_attempt(prompts[s["prompt_id"]]["messages"], s["completion"],
                                                                         ctx.prompts.render(c.template, critique=s.get("critique") or ""))}
                for s in critiqued]
    params = SamplingParams(n=1, temperature=e.temperature, top_p=e.top_p, max_tokens=e.max_tokens, stop=tuple(e.stop), seed=e.seed + 1)
    part = StageDir(sd.path / "refined", "eval_refined", {"params": params.to_dict(), "critique_refine": c.model_dump()}, sd.inputs)
    out = generate_sharded(ctx, part, requests, model, params, e.shard_size, iteration, f"{label} refine")
    parent = {s["sample_id"]: s for s in critiqued}
    rows = [dict(r, prompt_id=parent[r["prompt_id"]]["prompt_id"], parent_id=r["prompt_id"], sample_id=f"{r['prompt_id']}/refined")
            for r in out]
    rows = score_samples(eval_scorers(ctx.task), ctx.task, prompts, rows, f"{label} refined score", ctx.progress)
    return [dict(r, mode="refined", turn=2, question=prompts[r["prompt_id"]]["question"],
                 critic_verdict=parent[r["parent_id"]].get("critic_verdict")) for r in rows]


def self_verify(ctx: RunContext, e: EvalConfig, prompts: dict[str, dict], greedy: list[dict], model: ModelRef, label: str, iteration: int,
                sd: StageDir) -> tuple[list[dict], list[dict], dict]:
    """Self-rewarding correction at inference: each greedy attempt is self-evaluated (greedy), and revised (greedy)
    only where the evaluation says wrong; the final answer is the revision, else the attempt. Returns the evaluations
    (mode `verification`, with `verdict`), the final answers (mode `revision`, `revised` true or false) and the
    self-verification metrics (rates per class over the attempts gold can judge)."""
    sv = e.self_verify
    verify_text, correct_text = ctx.prompts.render(sv.template), ctx.prompts.render(sv.correct_template)
    asked = {g["prompt_id"]: after_attempt(prompts[g["prompt_id"]]["messages"], g["completion"], verify_text) for g in greedy}
    params = SamplingParams(n=1, temperature=0.0, max_tokens=sv.max_tokens, stop=tuple(e.stop), seed=e.seed)
    part = StageDir(sd.path / "verification", "eval_verification", {"params": params.to_dict()}, sd.inputs)
    evaluated = {r["prompt_id"]: r for r in generate_sharded(ctx, part, [{"prompt_id": p, "messages": m} for p, m in asked.items()],
                                                             model, params, e.shard_size, iteration, f"{label} self-evaluate")}
    verdicts = {p: parse_self_verify(r["completion"]).value for p, r in evaluated.items()}
    wrong = [{"prompt_id": g["prompt_id"], "messages": after_attempt(asked[g["prompt_id"]], evaluated[g["prompt_id"]]["completion"], correct_text)}
             for g in greedy if verdicts.get(g["prompt_id"]) == "wrong"]
    part = StageDir(sd.path / "verified_revision", "eval_verified_revision", {"params": e.revision_params().to_dict()}, sd.inputs)
    revised = generate_sharded(ctx, part, wrong, model, e.revision_params(), e.shard_size, iteration, f"{label} self-correct")
    revised = {r["prompt_id"]: r for r in score_samples(eval_scorers(ctx.task), ctx.task, prompts, revised, f"{label} self-correct score",
                                                        ctx.progress)}
    final, checks = [], []
    for g in greedy:
        pid = g["prompt_id"]
        r = revised.get(pid)
        final.append(dict(r if r is not None else g, mode="revision", turn=2, revised=r is not None, question=g["question"],
                          sample_id=f"{g['sample_id']}/verified"))
        checks.append(dict(evaluated[pid], mode="verification", turn=2, verdict=verdicts[pid], attempt_correct=g.get("correct"),
                           question=g["question"], sample_id=f"{g['sample_id']}/evaluation"))
    rewards = [float(c["attempt_correct"]) if isinstance(c["attempt_correct"], bool) else None for c in checks]
    return checks, final, self_verification_rates([c["verdict"] for c in checks], rewards)


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
    verify_metrics = {}
    if e.self_verify is not None:
        scored["verification"], scored["revision"], verify_metrics = self_verify(ctx, e, prompts, scored["greedy"], model, label, iteration, sd)
    refined_metrics = {}
    if e.critique_refine is not None and scored.get("sampled"):
        scored["refined"] = critique_and_refine(ctx, e, prompts, scored["sampled"], model, label, iteration, sd)
        m = compute_metrics(None, scored["refined"], resamples=e.bootstrap, seed=e.seed)
        refined_metrics = {f"refined_{k}": v for k, v in m.items() if k in ("pass@1", "pass@1_ci") or k.startswith("maj@")}
    metrics = compute_metrics(scored.get("greedy"), scored.get("sampled"), revision=scored.get("revision"), prompts=prompts,
                              resamples=e.bootstrap, seed=e.seed, per_problem_out=per_problem_out,
                              best_of=e.best_of.column if e.best_of is not None else None)
    if e.gold_slice and scored.get("greedy") and scored.get("sampled"):
        task = ctx.task
        est = gold_slice_estimates(scored["greedy"], scored["sampled"], e.gold_slice,
                                   lambda pairs: [ok for ok, _ in task.check([a for a, _ in pairs], [b for _, b in pairs])])
        if est is not None:
            metrics["accuracy_estimates"] = est
    metrics.update(refined_metrics)
    metrics.update(verify_metrics)
    metrics["model_ref"] = model.ref
    return [r for mode in scored for r in scored[mode]], metrics


