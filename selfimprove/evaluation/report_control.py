"""The controller's part of the summary and report: what it chose, rolled back and stopped on (dev accuracy per
iteration), the label-free health monitors per iteration, and the in-training dev curves."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from .metrics import format_metric
from .report_html import png as _png
from .report_html import table as _table

TEST_NOTE = ("The held-out test set (data.eval) is scored for this report only: the model is chosen, rolled back and stopped on "
             "the dev split (data.dev) and label-free monitors, never on the test set.")


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
        action = ch.get("action", "") if ch else ("base model" if it["iteration"] == 0 else "not trained" if d.get("trained") is False else "")
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
            for key, name in (("accuracy", "dev accuracy"), ("acc@t2", "dev acc@t2")):
                if isinstance(c.get(key), (int, float)):
                    series.setdefault(name, ([], []))[0].append(offset + c["step"])
                    series[name][1].append(c[key])
        offset += train.get("steps") or 0
    if not any(len(v[0]) > 1 for v in series.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o" if name.startswith("dev ") else None, label=name, linewidth=2 if name.startswith("dev ") else 1)
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
