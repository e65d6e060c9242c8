"""Judge summaries and diagnostics, as numbers: score histograms and means with intervals, parse-failure
rates, position bias (pairwise verdict flips when A/B are swapped), length bias (rank correlation of score
with response length; how often the longer response wins), agreement with gold (accuracy, Cohen's kappa,
AUROC), self-preference (the judge's own responses vs another judge's view of them), and drift of the
score distribution across groups (iterations)."""

from __future__ import annotations

import numpy as np

from ..config import ScorerConfig
from ..scoring import make_scorers
from ..scoring.apply import score_samples
from ..scoring.base import SummaryColumn, describe_parse_failures
from ..scoring.judge_base import bind_scorers
from ..stats import auroc, bootstrap_ci, brier, cohen_kappa, ece, spearman
from .rows import merge, prompt_and_samples


def summary_columns(scorers, pass_threshold: float | None = None) -> dict[str, SummaryColumn]:
    """Every score column the scorers declare (`Scorer.summary_columns`), in their order."""
    out: dict[str, SummaryColumn] = {}
    for sc in scorers:
        out.update(sc.summary_columns(pass_threshold))
    return out


def _vals(table: list[dict], col: str) -> list[float]:
    return [float(r[col]) for r in table if r.get(col) is not None]


def histogram(spec: SummaryColumn, values: list[float]) -> dict[str, int]:
    if not values:
        return {}
    if spec.discrete:
        keys = [str(int(round(v))) for v in values]
        return {k: keys.count(k) for k in sorted(set(keys), key=float)}
    lo, hi = spec.range if spec.range is not None else (min(values), max(values) + 1e-9)
    counts, edges = np.histogram(values, bins=10, range=(lo, hi))
    return {f"{edges[i]:.3g}..{edges[i + 1]:.3g}": int(c) for i, c in enumerate(counts)}


def _rates(table: list[dict], scorers, counts: str) -> dict[str, float]:
    """Per scorer: a count over its total, from its classmethod `counts` (None: not asked)."""
    out = {}
    for sc in scorers:
        got = getattr(type(sc), counts)(table)
        if got and got[1]:
            out[sc.name] = got[0] / got[1]
    return out


def parse_failure_rate(table: list[dict], scorers) -> dict[str, float]:
    """Per model scorer that asked for judgments: unparsable / asked (`Scorer.parse_failures`)."""
    return _rates(table, scorers, "parse_failures")


def summarize(table: list[dict], scorers) -> dict:
    """Per declared score column: n, mean, 95% CI, histogram; parse-failure rates (written verdicts that did not
    parse) and, with `read_unparsed`, the share read afterwards; pairwise verdict counts."""
    out: dict = {"scores": {}, "parse_failure_rate": parse_failure_rate(table, scorers)}
    if read := _rates(table, scorers, "read_after_unparsed"):
        out["read_after_unparsed_rate"] = read
    for col, spec in summary_columns(scorers).items():
        vals = _vals(table, col)
        if vals:
            lo, hi = bootstrap_ci(np.array(vals), 1000, 0)
            out["scores"][col] = {"n": len(vals), "missing": len(table) - len(vals), "mean": float(np.mean(vals)), "mean_ci": [lo, hi],
                                  "histogram": histogram(spec, vals)}
            if spec.range is not None:  # saturation: the share at the scale's top
                out["scores"][col]["at_max"] = float(np.mean([v >= spec.range[1] - 1e-9 for v in vals]))
    if any("verdict" in r for r in table):
        verdicts = [r.get("verdict") for r in table]
        out["verdicts"] = {str(k): verdicts.count(k) for k in ("A", "B", "tie", None)}
    return out


def position_bias(table: list[dict]) -> dict | None:
    both = [r for r in table if "flipped" in r and int(r.get("pair_parse_failures") or 0) == 0]
    if not both:
        return None
    return {"flip_rate": sum(bool(r["flipped"]) for r in both) / len(both), "pairs": len(both)}


