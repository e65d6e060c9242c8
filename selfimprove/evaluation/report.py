"""Run summary and HTML report, rebuilt from the run directory's manifests at any time.

`summary.json`: per iteration the held-out metrics (each with `<name>_ci`), every stage's
counts and seconds, and `heldout` (train/eval overlap). `report.html`: accuracy-per-iteration plot
(also `accuracy.png`) and tables.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ..config.schedule import describe, normalise, values_at
from ..scoring.base import describe_parse_failures
from ..store import MANIFEST, atomic_write_bytes, atomic_write_json, read_json
from .metrics import format_metric
from .report_control import (  # noqa: F401 (re-exported)  # noqa: F401
    CONTROL_HEADERS,
    TEST_NOTE,
    control_html,
    control_line,
    control_rows,
    control_summary,
    health_plot,
    health_rows,
    training_curves_plot,
)
from .report_html import png as _png
from .report_html import table as _table

STAGE_ORDER = ["train_prompts", "eval_prompts", "dev_prompts", "generate", "score", "select", "train", "eval", "dev", "probe", "control"]
HEADLINE = ["accuracy", "pass@1", "maj@4", "maj@8", "pass@4", "pass@8"]


def _manifests(folder: Path) -> dict[str, dict]:
    out = {}
    for p in sorted(folder.glob(f"*/{MANIFEST}")):
        m = read_json(p)
        if m.get("status") == "complete":
            out[p.parent.name] = m
    return dict(sorted(out.items(), key=lambda kv: STAGE_ORDER.index(kv[0]) if kv[0] in STAGE_ORDER else 99))


def _stage_entry(m: dict, skipped: bool | None) -> dict:
    entry = {"seconds": m.get("seconds"), "counts": m.get("counts", {})}
    if skipped is not None:
        entry["skipped_this_run"] = skipped
    for key in ("train", "monitors", "yield", "builder", "judge", "heldout", "health", "decision"):
        if key in m:
            entry[key] = m[key]
    return entry


def build_summary(root: Path, reports=None) -> dict:
    """Collect every finished stage's manifest under `root` into one JSON-able dict."""
    root = Path(root)
    skipped = {(r.iteration, r.stage): r.skipped for r in (reports or [])}
    cfg = read_json(root / "config.json") if (root / "config.json").exists() else {}
    summary: dict = {"name": cfg.get("name", root.name), "model": cfg.get("model"), "task": (cfg.get("task") or {}).get("name")}
    summary["data"] = {k: _stage_entry(m, skipped.get((None, k))) for k, m in _manifests(root / "data").items()}
    summary["heldout"] = heldout_summary(summary["data"])
    iters = []
    last = cfg.get("iterations")
    schedule = normalise(cfg["schedule"], last or 0) if cfg.get("schedule") else None
    for d in sorted(root.glob("iter_*"), key=lambda p: int(p.name.split("_")[1])):
        k = int(d.name.split("_")[1])
        if last is not None and k > last:  # left over from an earlier run with more iterations
            continue
        ms = _manifests(d)
        entry: dict = {"iteration": k, "model_ref": cfg.get("model") if k == 0 else f"iter_{k}", "stages": {}}
        if k > 0 and schedule:
            entry["schedule"] = values_at(schedule, k)
        for stage, m in ms.items():
            entry["stages"][stage] = _stage_entry(m, skipped.get((k, stage)))
            if stage == "eval":
                entry["metrics"] = m.get("metrics", {})
            if stage == "dev":
                entry["dev"] = m.get("metrics", {})
            if stage == "probe":
                entry["health"] = m.get("health", {})
            if stage == "control":
                entry["decision"] = m.get("decision", {})
            if stage == "search":  # B-STaR: what the iteration ran with, chosen by balance score on a slice
                entry["search"] = {"chosen": m.get("chosen"), **(m.get("counts") or {})}
        iters.append(entry)
        if (entry.get("decision") or {}).get("stop"):  # the run ended here: later folders are an earlier run's
            break
    summary["iterations"] = iters
    summary["control"] = control_summary(root, cfg, iters)
    summary["total_seconds"] = round(
        sum(s["seconds"] or 0 for s in summary["data"].values())
        + sum(s["seconds"] or 0 for it in iters for s in it["stages"].values()),
        1,
    )
    return summary


def heldout_summary(data: dict) -> dict | None:
    """The train_prompts stage's held-out check: overlap counts and how problems were compared (None for runs made before it)."""
    tp = data.get("train_prompts") or {}
    overlap = (tp.get("counts") or {}).get("heldout_overlap")
    return None if overlap is None else {**overlap, **(tp.get("heldout") or {})}


