"""Agreement statistics for judge diagnostics: AUROC, Cohen's kappa, rank correlation."""

from __future__ import annotations

import numpy as np


def auroc(scores: list[float], labels: list[bool]) -> float:
    """Area under the ROC curve (probability a positive outranks a negative; ties count half)."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def cohen_kappa(a: list, b: list) -> float:
    """Agreement of two labelings beyond chance: (p_o - p_e) / (1 - p_e)."""
    if not a:
        return float("nan")
    cats = sorted(set(a) | set(b), key=str)
    n = len(a)
    po = sum(x == y for x, y in zip(a, b)) / n
    pe = sum((a.count(c) / n) * (b.count(c) / n) for c in cats)
    return float("nan") if pe == 1 else float((po - pe) / (1 - pe))


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")  # undefined for a constant input
    from scipy.stats import spearmanr

    r = spearmanr(x, y).statistic
    return float(r)


def bootstrap_ci(values: np.ndarray, resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-problem values."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    means = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)




def paired_diff_ci(after: np.ndarray, before: np.ndarray, resamples: int = 1000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float, float]:
    """Mean of `after - before` over the same problems (paired per-problem values) and its percentile bootstrap
    interval: (difference, low, high). A high below zero means `after` is worse beyond the interval."""
    a, b = np.asarray(after, dtype=float), np.asarray(before, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same problems: {a.shape} vs {b.shape}")
    diff = a - b
    lo, hi = bootstrap_ci(diff, resamples, seed, level)
    return float(diff.mean()) if len(diff) else float("nan"), lo, hi


def as_number(v, verdicts: bool = False) -> float | None:
    """`v` as a float, or None for anything that is no number (None, text, NaN); a bool is no number unless `verdicts`
    (then True/False count 1/0: a gold verdict as an outcome score)."""
    if isinstance(v, bool) and not verdicts:
        return None
    if not isinstance(v, (int, float)) or v != v:
        return None
    return float(v)


def brier(probs: list[float], labels: list[bool]) -> float:
    """Mean squared error of probabilities against 0/1 outcomes (0 is perfect; always saying 0.5 scores 0.25)."""
    p, y = np.asarray(probs, dtype=float), np.asarray(labels, dtype=float)
    return float(np.mean((p - y) ** 2))


def ece(probs: list[float], labels: list[bool], bins: int = 10) -> float:
    """Expected calibration error: over `bins` equal-width probability bins, the gap between the mean probability and
    the share right, weighted by the bin's size (a probability of 1.0 falls in the last bin)."""
    p, y = np.asarray(probs, dtype=float), np.asarray(labels, dtype=float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(p[idx == b].mean() - y[idx == b].mean()) * (idx == b).sum() for b in range(bins) if (idx == b).any()) / len(p))

