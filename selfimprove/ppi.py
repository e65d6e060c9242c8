"""Prediction-powered inference (Angelopoulos et al. 2023; PPI++ power tuning, arXiv 2311.01453) for a mean: a small
gold-labelled slice (labels `y`, predictions `yhat`) and a large unlabelled set (predictions `yhat_unlabeled`: votes,
a judge) give an estimate with a valid interval that is tighter than the gold slice alone when the predictions are
informative, and never biased by them. Same numbers as `ppi_py.ppi_mean_ci` (tested against it); numpy only.

    theta = lam * mean(yhat_unlabeled) + mean(y - lam * yhat)
    se^2  = lam^2 var(yhat_unlabeled) / N + var(y - lam * yhat) / n
    lam   = cov(y, yhat) / ((1 + n/N) var(yhat over both sets)), clipped to [0, 1]   (PPI++; lam = 1 is plain PPI)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm


@dataclass(frozen=True)
class Estimate:
    """A mean with its interval, how it was made (`method`), and the sizes it used."""

    method: str
    value: float
    ci: tuple[float, float]
    n_labelled: int
    n_unlabelled: int = 0
    lam: float | None = None

    def to_dict(self) -> dict:
        d = {"method": self.method, "value": self.value, "ci": list(self.ci), "n_labelled": self.n_labelled, "n_unlabelled": self.n_unlabelled}
        if self.lam is not None:
            d["lambda"] = self.lam
        return d


def _z(alpha: float) -> float:
    return float(norm.ppf(1 - alpha / 2))


def power_tuning(y: np.ndarray, yhat: np.ndarray, yhat_unlabeled: np.ndarray) -> float:
    """PPI++'s variance-minimising lambda for a mean, clipped to [0, 1] (ppi_py's `_calc_lam_glm` for d = 1, with its
    gradients taken at the plain PPI estimate)."""
    n, big_n = len(y), len(yhat_unlabeled)
    theta = yhat_unlabeled.mean() + (y - yhat).mean()
    g, gh = y - theta, yhat - theta
    cov = 2 * np.mean((g - g.mean()) * (gh - gh.mean()))
    var = np.var(np.concatenate([yhat, yhat_unlabeled]) - theta, ddof=1)
    if var == 0:
        return 0.0
    return float(np.clip(cov / (2 * (1 + n / big_n) * var), 0.0, 1.0))


def ppi_mean(y, yhat, yhat_unlabeled, alpha: float = 0.05, lam: float | None = None) -> Estimate:
    """The prediction-powered mean and its (1 - alpha) CLT interval; `lam` None = PPI++ power tuning, 1 = PPI."""
    y, yhat, yu = (np.asarray(v, dtype=float).ravel() for v in (y, yhat, yhat_unlabeled))
    if len(y) != len(yhat):
        raise ValueError(f"ppi_mean: {len(y)} labels but {len(yhat)} predictions on the labelled slice")
    if len(y) < 2 or len(yu) < 2:
        raise ValueError("ppi_mean needs at least 2 labelled and 2 unlabelled items")
    tuned = lam is None
    if tuned:
        lam = power_tuning(y, yhat, yu)
    value = float(lam * yu.mean() + (y - lam * yhat).mean())
    se = float(np.sqrt((lam * yu).std() ** 2 / len(yu) + (y - lam * yhat).std() ** 2 / len(y)))
    half = _z(alpha) * se
    return Estimate("ppi++" if tuned else f"ppi (lambda {lam:g})", value, (value - half, value + half), len(y), len(yu), float(lam))


def classical_mean(y, alpha: float = 0.05) -> Estimate:
    """The gold-only estimate: the labelled mean with its CLT interval (ppi_py's `classical_mean_ci`)."""
    y = np.asarray(y, dtype=float).ravel()
    value = float(y.mean())
    half = _z(alpha) * float(y.std()) / np.sqrt(len(y))
    return Estimate("gold only", value, (float(value - half), float(value + half)), len(y))


def imputed_mean(yhat_all, alpha: float = 0.05) -> Estimate:
    """The pseudo-label-only estimate: the predictions' mean over every item, as if they were labels (biased by as much
    as the predictions are wrong; its interval does not know that)."""
    yhat_all = np.asarray(yhat_all, dtype=float).ravel()
    value = float(yhat_all.mean())
    half = _z(alpha) * float(yhat_all.std()) / np.sqrt(len(yhat_all))
    return Estimate("pseudo-labels only", value, (float(value - half), float(value + half)), 0, len(yhat_all))


def three_estimates(y, yhat, yhat_unlabeled, alpha: float = 0.05) -> dict:
    """Gold-only, pseudo-label-only (every prediction) and PPI++ estimates of one mean, side by side."""
    return {"gold_only": classical_mean(y, alpha).to_dict(),
            "pseudo_only": imputed_mean(np.concatenate([np.asarray(yhat, float).ravel(), np.asarray(yhat_unlabeled, float).ravel()]), alpha).to_dict(),
            "ppi": ppi_mean(y, yhat, yhat_unlabeled, alpha).to_dict()}