def length_bias(table: list[dict], scorers) -> dict:
    out = {}
    for col, spec in summary_columns(scorers).items():
        pts = [(len(r.get("response") or ""), float(r[col])) for r in table if r.get(col) is not None]
        if spec.length_bias and len(pts) >= 3:
            out[f"{col}_vs_length_spearman"] = spearman([p[0] for p in pts], [p[1] for p in pts])
    decided = [r for r in table if r.get("verdict") in ("A", "B") and len(r["response"]) != len(r.get("response_b") or "")]
    if decided:
        longer_won = sum((r["verdict"] == "A") == (len(r["response"]) > len(r["response_b"])) for r in decided)
        out["longer_response_wins"] = longer_won / len(decided)
    return out


def agreement(table: list[dict], scorers, pass_threshold: float | None = None) -> dict:
    """Per declared score column, against the gold verifier's `correct`: AUROC, where the column has a pass
    threshold, accuracy and Cohen's kappa of "score >= threshold", and where it is a probability (P(True)), its
    expected calibration error and Brier score."""
    rows = [r for r in table if r.get("correct") is not None]
    out: dict = {}
    if not rows:
        return out
    out["gold_rows"] = len(rows)
    out["gold_correct_rate"] = sum(bool(r["correct"]) for r in rows) / len(rows)
    for col, spec in summary_columns(scorers, pass_threshold).items():
        pts = [(float(r[col]), bool(r["correct"])) for r in rows if r.get(col) is not None]
        if not pts:
            continue
        d = {"n": len(pts), "auroc": auroc([p[0] for p in pts], [p[1] for p in pts])}
        if spec.threshold is not None:
            pred = [p[0] >= spec.threshold for p in pts]
            gold = [p[1] for p in pts]
            d.update(threshold=spec.threshold, accuracy=sum(a == b for a, b in zip(pred, gold)) / len(pts), kappa=cohen_kappa(pred, gold))
        if spec.probability:  # a claimed probability of being right: how well calibrated (P(True))
            d.update(ece=ece([p[0] for p in pts], [p[1] for p in pts]), brier=brier([p[0] for p in pts], [p[1] for p in pts]))
        out[col] = d
    return out


def drift(table: list[dict], scorers) -> dict | None:
    """Per declared score column, its distribution per group (iteration) and the shift from the first group to the last."""
    groups = sorted({r["group"] for r in table if r.get("group") is not None}, key=str)
    if len(groups) < 2:
        return None
    out = {}
    for col, spec in summary_columns(scorers).items():
        per = {}
        for g in groups:
            vals = [float(r[col]) for r in table if r.get("group") == g and r.get(col) is not None]
            if vals:
                per[str(g)] = {"n": len(vals), "mean": float(np.mean(vals)), "histogram": histogram(spec, vals)}
        if len(per) >= 2:
            first, last = per[str(groups[0])], per[str(groups[-1])]
            out[col] = {"groups": per, "mean_shift": last["mean"] - first["mean"],
                        "total_variation": total_variation(first["histogram"], last["histogram"])}
    return out or None


def total_variation(h1: dict[str, int], h2: dict[str, int]) -> float:
    n1, n2 = sum(h1.values()) or 1, sum(h2.values()) or 1
    return 0.5 * sum(abs(h1.get(k, 0) / n1 - h2.get(k, 0) / n2) for k in set(h1) | set(h2))


def diagnostics(ctx, cfg, task, table: list[dict], policy, scorers) -> dict:
    """Every diagnostic the data allows, over the score columns `scorers` declare; self-preference re-judges the rows
    with `diagnose.other_judge`."""
    out: dict = {"parse_failure_rate": parse_failure_rate(table, scorers), "length_bias": length_bias(table, scorers),
                 "agreement_with_gold": agreement(table, scorers, cfg.diagnose.pass_threshold)}
    if read := _rates(table, scorers, "read_after_unparsed"):
        out["read_after_unparsed_rate"] = read
    pb = position_bias(table)
    if pb:
        out["position_bias"] = pb
    d = drift(table, scorers)
    if d:
        out["drift"] = d
    if cfg.diagnose.other_judge:
        out["self_preference"] = self_preference(ctx, cfg, task, table, policy)
    return out


