"""`selfimprove judge`: score a dataset of (prompt, response[, response_b][, reference][, label]) rows with
a judge (LLM judge, P(True), log-likelihood, reward model), sharded and resumable.

Output folder: `results/table.parquet` (written in shards first; one row per input row: its fields, every
scorer's columns for `response`, the same with suffix `_b` for `response_b`, `verdict`/`flipped` for
pairwise jobs, `correct` where a label or reference exists, `errors`), `summary.json` / `summary.md`, and
`request_cache.sqlite` (every model answer, so a killed job never asks twice).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from .config import BackendConfig, ConfigError, ScorerConfig, SplitConfig, Strict, TaskConfig, load_config, plain_name
from .judge_diagnostics import PASS_THRESHOLD
from .scoring import make_scorers
from .stages.context import RunContext, Timer
from .stages.score import score_rows
from .store import StageDir, atomic_write_bytes, atomic_write_json, stable_hash
from .suite import DEFAULT_MODEL
from .tasks import make_task
from .tasks.math import gold_answer
from .tasks.sources import field_value, load_split_rows

FIELDS = ("prompt", "response", "response_b", "reference", "label", "source", "source_b", "group")
REQUIRED = ("prompt", "response")


class DiagnoseConfig(Strict):
    pass_threshold: float = Field(PASS_THRESHOLD, description="Pointwise: a judge score >= this counts as judged good (for kappa vs gold).")
    other_judge: str | None = Field(None, description="Self-preference: a second judge (model reference) for the same rows.")
    other_backend: BackendConfig | None = Field(None, description="Backend of the other judge (default: the job's).")
    policy_source: str | None = Field(None, description="Self-preference: the `source` value that marks the judge's own responses.")


class JudgeJobConfig(Strict):
    """A judge job: which model judges, with which scorers, over which rows."""

    name: str
    description: str | None = None
    model: str = Field(DEFAULT_MODEL, description="The judge (scorers with `judge: policy` use it).")
    backend: BackendConfig = Field(default_factory=BackendConfig)
    task: TaskConfig = Field(default_factory=lambda: TaskConfig(name="freeform"), description="How answers are extracted and checked against `reference`.")
    input: SplitConfig = Field(default_factory=SplitConfig, description="Rows to judge (overridden by --input); `fields` maps prompt/response/response_b/reference/label/source/group.")
    scorers: list[ScorerConfig] = Field(description="pointwise_judge, pairwise_judge, meta_judge, p_true, self_loglik, reward_model.")
    shard_size: int = Field(64, gt=0)
    output_dir: str = "judge_runs"
    prompts_dir: str | None = None
    diagnose: DiagnoseConfig = Field(default_factory=DiagnoseConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return plain_name(v)


def load_job(path: str | Path, overrides: list[str] | None = None) -> JudgeJobConfig:
    """Read a judge job YAML, apply `--set` overrides, validate (no model, no data touched)."""
    return load_config(path, JudgeJobConfig, overrides)


def read_rows(cfg: JudgeJobConfig) -> list[dict]:
    """Input rows mapped to the judge fields; missing required fields fail naming the row and columns."""
    unknown = set(cfg.input.fields) - set(FIELDS)
    if unknown:
        raise ConfigError(f"input.fields: unknown field(s) {sorted(unknown)}; known: {list(FIELDS)}")
    fields = {f: cfg.input.fields.get(f, f) for f in FIELDS}
    out = []
    for i, raw in enumerate(load_split_rows(cfg.input, "input")):
        row = {"row": i}
        for f, col in fields.items():
            if f in REQUIRED or f in cfg.input.fields or all(c in raw for c in col.split("+")):
                row[f] = field_value(raw, col, f"input.fields.{f}", i)
        for f in REQUIRED:
            if not isinstance(row.get(f), str):
                raise ConfigError(f"input: row {i}: `{f}` must be text, got {type(row.get(f)).__name__}")
        out.append(row)
    return out


def prompt_and_samples(rows: list[dict]) -> tuple[dict[str, dict], list[dict]]:
    prompts, samples = {}, []
    for r in rows:
        pid = f"row{r['row']}"
        prompts[pid] = {"prompt_id": pid, "question": r["prompt"], "reference": str(r.get("reference") or ""),
                        "messages": [{"role": "user", "content": r["prompt"]}], "meta": "{}"}
        samples.append({"prompt_id": pid, "sample_id": f"{pid}/a", "completion": r["response"]})
        if r.get("response_b") is not None:
            samples.append({"prompt_id": pid, "sample_id": f"{pid}/b", "completion": str(r["response_b"])})
    return prompts, samples


def merge(rows: list[dict], scored: list[dict], scorer_columns: list[str]) -> list[dict]:
    """One output row per input row: scorer columns of response (and `_b` of response_b), pairwise verdict."""
    by_sample = {s["sample_id"]: s for s in scored}
    out = []
    for r in rows:
        a = by_sample[f"row{r['row']}/a"]
        o = dict(r, answer=a.get("answer"), errors=a.get("scorer_errors", ""))
        for c in scorer_columns:
            o[c] = a.get(c)
        b = by_sample.get(f"row{r['row']}/b")
        if b is not None:
            o["answer_b"] = b.get("answer")
            for c in scorer_columns:
                o[f"{c}_b"] = b.get(c)
            if "pair_win_rate" in a:
                w = a.get("pair_win_rate")
                o["verdict"] = None if w is None else ("A" if w == 1.0 else "B" if w == 0.0 else "tie")
                o["flipped"] = bool(a.get("pair_flips"))
            if b.get("scorer_errors"):
                o["errors"] = "; ".join(x for x in (o["errors"], f"response_b: {b['scorer_errors']}") if x)
        out.append(o)
    return out


def add_correctness(task, rows: list[dict]) -> None:
    """`correct` from a label column (bool, 0/1, yes/no, correct/incorrect) or by checking the answer against `reference`."""
    labelled = [r for r in rows if r.get("label") is not None]
    for r in labelled:
        v = r["label"]
        r["correct"] = bool(v) if isinstance(v, (bool, int, float)) else str(v).strip().lower() in ("1", "true", "yes", "correct", "good")
    checkable = [r for r in rows if r.get("label") is None and r.get("reference") not in (None, "")]
    if checkable:
        res = task.check([gold_answer(str(r["reference"])) for r in checkable], [r.get("answer") for r in checkable])
        for r, (ok, _err) in zip(checkable, res):
            r["correct"] = ok


def run_job(cfg: JudgeJobConfig, console, *, output: Path | None = None, diagnose: bool = False) -> tuple[dict, Path]:
    """Judge every row (resuming finished shards), then write the table and the summary (and diagnostics)."""
    from .judge_diagnostics import diagnostics, summarize, summary_markdown
    from .prompts import PromptLibrary

    prompts_lib = PromptLibrary(cfg.prompts_dir)
    task = make_task(cfg.task, prompts_lib)
    scorers = make_scorers(cfg.scorers, task)
    rows = read_rows(cfg)
    if any(s.name == "pairwise_judge" for s in scorers) and not all(r.get("response_b") is not None for r in rows):
        raise ConfigError("pairwise_judge needs `response_b` in every row (input.fields.response_b names its column)")
    root = Path(output) if output else Path(cfg.output_dir) / cfg.name
    ctx = RunContext(cfg, task, prompts_lib, console, root=root)
    policy = ctx.base_model()
    columns = [c for s in scorers for c in s.output_columns]
    config = {"scorers": [s.model_dump() for s in cfg.scorers], "task": cfg.task.model_dump(), "backend": cfg.backend.model_dump(), "shard_size": cfg.shard_size}
    sd = StageDir(root / "results", "judge", config, {"rows": stable_hash(rows), "model": policy.fingerprint})  # a subfolder: a changed config clears only it
    if not sd.is_complete():
        timer = Timer()
        sd.begin()
        shards = [rows[i : i + cfg.shard_size] for i in range(0, len(rows), cfg.shard_size)]
        done = sum(len(s) for i, s in enumerate(shards) if sd.has_shard(i))
        if done:
            console.print(f"[dim]resuming {cfg.name}: {done}/{len(rows)} rows already judged[/dim]")
        try:
            for i, shard in enumerate(shards):
                if sd.has_shard(i):
                    continue
                prompts, samples = prompt_and_samples(shard)
                scored = score_rows(ctx, scorers, prompts, samples, f"{cfg.name} rows {i * cfg.shard_size}-{i * cfg.shard_size + len(shard)}", policy)
                out = merge(shard, scored, columns)
                add_correctness(task, out)
                sd.write_shard(i, out)
        finally:
            ctx.release_generator()
        table = sd.read_shards()
        summary = summarize(table)
        sd.finish_table(table, counts={"rows": len(table), "requests": ctx.request_cache.misses, "cached": ctx.request_cache.hits},
                        seconds=timer.seconds, extra={"summary": summary})
    table = sd.rows()
    summary = dict(sd.manifest()["summary"])
    if diagnose:
        summary["diagnostics"] = diagnostics(ctx, cfg, task, table, policy)
    summary.update(job=cfg.name, judge_model=cfg.model, rows=len(table))
    atomic_write_json(root / "summary.json", summary)
    atomic_write_bytes(root / "summary.md", summary_markdown(summary).encode())
    return summary, root
