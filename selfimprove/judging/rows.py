"""Judge-job rows: reading a dataset of (prompt, response[, response_b][, reference][, label]) rows, turning
them into the prompt and sample rows scorers take, merging scorer columns back, and gold correctness."""

from __future__ import annotations

from ..config import JudgeJobConfig
from ..errors import ConfigError
from ..tasks.sources import field_value, load_split_rows

FIELDS = ("prompt", "response", "response_b", "reference", "label", "source", "source_b", "group")
REQUIRED = ("prompt", "response")


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
        res = task.check_detailed([task.normalize_reference(str(r["reference"])) for r in checkable], [r.get("answer") for r in checkable])
        for r, d in zip(checkable, res):
            r["correct"] = d["correct"]
