"""Verify stage (`verify:`): self-rewarding correction's sequential rejection sampling (Xiong et al. 2025). After
scoring, each first attempt gets `evaluations` self-evaluations (the attempt, then `prompts/self_verify` as the user's
turn; the reply ends in `[VERIFY] correct|wrong`, parsed, an unparsable one counted); after an evaluation that says
"wrong" the model revises (`prompts/correct_after_verify`): `revisions_wrong` times for a wrong attempt (after its
first evaluation that says so), `revisions_right` times for a right one (after the first evaluation that wrongly says
so). The revisions are scored with the run's scorers and appended as turn-2 rows, so the select stage's
`self_verify_trajectories` builder types each attempt's trajectory by gold.

Reads `prompts` and `scored` (with the gold verifier's `correct`); writes the scored table with `verify_texts`,
`verify_verdicts` and `verify_instruction` on each first attempt, plus the revisions (`turn` 2, `parent_id`,
`evaluation`: the self-evaluation they followed, `revise_instruction`). Counts: the self-verification rates per class
(right attempts judged right, wrong ones judged wrong), unparsed evaluations, revisions and how many are right. With
`templated_verdict`, an attempt none of whose evaluations gives the verdict needed gets the bare line (`templated`).
"""

from __future__ import annotations

from ...config import GenerateConfig, ScorerConfig
from ...config.verify import VerifyConfig
from ...generation import SamplingParams
from ...models import ModelRef, reachable
from ...prompts import after_attempt
from ...runtime.context import RunContext
from ...runtime.generate_shards import generate_sharded
from ...runtime.runner import run_stage
from ...scoring.apply import score_samples
from ...scoring.parsers import parse_self_verify
from ...store import StageDir

VERIFY_COLUMNS = ("verify_texts", "verify_verdicts", "verify_instruction", "evaluation", "refined", "parent_id")


def first_with(texts: list[str], verdicts: list[str | None], verdict: str, templated: bool = False) -> str | None:
    """The first evaluation with `verdict`; else, with `templated`, the bare line `[VERIFY] <verdict>`; else None."""
    return next((t for t, v in zip(texts, verdicts) if v == verdict), f"[VERIFY] {verdict}" if templated else None)


