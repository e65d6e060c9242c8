"""Refine stage (`refine:`): after scoring, a second generation for the samples a condition picks (a critic's
"wrong", or the prompts no sample solved), from a template that receives per-sample columns and optionally the gold
answer as a hint; the refinements are scored with the run's scorers and appended to the scored table, so the select
stage sees originals and refinements together (`refined`, `parent_id`).

Reads `prompts` and `scored`; writes the scored table plus the refinements. With `as: answer` a refinement is a
turn-1 answer to the original question (its training row never shows the hint or the critique: STaR's
rationalization, critique-then-refine); with `as: revision` it is a turn-2 sample after its attempt, with the
rendered instruction as `revise_instruction`. Group-wise scorers (majority_vote) see the refinements of a prompt as
their own group.
"""

from __future__ import annotations

from ...config import GenerateConfig, ScorerConfig
from ...config.refine import RefineConfig
from ...generation import SamplingParams
from ...groups import by_prompt
from ...models import ModelRef, reachable
from ...prompts import after_attempt
from ...runtime.context import RunContext
from ...runtime.generate_shards import generate_sharded
from ...runtime.runner import run_stage
from ...scoring.apply import score_samples
from ...scoring.base import changed_versions, make_scorers
from ...store import StageDir

REFINE_COLUMNS = ("refined", "parent_id")


def picked(rows: list[dict], cfg: RefineConfig) -> list[dict]:
    """The samples to refine: those whose `when.column` equals `when.equals`, or the first sample of each prompt none
    of whose samples has `when.prompt_without` true."""
    w = cfg.when
    if w.column is not None:
        return [r for r in rows if r.get(w.column) == w.equals]
    return [g[0] for g in by_prompt(rows, turns=False).values() if not any(r.get(w.prompt_without) is True for r in g)]


def refine_messages(ctx: RunContext, cfg: RefineConfig, prompt: dict, sample: dict) -> tuple[list[dict], str]:
    """The conversation a refinement answers, and the rendered instruction."""
    variables = {v: sample.get(v) for v in cfg.variables}
    last_user = next((m["content"] for m in reversed(prompt["messages"]) if m["role"] == "user"), "")
    text = ctx.prompts.render(cfg.template, question=prompt.get("question") or last_user, prompt=last_user,
                              attempt=sample.get("completion"), answer=sample.get("answer"),
                              reference=prompt.get("reference") if cfg.hint else None, **variables)
    if cfg.context == "question":
        i = max(i for i, m in enumerate(prompt["messages"]) if m["role"] == "user")
        return list(prompt["messages"][:i]) + [{"role": "user", "content": text}] + list(prompt["messages"][i + 1:]), text
    return after_attempt(prompt["messages"], sample["completion"], text), text


def refine_stage(ctx: RunContext, iteration: int, cfg: RefineConfig, gen: GenerateConfig, scorers: list[ScorerConfig],
                 prompts_sd: StageDir, scored_sd: StageDir, model: ModelRef) -> StageDir:
    params = SamplingParams(n=cfg.n, temperature=gen.temperature if cfg.temperature is None else cfg.temperature, top_p=gen.top_p,
                            max_tokens=cfg.max_tokens or gen.max_tokens, stop=tuple(gen.stop), seed=gen.seed + iteration + 15485863)
    dumped = cfg.model_dump()
    if not dumped["require_working"]:  # off: the hash of runs made before the option existed
        del dumped["require_working"]
    config = {"refine": dumped, "params": params.to_dict(), "score": [s.model_dump() for s in scorers],
              "backend": ctx.backend.identity()}
    versions = changed_versions(make_scorers(scorers, ctx.task))
    if versions:
        config["versions"] = versions
    if cfg.require_working and ctx.task.working_version != 1:  # the rule that drops refinements changed
        config["working_version"] = ctx.task.working_version
    sd = ctx.store.stage(iteration, "refine", config, {"prompts": prompts_sd.fingerprint, "scored": scored_sd.fingerprint,
                                                       "model": model.fingerprint})

    def work(sd: StageDir):
        prompts = {p["prompt_id"]: p for p in prompts_sd.rows()}
        scored = [dict(r, refined=False, parent_id=r.get("parent_id")) for r in scored_sd.rows()]
        chosen = picked(scored, cfg)
        requests, instructions = [], {}
        for s in chosen:
            messages, text = refine_messages(ctx, cfg, prompts[s["prompt_id"]], s)
            requests.append({"prompt_id": s["sample_id"], "messages": messages})
            instructions[s["sample_id"]] = text
        part = StageDir(sd.path / "generate", "refine_generate", {"params": params.to_dict()}, sd.inputs)  # shards only
        out = generate_sharded(ctx, part, requests, model, params, gen.shard_size * max(gen.n, 1), iteration, f"iter {iteration} refine")
        parent = {s["sample_id"]: s for s in chosen}
        new = []
        for row in out:
            p = parent[row["prompt_id"]]
            extra = ({"turn": 2, "revise_instruction": instructions[p["sample_id"]], "attempt": p["completion"]} if cfg.as_ == "revision"
                     else {"turn": 1})
            new.append(dict(row, prompt_id=p["prompt_id"], parent_id=p["sample_id"], refined=True,
                            sample_id=f"{p['sample_id']}/r{row['sample_id'].rsplit('/', 1)[1]}", **extra))
        without_working = 0
        if cfg.require_working:
            kept = [r for r in new if ctx.task.shows_working(r["completion"])]
            without_working, new = len(new) - len(kept), kept
        bound = ctx.models.bound_scorers(list(scorers), reachable(model), "score")
        rescored = score_samples(bound, ctx.task, prompts, new, f"iter {iteration} refine score", ctx.progress) if new else []
        rows = scored + rescored
        counts = {"picked": len(chosen), "refinements": len(rescored)}
        if cfg.require_working:
            counts["refinements_without_working"] = without_working
        if rescored and "correct" in rescored[0]:
            counts["refinements_correct"] = sum(r.get("correct") is True for r in rescored)
            counts["picked_correct"] = sum(s.get("correct") is True for s in chosen)  # a critic flagging right answers
            counts["prompts_solved_only_by_refinement"] = len({r["prompt_id"] for r in rescored if r.get("correct") is True}
                                                             - {r["prompt_id"] for r in scored if r.get("correct") is True})
        return rows, counts, {}

    return run_stage(ctx, iteration, sd, work)