def heldout_html(summary: dict) -> str:
    """One paragraph on the held-out check; a highlighted warning when train and eval overlapped."""
    h = summary.get("heldout")
    if not h:
        return "<p>Held-out check: not recorded (train prompts made by an older version).</p>"
    how = html.escape(f"compared by {h.get('compared_by', '?')}; {h.get('handling', '')}")
    if h["train_rows_dropped"]:
        return (f'<p style="background:#fff3cd;padding:6px"><b>Warning: held-out overlap.</b> {h["train_rows_dropped"]} '
                f'train row(s) asked one of {h["eval_problems"]} eval problem(s) and were dropped from training ({how}).</p>')
    return f"<p>Held-out check: no train prompt is an eval problem ({how}).</p>"


def metric_names(summary: dict) -> list[str]:
    names: list[str] = []
    for it in summary["iterations"]:
        for k, v in (it.get("metrics") or {}).items():
            if isinstance(v, float) and not k.endswith("_ci") and k not in names:
                names.append(k)
    return sorted(names, key=lambda n: (HEADLINE.index(n) if n in HEADLINE else 50, n))


def accuracy_plot(summary: dict) -> bytes | None:
    """PNG of held-out metrics per iteration with 95% interval bars (iteration 0 = base model)."""
    its = [it for it in summary["iterations"] if it.get("metrics")]
    if not its:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    for name in [n for n in metric_names(summary) if n in ("accuracy", "pass@1") or n.startswith("maj@")][:3]:
        xs, ys, lo, hi = [], [], [], []
        for it in its:
            m = it["metrics"]
            if name in m:
                xs.append(it["iteration"])
                ys.append(100 * m[name])
                ci = m.get(f"{name}_ci", [m[name], m[name]])
                lo.append(100 * (m[name] - ci[0]))
                hi.append(100 * (ci[1] - m[name]))
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=4, label=name)
    ax.set_xlabel("iteration (0 = base model)")
    ax.set_ylabel("held-out %")
    ax.set_xticks([it["iteration"] for it in its])
    ax.set_title(f"{summary['name']}: held-out metrics (95% bootstrap CI)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)



def metrics_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    """One row per evaluated iteration: its model, its metrics, and (where `schedule:` set any) its scheduled values."""
    names = metric_names(summary)
    scheduled = any(it.get("schedule") or it.get("search") for it in summary["iterations"])
    rows = []
    for it in summary["iterations"]:
        m = it.get("metrics") or {}
        if not m:
            continue
        searched = it.get("search") or {}
        parts = [f"{k}={v}" for k, v in (it.get("schedule") or {}).items()]
        if searched.get("chosen"):
            parts.append(f"search (balance score {searched.get('balance_score')}): {describe(searched['chosen'])}")
        sched = ["; ".join(parts)] if scheduled else []
        cells = [format_metric(m[n], m.get(f"{n}_ci")) if isinstance(m.get(n), (int, float)) else "" for n in names]
        rows.append([str(it["iteration"]), it["model_ref"] or ""] + cells + sched)
    return ["iteration", "model"] + names + (["settings (schedule, search)"] if scheduled else []), rows


def stage_rows(summary: dict) -> list[list[str]]:
    rows = []
    for name, s in summary["data"].items():
        rows.append(["data", name, f"{s['seconds'] or 0:.1f}", _counts(s["counts"])])
    for it in summary["iterations"]:
        for name, s in it["stages"].items():
            rows.append([str(it["iteration"]), name, f"{s['seconds'] or 0:.1f}", _counts(s["counts"])])
    return rows


def judge_rows(summary: dict) -> list[list[str]]:
    """Per iteration, for every score column the scorers declared (their summaries in the score stage's manifest):
    its mean and its drift since the first judged iteration, parse failures per scorer, the pairwise flip rate,
    each column's rank correlation with length, and its agreement with the gold verifier (kappa where it has a pass
    threshold, AUROC)."""
    fmt = lambda v, p=3: "" if v is None else f"{v:.{p}f}"  # noqa: E731
    rows, first = [], {}
    for it in summary["iterations"]:
        j = (it["stages"].get("score") or {}).get("judge")
        if not j:
            continue
        means = []
        for col, d in (j.get("scores") or {}).items():
            mean = d.get("mean")
            first.setdefault(col, mean)
            drift = "" if mean is None or first[col] is None or first[col] == mean else f" ({mean - first[col]:+.3f})"
            means.append(f"{col} {fmt(mean)}{drift}")
        length = [f"{k.replace('_vs_length_spearman', '')} {fmt(v)}" for k, v in (j.get("length_bias") or {}).items()
                  if k.endswith("_vs_length_spearman")]
        agree = [f"{col} " + ", ".join(x for x in (f"kappa {fmt(d['kappa'])}" if "kappa" in d else "", f"AUROC {fmt(d.get('auroc'))}",
                                                   f"ECE {fmt(d['ece'])}, Brier {fmt(d['brier'])}" if "ece" in d else "") if x)
                 for col, d in (j.get("agreement_with_gold") or {}).items() if isinstance(d, dict)]
        rows.append([str(it["iteration"]), "; ".join(means),
                     describe_parse_failures(j),
                     fmt((j.get("position_bias") or {}).get("flip_rate")), "; ".join(length), "; ".join(agree)])
    return rows


def signal_rows(summary: dict) -> list[list[str]]:
    """Per iteration, what training learned from: the row builder's yield (prompts in, with rows, and why the others
    gave none: the reasons the builder declares), its gold audit of label-free signals (the keys the builder
    declares), and the training monitors the trainer declares."""
    fmt = lambda v: "" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    rows = []
    for it in summary["iterations"]:
        select = it["stages"].get("select") or {}
        sel = select.get("counts") or {}
        train_stage = it["stages"].get("train") or {}
        train = train_stage.get("train") or {}
        if not sel and not train:
            continue
        yld = select.get("yield") or {}
        why = ", ".join(f"{k} {v}" for k, v in (yld.get("skipped") or {}).items())
        audit = ", ".join(f"{k} {fmt(v)}" for k, v in (yld.get("audit") or {}).items())
        with_rows = sel.get("prompts_with_rows", sel.get("prompts_with_pairs"))  # runs made before the stage counted it
        rows.append([str(it["iteration"]), fmt(sel.get("prompts_in")), fmt(with_rows), fmt(sel.get("rows_this_iteration", sel.get("rows"))),
                     why, audit, fmt(train.get("steps")), fmt(train.get("train_loss")), "; ".join(train_stage.get("monitors") or [])])
    return rows


SIGNAL_HEADERS = ["iteration", "prompts in", "prompts with rows", "rows", "no row because", "gold audit", "train steps", "train loss",
                  "monitors"]


JUDGE_HEADERS = ["iteration", "mean score (drift vs first)", "parse failures", "pairwise flip rate", "score~length (Spearman)",
                 "agreement with gold"]



def _counts(c: dict, prefix: str = "") -> str:
    """`k=v, ...`; nested counts are flattened (`heldout_overlap.train_rows_dropped=0`)."""
    parts = (_counts(v, f"{prefix}{k}.") if isinstance(v, dict) else f"{prefix}{k}={v}" for k, v in c.items() if v is not None)
    return ", ".join(p for p in parts if p)


def write_report(root: Path, summary: dict) -> Path:
    """Write summary.json, accuracy.png and report.html into the run folder; returns the HTML path."""
    root = Path(root)
    atomic_write_json(root / "summary.json", summary)
    png = accuracy_plot(summary)
    img = ""
    if png:
        atomic_write_bytes(root / "accuracy.png", png)
        img = f'<img alt="held-out accuracy per iteration" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
    mh, mr = metrics_rows(summary)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>selfimprove: {html.escape(summary['name'])}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;font-size:14px;text-align:left}}th{{background:#f3f3f3}}code{{background:#f6f6f6}}</style></head><body>
<h1>Run <code>{html.escape(summary['name'])}</code></h1>
<p>model <code>{html.escape(str(summary.get('model')))}</code>, task <code>{html.escape(str(summary.get('task')))}</code>,
stage time {summary['total_seconds']} s. Metrics in %, ± half the 95% bootstrap interval over problems.</p>
{control_html(summary)}
{img}
<h2>Held-out metrics per iteration (the test set: reported, never used to choose)</h2>{_table(mh, mr)}
{heldout_html(summary)}
{"<h2>Training signal</h2><p>Label-free signals are audited against gold answers where they exist; the audit never feeds "
 "training.</p>" + _table(SIGNAL_HEADERS, signal_rows(summary)) if signal_rows(summary) else ""}
{"<h2>Judges</h2>" + _table(JUDGE_HEADERS, judge_rows(summary)) if judge_rows(summary) else ""}
<h2>Stages: counts and timings</h2>{_table(["iteration", "stage", "seconds", "counts"], stage_rows(summary))}
<h2>summary.json</h2><pre>{html.escape(json.dumps(summary, indent=1)[:20000])}</pre>
</body></html>"""
    path = root / "report.html"
    atomic_write_bytes(path, page.encode())
    return path
