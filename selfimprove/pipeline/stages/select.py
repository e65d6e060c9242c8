"""Select stage: filter scored samples (`select:` filters) and build training rows with the configured row builder
(`select.builder`, default sft: `prompt`, `completion`, `messages`, `weight`, lineage)."""

from __future__ import annotations

import json

from ...builders import RowBuilder
from ...builders.mixed import make_select_builder
from ...config import SelectConfig
from ...runtime.context import RunContext
from ...runtime.runner import run_stage
from ...selection import select_samples
from ...store import StageDir


def gold_sft_rows(ctx: RunContext, g, prompts: dict[str, dict]) -> list[dict]:
    """SFT rows of the task's own solutions: the first `g.size` train prompts (by id) with a gold answer, the reply
    rendered by `g.template` from question, reference, answer and the prompt's meta fields (GSM8K's `solution`)."""
    ids = sorted(pid for pid, p in prompts.items() if p.get("reference") not in (None, ""))
    rows = []
    for pid in ids[: g.size] if g.size is not None else ids:
        p = prompts[pid]
        meta = json.loads(p["meta"]) if isinstance(p.get("meta"), str) and p["meta"] else {}
        reply = [{"role": "assistant", "content": ctx.prompts.render(g.template, **{**meta, "question": p.get("question"),
                                                                                    "reference": p["reference"], "answer": p["reference"]})}]
        rows.append({"prompt_id": pid, "sample_id": f"{pid}/gold", "prompt": list(p["messages"]), "completion": reply,
                     "messages": list(p["messages"]) + reply, "weight": 1.0, "model_ref": "gold"})
    return rows


def select_stage(ctx: RunContext, iteration: int, cfg: SelectConfig, seed: int, prompts_sd: StageDir, scored_sd: StageDir,
                 earlier: list[StageDir], builder: RowBuilder | None = None) -> StageDir:
    """Reads `prompts` and `scored`; writes the train set. `earlier` holds previous iterations' select stages, whose
    rows come first with `select.accumulate`. `seed` drives the per-prompt caps; `builder`: the one the plan built
    (default: made from `select.builder`)."""
    builder = builder or make_select_builder(cfg)
    accumulate = cfg.accumulate
    inputs = {"prompts": prompts_sd.fingerprint, "scored": scored_sd.fingerprint}
    if accumulate:
        inputs.update({f"select_{i}": e.fingerprint for i, e in enumerate(earlier)})
    config = {"select": cfg.model_dump(), "seed": seed, "builder": builder.identity()}
    sd = ctx.store.stage(iteration, "select", config, inputs)

    def work(sd: StageDir):
        prompts = {p["prompt_id"]: p for p in prompts_sd.rows()}
        scored = scored_sd.rows()
        kept, counts = select_samples(scored, cfg, seed)
        rows, built = builder.build(kept, prompts)
        counts.update({k: v for k, v in built.items() if k != "rows"})
        counts["rows_this_iteration"] = len(rows)
        # the stage's own yield: prompts scored, prompts with a row; why the others have none (a filter emptied them,
        # or the builder's declared reasons)
        counts["prompts_in"] = len({s["prompt_id"] for s in scored})
        counts["prompts_with_rows"] = len({r["prompt_id"] for r in rows if "prompt_id" in r})
        report = builder.yield_report(built)
        emptied = {k[len("prompts_emptied_by_"):]: v for k, v in counts.items() if k.startswith("prompts_emptied_by_")}
        report["skipped"] = {**{f"filter {k}": v for k, v in emptied.items()}, **report["skipped"]}
        report["reasons"] = {**{f"filter {k}": f"the select filter `{k}` removed every sample of the prompt" for k in emptied},
                             **report.get("reasons", {})}
        report["units"] = {**{f"filter {k}": "prompts" for k in emptied}, **report.get("units", {})}
        if cfg.gold_rows is not None:
            gold = gold_sft_rows(ctx, cfg.gold_rows, prompts)
            counts["gold_rows"] = len(gold)
            rows = rows + gold
        if accumulate:
            for e in earlier:  # an earlier iteration's gold rows are this one's again: once each
                rows = [r for r in e.rows() if cfg.gold_rows is None or r.get("model_ref") != "gold"] + rows
        counts["rows"] = len(rows)
        return rows, counts, {"yield": report, "builder": builder.name}

    return run_stage(ctx, iteration, sd, work)
