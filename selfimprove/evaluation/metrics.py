"""Evaluation metrics: greedy accuracy, unbiased pass@k, maj@k, and 95% bootstrap intervals over problems."""

from __future__ import annotations

import numpy as np

from ..groups import by_prompt
from ..stats import as_number, bootstrap_ci


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), computed stably.

    >>> pass_at_k(10, 0, 1), pass_at_k(10, 10, 5), round(pass_at_k(10, 3, 1), 3)
    (0.0, 1.0, 0.3)
    """
    if k > n:
        raise ValueError(f"k={k} > n={n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority_correct(clusters: list[int | None], correct: list[bool | None], k: int) -> bool:
    """Is the most-voted answer among the first k samples correct?

    Votes count equivalence clusters; samples without an answer do not vote. Ties go to the
    cluster whose first sample came earliest (deterministic, independent of answer text).

    >>> majority_correct([0, 1, 1, 0], [False, True, True, False], 4)
    False
    >>> majority_correct([0, 1, 1, None], [False, True, True, False], 4)
    True
    """
    counts: dict[int, int] = {}
    first: dict[int, int] = {}
    for i, c in enumerate(clusters[:k]):
        if c is None:
            continue
        counts[c] = counts.get(c, 0) + 1
        first.setdefault(c, i)
    if not counts:
        return False
    top = max(counts, key=lambda c: (counts[c], -first[c]))
    return bool(correct[first[top]])


def ks_for(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    if n not in ks:
        ks.append(n)
    return ks


def self_correction(first: list[dict], second: list[dict]) -> dict[str, np.ndarray]:
    """Per-problem values of the two-turn metrics (SCoRe): Acc@t1, Acc@t2, Δ = t2 - t1, Δ i→c, Δ c→i."""
    t2 = {r["prompt_id"]: bool(r.get("correct")) for r in second}
    pids = sorted(p for p in {r["prompt_id"] for r in first} if p in t2)
    t1 = {r["prompt_id"]: bool(r.get("correct")) for r in first}
    a = np.array([t1[p] for p in pids], dtype=float)
    b = np.array([t2[p] for p in pids], dtype=float)
    return {"acc@t1": a, "acc@t2": b, "delta": b - a, "delta_i2c": (1 - a) * b, "delta_c2i": a * (1 - b)}


def breakdown(rows: list[dict], prompts: dict[str, dict], key: str) -> dict[str, dict]:
    """Accuracy (mean of `correct` over a problem's rows) per value of the prompt's meta `key` (MATH-500 subject, level)."""
    import json

    per: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        meta = prompts.get(r["prompt_id"], {}).get("meta") or "{}"
        value = json.loads(meta).get(key) if isinstance(meta, str) else meta.get(key)
        if value is None:
            continue
        per.setdefault(str(value), {}).setdefault(r["prompt_id"], []).append(float(bool(r.get("correct"))))
    return {v: {"n": len(d), "accuracy": float(np.mean([np.mean(x) for x in d.values()]))} for v, d in sorted(per.items())}


def compute_metrics(
    greedy: list[dict] | None,
    samples: list[dict] | None,
    *,
    revision: list[dict] | None = None,
    prompts: dict[str, dict] | None = None,
    resamples: int = 1000,
    seed: int = 0,
    per_problem_out: dict | None = None,
    best_of: str | None = None,
) -> dict:
    """Metrics from scored rows (`prompt_id`, `correct`, and for samples `cluster`).

    `accuracy` from greedy rows; `pass@k` (unbiased, every k in 1,2,4..n) and `maj@k` from the
    sampled rows (maj@k only where rows carry `cluster`); Acc@t1/Acc@t2/Δ from greedy + revision rows;
    per-subject and per-level accuracy where prompts carry them (MATH-500). Each metric `m` has
    `m_ci` = [low, high], a 95% bootstrap over problems. `per_problem_out`, when given, receives each metric's
    per-problem values by prompt id (paired comparisons between models on the same problems). `best_of`: a sample
    column; `best_of@n` is then the accuracy of each problem's sample with its highest value (ties: the first sample;
    a problem none of whose samples has a value counts as wrong).
    """
    out: dict = {}
    per_problem: dict[str, np.ndarray] = {}
    ids: dict[str, list[str]] = {}
    if greedy:
        ordered = sorted(greedy, key=lambda r: r["prompt_id"])
        acc = np.array([bool(r.get("correct")) for r in ordered], dtype=float)
        per_problem["accuracy"] = acc
        ids["accuracy"] = [r["prompt_id"] for r in ordered]
        out["num_problems"] = len(acc)
    if samples:
        groups = by_prompt(samples, turns=False)
        pids = sorted(groups)
        n = min(len(g) for g in groups.values())
        for k in ks_for(n):
            vals = []
            for pid in pids:
                g = sorted(groups[pid], key=lambda r: r["sample_id"])[:n]
                c = sum(bool(r.get("correct")) for r in g)
                vals.append(pass_at_k(n, c, k))
            per_problem[f"pass@{k}"] = np.array(vals)
            ids[f"pass@{k}"] = pids
        for k in ks_for(n):
            if k == 1 or "cluster" not in samples[0]:
                continue
            vals = []
            for pid in pids:
                g = sorted(groups[pid], key=lambda r: r["sample_id"])
                vals.append(majority_correct([r.get("cluster") for r in g], [r.get("correct") for r in g], k))
            per_problem[f"maj@{k}"] = np.array(vals, dtype=float)
            ids[f"maj@{k}"] = pids
        if best_of is not None:
            vals = []
            for pid in pids:
                g = [r for r in sorted(groups[pid], key=lambda r: r["sample_id"])[:n] if as_number(r.get(best_of)) is not None]
                vals.append(bool(max(g, key=lambda r: r[best_of]).get("correct")) if g else False)
            per_problem[f"best_of@{n}"] = np.array(vals, dtype=float)
            ids[f"best_of@{n}"] = pids
            out["best_of_column"] = best_of
        out["samples_per_problem"] = n
        out.setdefault("num_problems", len(pids))
    if greedy and revision:
        turns = self_correction(greedy, revision)
        per_problem.update(turns)
        second = {r["prompt_id"] for r in revision}
        ids.update({k: sorted(p for p in {r["prompt_id"] for r in greedy} if p in second) for k in turns})
    if prompts:
        base = greedy or samples or []
        for key in ("subject", "level"):
            b = breakdown(base, prompts, key)
            if b:
                out[f"by_{key}"] = b
    for name, vals in per_problem.items():
        out[name] = float(vals.mean())
        out[f"{name}_ci"] = list(bootstrap_ci(vals, resamples, seed))
        if per_problem_out is not None:
            per_problem_out[name] = dict(zip(ids[name], (float(v) for v in vals)))
    return out


def format_metric(value: float, ci: list[float] | None) -> str:
    """`41.2 ± 2.7` (percent; ± is half the interval width)."""
    if ci is None or any(np.isnan(ci)):
        return f"{100 * value:.1f}"
    if value < 0 or ci[0] < 0:
        return f"{100 * value:+.1f} ± {100 * (ci[1] - ci[0]) / 2:.1f}"
    return f"{100 * value:.1f} ± {100 * (ci[1] - ci[0]) / 2:.1f}"


def gold_slice_estimates(greedy: list[dict], sampled: list[dict], gold_slice: int, same) -> dict | None:
    """Accuracy as a user with gold answers for only `gold_slice` problems would estimate it (`ppi.three_estimates`):
    a problem's pseudo-label is 1 when its greedy answer agrees with the majority answer of its samples (`same`:
    equivalence of answer pairs); the labelled slice is the first `gold_slice` problems by id (their `correct` is
    read), the rest count as unlabelled. `all_gold` is the estimate from every problem's gold answer, for comparison."""
    from ..ppi import classical_mean, three_estimates

    majority = {r["prompt_id"]: r.get("majority_answer") for r in sampled}
    rows = sorted((r for r in greedy if r["prompt_id"] in majority), key=lambda r: r["prompt_id"])
    if len(rows) < gold_slice + 2:
        return None
    pairs = [(r.get("answer"), majority[r["prompt_id"]]) for r in rows]
    checkable = [i for i, (a, m) in enumerate(pairs) if a is not None and m is not None]
    verdicts = dict(zip(checkable, same([pairs[i] for i in checkable]))) if checkable else {}
    yhat = np.array([float(bool(verdicts.get(i, False))) for i in range(len(rows))])
    y = np.array([float(bool(r.get("correct"))) for r in rows])
    out = three_estimates(y[:gold_slice], yhat[:gold_slice], yhat[gold_slice:])
    out["all_gold"] = {**classical_mean(y).to_dict(), "method": "gold answers for every problem"}
    out["pseudo_label_accuracy"] = float(np.mean(yhat == y))
    return out
