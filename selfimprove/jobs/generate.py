"""`selfimprove generate`: n samples per input row from any backend, sharded and resumable by the shared runner
(on Ray workers with `ray:`), then a summary: tokens, finish reasons, throughput. The companion of `selfimprove judge`.

Output folder: `samples/table.parquet` (one row per sample: the input row's columns, then `row`, `id`, `sample`,
`completion`, `num_tokens`, `logprob_sum`, `finish_reason`, `model_ref`, `sampling`), built from `generation/shards/`
(written as each shard finishes; keyed on the prompts, so editing another input column only rebuilds the table),
`summary.json` and `summary.md`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import jinja2

from ..config import GenerateJobConfig, TaskConfig
from ..errors import ConfigError
from ..generation import check_backend
from ..prompts import PromptLibrary
from ..runtime.context import RunContext
from ..runtime.generate_shards import generate_sharded
from ..runtime.runner import run_stage
from ..store import StageDir, atomic_write_bytes, atomic_write_json, stable_hash
from ..tasks import make_task
from ..tasks.sources import field_value, load_split_rows

FIELDS = ("prompt", "messages", "system", "id")
OUTPUT_COLUMNS = ("row", "id", "sample", "completion", "num_tokens", "logprob_sum", "finish_reason", "model_ref", "sampling")


def request_rows(cfg: GenerateJobConfig, prompts: PromptLibrary) -> list[dict]:
    """Input rows as chat requests (`prompt_id`, `messages`, `row`, `input`); a bad row fails naming its index and field."""
    unknown = set(cfg.input.fields) - set(FIELDS)
    if unknown:
        raise ConfigError(f"input.fields: unknown field(s) {sorted(unknown)}; known: {list(FIELDS)}")
    col = {f: cfg.input.fields.get(f, f) for f in FIELDS}
    prompts.require(cfg.template, "template")
    out, seen = [], set()
    for i, raw in enumerate(load_split_rows(cfg.input, "input")):
        index = raw.get("_row_index", i)  # the row's number in the input (before input.shuffle / input.size)
        raw = {k: v for k, v in raw.items() if k != "_row_index"}
        clash = sorted(set(raw) & set(OUTPUT_COLUMNS) - ({"id"} if col["id"] == "id" else set()))  # an `id` column is the id
        if clash:
            raise ConfigError(f"input: row {i}: column(s) {clash} would be overwritten by the output's own; rename them in the input "
                              "(re-sampling an earlier output: keep only the prompt and id columns)")
        if "messages" in cfg.input.fields or (cfg.template is None and "prompt" not in cfg.input.fields and col["messages"] in raw
                                              and col["prompt"] not in raw):
            messages = field_value(raw, col["messages"], "input.fields.messages", i)
            if not (isinstance(messages, list) and messages and all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in messages)):
                raise ConfigError(f"input: row {i}: `messages` must be a non-empty list of {{role, content}} messages")
            messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        else:
            if cfg.template is not None:
                try:
                    text = prompts.render(cfg.template, **raw)
                except jinja2.UndefinedError as e:
                    raise ConfigError(f"input: row {i}: template {cfg.template!r}: {e} (columns: {sorted(raw)})") from None
            else:
                text = field_value(raw, col["prompt"], "input.fields.prompt", i)
            if not isinstance(text, str) or not text.strip():
                raise ConfigError(f"input: row {i}: the prompt must be non-empty text, got {text!r:.60}")
            messages = [{"role": "user", "content": text}]
        system = raw.get(col["system"]) if col["system"] in raw else cfg.system
        if system and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": str(system)}] + messages
        rid = str(field_value(raw, col["id"], "input.fields.id", i)) if ("id" in cfg.input.fields or col["id"] in raw) else f"row{index}"
        if rid in seen:
            raise ConfigError(f"input: row {i}: id {rid!r} is not unique (input.fields.id names the id column)")
        seen.add(rid)
        out.append({"prompt_id": rid, "messages": messages, "row": index, "input": raw})
    return out


def summarize(rows: list[dict], seconds: float, fresh_tokens: int, fresh_samples: int) -> dict:
    """Counts over every sample; throughput over the samples made in this run (a resumed job's older shards took no time now)."""
    tokens = sum(r["num_tokens"] for r in rows)
    return {
        "rows": len({r["row"] for r in rows}),
        "samples": len(rows),
        "tokens": tokens,
        "mean_tokens": round(tokens / len(rows), 1) if rows else 0.0,
        "finish_reasons": dict(Counter(r["finish_reason"] for r in rows)),
        "seconds": round(seconds, 2),
        "samples_this_run": fresh_samples,
        "tokens_per_s": round(fresh_tokens / seconds, 1) if seconds > 0 else None,
        "samples_per_s": round(fresh_samples / seconds, 2) if seconds > 0 else None,
    }


def summary_markdown(s: dict) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(s["finish_reasons"].items()))
    lines = [f"# generate job `{s['job']}`: {s['model']}", "", "| | |", "|---|---|", f"| rows | {s['rows']} |", f"| samples | {s['samples']} |",
             f"| tokens (mean per sample) | {s['tokens']} ({s['mean_tokens']}) |", f"| finish reasons | {reasons} |",
             f"| seconds | {s['seconds']} |", f"| throughput | {s['tokens_per_s']} tokens/s, {s['samples_per_s']} samples/s "
             f"({s['samples_this_run']} samples made in this run) |"]
    return "\n".join(lines) + "\n"