def own_advantage(table: list[dict], policy_source: str, suffix: str = "") -> float | None:
    """Pairwise: the judge's win rate for its own responses; pointwise: its own mean score minus the others'."""
    if any("verdict" in r for r in table):
        games = [r for r in table if r.get(f"verdict{suffix}") in ("A", "B", "tie")
                 and (r.get("source") == policy_source) != (r.get("source_b") == policy_source)]
        if not games:
            return None
        own_first = [(r[f"verdict{suffix}"], r.get("source") == policy_source) for r in games]
        return float(np.mean([1.0 if v == ("A" if first else "B") else 0.5 if v == "tie" else 0.0 for v, first in own_first]))
    own = [float(r[f"judge_score{suffix}"]) for r in table if r.get("source") == policy_source and r.get(f"judge_score{suffix}") is not None]
    other = [float(r[f"judge_score{suffix}"]) for r in table if r.get("source") not in (None, policy_source) and r.get(f"judge_score{suffix}") is not None]
    return float(np.mean(own) - np.mean(other)) if own and other else None


def self_preference(ctx, cfg, task, table: list[dict], policy) -> dict:
    if not cfg.diagnose.policy_source:
        return {"error": "diagnose.policy_source: name the `source` value of the judge's own responses"}
    configs = [ScorerConfig(name=s.name, options={**s.options, "judge": cfg.diagnose.other_judge,
                                                   **({"backend": cfg.diagnose.other_backend.model_dump()} if cfg.diagnose.other_backend else {})})
               for s in cfg.scorers if s.name in ("pointwise_judge", "pairwise_judge")]  # own_advantage reads their columns
    scorers = make_scorers(configs, task, "diagnose")
    bind_scorers(scorers, ctx.models, policy)
    prompts, samples = prompt_and_samples(table)
    try:
        scored = score_samples(scorers, task, prompts, samples, "self-preference: other judge", ctx.progress)
    finally:
        ctx.models.release_generator()
    other = merge(table, scored, [c for s in scorers for c in s.columns().writes])
    mine = own_advantage(table, cfg.diagnose.policy_source)
    theirs = own_advantage(other, cfg.diagnose.policy_source)
    kind = "win_rate" if any("verdict" in r for r in table) else "score_gap"
    return {"measure": kind, "by_self": mine, "by_other_judge": theirs, "other_judge": cfg.diagnose.other_judge,
            "self_preference": None if mine is None or theirs is None else mine - theirs}


def summary_markdown(summary: dict) -> str:
    lines = [f"# judge job {summary.get('job')}: {summary.get('judge_model')}", "", f"rows: {summary.get('rows')}", ""]
    if summary.get("scores"):
        lines += ["| score | n | mean (95% CI) | histogram |", "|---|---|---|---|"]
        for col, d in summary["scores"].items():
            lines.append(f"| {col} | {d['n']} | {d['mean']:.3f} [{d['mean_ci'][0]:.3f}, {d['mean_ci'][1]:.3f}] | {d['histogram']} |")
    if summary.get("parse_failure_rate"):
        lines += ["", "parse-failure rate: " + describe_parse_failures(summary)]
    if summary.get("verdicts"):
        lines += ["", "pairwise verdicts: " + ", ".join(f"{k} {v}" for k, v in summary["verdicts"].items())]
    diag = summary.get("diagnostics")
    if diag:
        import json

        lines += ["", "## diagnostics", "", "```json", json.dumps(diag, indent=2, default=str), "```"]
    return "\n".join(lines) + "\n"


def judge_report(rows: list[dict], scorers) -> dict:
    """Judge numbers for the loop's run report (score stage), over the score columns `scorers` declare: means and
    histograms, parse failures, position and length bias, agreement with the gold verifier (where `correct` exists)."""
    if not rows or not any(c in rows[0] for c in summary_columns(scorers)):
        return {}
    table = [dict(r, response=r.get("completion")) for r in rows]
    out = summarize(table, scorers)
    out["length_bias"] = length_bias(table, scorers)
    out["agreement_with_gold"] = agreement(table, scorers)
    flips = [r for r in rows if r.get("pair_games")]
    if flips:
        out["position_bias"] = {"flip_rate": sum(r["pair_flips"] for r in flips) / max(1, sum(r["pair_games"] for r in flips))}
    return out
