"""Run summary and HTML report, rebuilt from the run directory's manifests at any time.

`summary.json`: per iteration the held-out metrics (each with `<name>_ci`), every stage's
counts and seconds, and `heldout` (train/eval overlap). `report.html`: accuracy-per-iteration plot
(also `accuracy.png`) and tables.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from ..config.schedule import describe, normalise, values_at
from ..store import MANIFEST, atomic_write_bytes, atomic_write_json, read_json
from .metrics import format_metric

STAGE_ORDER = ["train_prompts", "eval_prompts", "dev_prompts", "generate", "score", "select", "train", "eval", "dev", "probe", "control"]
TEST_NOTE = ("The held-out test set (data.eval) is scored for this report only: the model is chosen, rolled back and stopped on "
             "the dev split (data.dev) and label-free monitors, never on the test set.")
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


def control_summary(root: Path, cfg: dict, iters: list[dict]) -> dict | None:
    """The model the run names and why: the best iteration on dev (control.keep: best) or the last one run; the
    stop (rule and where it fired) if any; what the controller did per iteration. None for runs without control."""
    control = cfg.get("control") or {}
    decisions = [it["decision"] for it in iters if it.get("decision")]
    if not decisions and not any(it.get("dev") for it in iters):
        return None
    last = decisions[-1] if decisions else None
    ran = [it["iteration"] for it in iters if it.get("metrics")]
    chosen = (last or {}).get("best") if control.get("keep") == "best" else None
    if chosen is None:
        chosen = 0 if (control.get("keep") == "best" and not decisions) else (ran[-1] if ran else 0)
    it = next((i for i in iters if i["iteration"] == chosen), {})
    metric = control.get("metric", "accuracy")
    dev = it.get("dev") or {}
    stop = next((d["stop"] for d in decisions if d.get("stop")), None)
    return {
        "select_on": control.get("select_on"), "keep": control.get("keep"), "rollback": control.get("rollback"), "metric": metric,
        "chosen": {"iteration": chosen, "model_ref": it.get("model_ref"),
                   "path": str(root / f"iter_{chosen}" / "train" / "model") if chosen else cfg.get("model"),
                   "dev": dev.get(metric), "dev_ci": dev.get(f"{metric}_ci"),
                   "test": (it.get("metrics") or {}).get("accuracy"), "test_ci": (it.get("metrics") or {}).get("accuracy_ci")},
        "stopped": stop,
        "rolled_back": [d["iteration"] for d in decisions if (d.get("choice") or {}).get("rolled_back")],
        "clearly_worse": [d["iteration"] for d in decisions if (d.get("choice") or {}).get("clearly_worse")],
        "test_set": TEST_NOTE,
    }


def control_line(summary: dict) -> str | None:
    """One line on the model the run names (the console's last word, the report's first)."""
    c = summary.get("control")
    if not c:
        return None
    ch = c["chosen"]
    dev = f", dev {c['metric']} {format_metric(ch['dev'], ch.get('dev_ci'))}%" if ch.get("dev") is not None else ""
    why = "the best on dev" if c.get("keep") == "best" else "the last iteration"
    line = f"chosen model: iter_{ch['iteration']} ({why}{dev}) at {ch['path']}"
    if c.get("rolled_back"):
        line += f"; rolled back after iteration(s) {c['rolled_back']}"
    final_worse = [k for k in c.get("clearly_worse") or [] if k not in (c.get("rolled_back") or [])]
    if final_worse:
        line += f"; iteration(s) {final_worse} clearly worse on dev: not chosen"
    if c.get("stopped"):
        line += f"; stopped: {c['stopped'].get('reason')}"
    return line


def control_rows(summary: dict) -> list[list[str]]:
    """Per iteration: dev metric with its interval, the paired change from the best before it, what the controller did,
    where the next iteration starts, and the stop."""
    rows = []
    c = summary.get("control") or {}
    metric = c.get("metric", "accuracy")
    for it in summary["iterations"]:
        dev, d = it.get("dev") or {}, it.get("decision") or {}
        if not dev and not d:
            continue
        ch = d.get("choice") or {}
        diff = ""
        if ch:
            lo, hi = ch["diff_ci"]
            diff = f"{100 * ch['diff_vs_best']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] vs iter {ch['best_before']}"
        action = ch.get("action", "") if ch else ("base model" if it["iteration"] == 0 else "")
        rows.append([str(it["iteration"]), format_metric(dev[metric], dev.get(f"{metric}_ci")) if metric in dev else "", diff, action,
                     "" if not d else f"iter {d.get('next_start')}", (d.get("stop") or {}).get("reason", "")])
    return rows


CONTROL_HEADERS = ["iteration", "dev (%, ± half 95% CI)", "change vs best (paired 95% CI)", "controller", "next start", "stop"]


def health_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    from ..control.health import EXPLAIN

    names = [n for n in EXPLAIN if any(n in (it.get("health") or {}) or f"probe.{n}" in ((it.get("decision") or {}).get("values") or {})
                                       for it in summary["iterations"])]
    rows = []
    for it in summary["iterations"]:
        h = dict(it.get("health") or {})
        vals = (it.get("decision") or {}).get("values") or {}
        if "probe.majority_drift" in vals:
            h["majority_drift"] = vals["probe.majority_drift"]
        if h:
            rows.append([str(it["iteration"])] + [f"{h[n]:.3f}" if isinstance(h.get(n), (int, float)) else "" for n in names])
    return ["iteration"] + names, rows


def health_plot(summary: dict) -> bytes | None:
    """Per iteration the probe's health monitors (each scaled to its own maximum), and the dev metric, in one PNG."""
    headers, rows = health_rows(summary)
    if len(rows) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    xs = [int(r[0]) for r in rows]
    for j, name in enumerate(headers[1:], start=1):
        ys = [float(r[j]) if r[j] else float("nan") for r in rows]
        top = max((y for y in ys if y == y), default=0) or 1.0
        ax.plot(xs, [y / top for y in ys], marker="o", label=f"{name} (max {top:.2g})")
    dev = [(it["iteration"], it["dev"].get("accuracy")) for it in summary["iterations"] if (it.get("dev") or {}).get("accuracy") is not None]
    if dev:
        ax.plot([d[0] for d in dev], [d[1] for d in dev], marker="s", color="black", linewidth=2, label="dev accuracy")
    ax.set_xlabel("iteration")
    ax.set_ylabel("scaled value")
    ax.set_xticks(xs)
    ax.set_title("label-free health on the probe set, and dev accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def training_curves_plot(summary: dict) -> bytes | None:
    """Per logged training step of every iteration: the reward (GRPO) or reward margin (DPO), pseudo-label accuracy
    and the in-training dev accuracy, so "reward rises while dev falls" is visible."""
    series: dict[str, tuple[list, list]] = {}
    offset = 0
    for it in summary["iterations"]:
        train = (it["stages"].get("train") or {}).get("train") or {}
        steps = train.get("per_step") or []
        for s in steps:
            for key in ("reward", "rewards/margins", "pseudo_label_accuracy", "answer_entropy"):
                if isinstance(s.get(key), (int, float)):
                    series.setdefault(key, ([], []))[0].append(offset + s["step"])
                    series[key][1].append(s[key])
        for c in train.get("dev_curve") or []:
            series.setdefault("dev accuracy", ([], []))[0].append(offset + c["step"])
            series["dev accuracy"][1].append(c["accuracy"])
        offset += train.get("steps") or 0
    if not any(len(v[0]) > 1 for v in series.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o" if name == "dev accuracy" else None, label=name, linewidth=2 if name == "dev accuracy" else 1)
    ax.set_xlabel("training step (over all iterations)")
    ax.set_title("training reward, label audit and dev accuracy per step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def control_html(summary: dict) -> str:
    """The report's control section: the chosen model, the per-iteration decisions, the health monitors explained
    and plotted, the per-step training curves."""
    from ..control.health import EXPLAIN

    c = summary.get("control")
    if not c:
        return ""
    parts = [f"<h2>Control: the chosen model</h2><p><b>{html.escape(control_line(summary) or '')}</b></p><p>{html.escape(c['test_set'])}</p>"]
    rows = control_rows(summary)
    if rows:
        parts.append(_table(CONTROL_HEADERS, rows))
    hh, hr = health_rows(summary)
    if hr:
        parts.append("<h3>Label-free health (probe set: the same train prompts every iteration, no gold answer read)</h3>")
        parts.append("<ul>" + "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(EXPLAIN[n])}</li>" for n in hh[1:]) + "</ul>")
        parts.append(_table(hh, hr))
    for plot, alt in ((health_plot(summary), "health per iteration"), (training_curves_plot(summary), "training curves")):
        if plot:
            parts.append(f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(plot).decode()}">')
    return "\n".join(parts)


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


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
        rows.append([str(it["iteration"]), it["model_ref"] or ""] + [format_metric(m[n], m.get(f"{n}_ci")) if n in m else "" for n in names] + sched)
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
                     ", ".join(f"{k} {100 * v:.1f}%" for k, v in (j.get("parse_failure_rate") or {}).items()),
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


def _png(fig) -> bytes:
    """A finished matplotlib figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