def verify_stage(ctx: RunContext, iteration: int, cfg: VerifyConfig, gen: GenerateConfig, scorers: list[ScorerConfig],
                 prompts_sd: StageDir, scored_sd: StageDir, model: ModelRef) -> StageDir:
    temperature = gen.temperature if cfg.temperature is None else cfg.temperature
    seed = gen.seed + iteration + 32452843
    eval_params = SamplingParams(n=cfg.evaluations, temperature=temperature, top_p=gen.top_p, max_tokens=cfg.max_tokens, stop=tuple(gen.stop),
                                 seed=seed)
    config = {"verify": cfg.model_dump(), "params": eval_params.to_dict(), "score": [s.model_dump() for s in scorers],
              "backend": ctx.backend.identity(), "generate": {"temperature": gen.temperature, "max_tokens": gen.max_tokens, "stop": list(gen.stop)}}
    sd = ctx.store.stage(iteration, "verify", config, {"prompts": prompts_sd.fingerprint, "scored": scored_sd.fingerprint,
                                                       "model": model.fingerprint})

    def work(sd: StageDir):
        prompts = {p["prompt_id"]: p for p in prompts_sd.rows()}
        verify_text, correct_text = ctx.prompts.render(cfg.template), ctx.prompts.render(cfg.correct_template)
        scored = [dict(r, refined=bool(r.get("refined")), parent_id=r.get("parent_id"), evaluation=None, verify_texts=None,
                       verify_verdicts=None, verify_instruction=None) for r in scored_sd.rows()]
        attempts = [r for r in scored if (r.get("turn") or 1) == 1 and isinstance(r.get("correct"), bool)]
        shard = gen.shard_size * max(gen.n, 1)
        asked = [{"prompt_id": a["sample_id"], "messages": after_attempt(prompts[a["prompt_id"]]["messages"], a["completion"], verify_text)}
                 for a in attempts]
        part = StageDir(sd.path / "evaluate", "verify_evaluate", {"params": eval_params.to_dict()}, sd.inputs)  # shards only
        evaluations: dict[str, list[str]] = {}
        for row in generate_sharded(ctx, part, asked, model, eval_params, shard, iteration, f"iter {iteration} self-evaluate"):
            evaluations.setdefault(row["prompt_id"], []).append(row["completion"])
        requests, context, counts = [], {}, {"attempts": len(attempts), "evaluations": 0, "unparsed": 0, "right_judged_right": 0,
                                             "right_evaluations": 0, "wrong_judged_wrong": 0, "wrong_evaluations": 0}
        for a in attempts:
            texts = evaluations.get(a["sample_id"], [])
            verdicts = [parse_self_verify(t).value for t in texts]
            a.update(verify_texts=texts, verify_verdicts=verdicts, verify_instruction=verify_text)
            counts["evaluations"] += len(texts)
            counts["unparsed"] += sum(v is None for v in verdicts)
            kind = "right" if a["correct"] else "wrong"
            counts[f"{kind}_evaluations"] += len(verdicts)
            counts[f"{kind}_judged_{kind}"] += sum(v == ("correct" if a["correct"] else "wrong") for v in verdicts)
            if cfg.templated_verdict and a["correct"] and "correct" not in verdicts:  # the confirmation D3 trains on
                a.update(verify_texts=texts + ["[VERIFY] correct"], verify_verdicts=verdicts + ["correct"])
                counts["templated_correct"] = counts.get("templated_correct", 0) + 1
            k = cfg.revisions_right if a["correct"] else cfg.revisions_wrong
            said_wrong = first_with(texts, verdicts, "wrong", cfg.templated_verdict and k > 0)
            if k and said_wrong is not None and "wrong" not in verdicts:
                counts["templated_wrong"] = counts.get("templated_wrong", 0) + 1
            if said_wrong is None or k == 0:
                continue
            msgs = after_attempt(after_attempt(prompts[a["prompt_id"]]["messages"], a["completion"], verify_text), said_wrong, correct_text)
            for j in range(k):
                requests.append({"prompt_id": f"{a['sample_id']}#{j}", "messages": msgs})
            context[a["sample_id"]] = (a, said_wrong)
        rev_params = SamplingParams(n=1, temperature=temperature, top_p=gen.top_p, max_tokens=cfg.revision_max_tokens or gen.max_tokens,
                                    stop=tuple(gen.stop), seed=seed + 1)
        part = StageDir(sd.path / "revise", "verify_revise", {"params": rev_params.to_dict()}, sd.inputs)  # shards only
        new = []
        for row in generate_sharded(ctx, part, requests, model, rev_params, shard, iteration, f"iter {iteration} self-correct"):
            parent_id, j = row["prompt_id"].rsplit("#", 1)
            a, said_wrong = context[parent_id]
            new.append(dict(row, prompt_id=a["prompt_id"], parent_id=parent_id, sample_id=f"{parent_id}/v{j}", turn=2, refined=True,
                            evaluation=said_wrong, revise_instruction=correct_text, attempt=a["completion"],
                            verify_texts=None, verify_verdicts=None, verify_instruction=verify_text))
        bound = ctx.models.bound_scorers(list(scorers), reachable(model), "score")
        rescored = score_samples(bound, ctx.task, prompts, new, f"iter {iteration} self-correct score", ctx.progress) if new else []
        counts.update(revisions=len(rescored), revisions_right=sum(r.get("correct") is True for r in rescored),
                      verify_true_positive_rate=round(counts["right_judged_right"] / counts["right_evaluations"], 4) if counts["right_evaluations"] else None,
                      verify_true_negative_rate=round(counts["wrong_judged_wrong"] / counts["wrong_evaluations"], 4) if counts["wrong_evaluations"] else None)
        return scored + rescored, counts, {}

    return run_stage(ctx, iteration, sd, work)