def run_generate_job(cfg: GenerateJobConfig, console, *, output: Path | None = None) -> tuple[dict, Path]:
    """Sample every row (resuming finished shards), then write the table and the summary."""
    prompts = PromptLibrary(cfg.prompts_dir)
    check_backend(cfg.backend)
    requests = request_rows(cfg, prompts)
    params = cfg.sampling.params()
    root = Path(output) if output else Path(cfg.output_dir) / cfg.name
    ctx = RunContext(root, make_task(TaskConfig(name="freeform"), prompts), prompts, model=cfg.model, backend=cfg.backend, console=console,
                     ray=cfg.ray)
    model = ctx.models.base_model()
    config = {"sampling": params.to_dict(), "backend": cfg.backend.identity(), "shard_size": cfg.shard_size}
    # the samples' shards depend on the prompts only (keyed on them, beside the table); the table also on the input's
    # other columns, so an edited column rebuilds the table from the same shards
    shards = StageDir(root / "generation", "generate_job_shards", config, {"requests": stable_hash([[r["prompt_id"], r["messages"]] for r in requests]),
                                                                            "model": model.fingerprint})
    sd = StageDir(root / "samples", "generate_job", config, {"rows": stable_hash([[r["prompt_id"], r["messages"], r["row"], r["input"]] for r in requests]),
                                                              "model": model.fingerprint})
    by_id = {r["prompt_id"]: r for r in requests}

    def work(sd: StageDir):
        if not shards.is_complete():
            shards.begin()  # keeps the shards made for these prompts with this config
        position = {r["prompt_id"]: i for i, r in enumerate(requests)}
        before = {i for i in range(0, -(-len(requests) // cfg.shard_size)) if shards.has_shard(i)}
        samples = generate_sharded(ctx, shards, [{"prompt_id": r["prompt_id"], "messages": r["messages"]} for r in requests], model, params,
                                   cfg.shard_size, 0, cfg.name)
        shards.finish(output_fingerprint=stable_hash([s["sample_id"] for s in samples]), counts={"samples": len(samples)}, seconds=0)
        table, fresh_tokens, fresh = [], 0, 0
        for s in samples:
            req = by_id[s["prompt_id"]]
            table.append({**req["input"], "row": req["row"], "id": req["prompt_id"], "sample": int(s["sample_id"].rsplit("/s", 1)[1]),
                          **{k: s[k] for k in OUTPUT_COLUMNS[3:]}})
            if position[s["prompt_id"]] // cfg.shard_size not in before:
                fresh, fresh_tokens = fresh + 1, fresh_tokens + s["num_tokens"]
        return table, {"rows": len(requests), "samples": len(table)}, {"fresh": [fresh_tokens, fresh]}

    skipped = sd.is_complete()
    try:
        run_stage(ctx, None, sd, work)
    finally:
        ctx.close()
    m = sd.manifest()
    table = sd.rows()
    summary = summarize(table, 0.0, 0, 0) if skipped else summarize(table, m["seconds"], *m.get("fresh", [0, 0]))
    summary.update(job=cfg.name, model=cfg.model, backend=cfg.backend.name, sampling=params.to_dict())
    atomic_write_json(root / "summary.json", summary)
    atomic_write_bytes(root / "summary.md", summary_markdown(summary).encode())
    return summary, root
