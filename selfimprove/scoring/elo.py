"""Bradley-Terry / Elo scores from pairwise battles (Meta-Rewarding's judge ranking).

`battles`: (first, second, outcome) with outcome 1 = first wins, -1 = second wins, 0 = tie/unparsed.
Paper version (Wu et al. 2024): position weights w1 = wins_2nd / (wins_1st + wins_2nd) for wins in the
first position and w2 = wins_1st / (...) for wins in the second, so a judge that favours one position
does not decide the ranking; then maximise sum_mn B_mn log sigmoid(e_m - e_n) (a small L2 term keeps
the optimum finite when one player wins everything). Elo = 1000 + 400 * e / ln 10.
"""

from __future__ import annotations

import math

import numpy as np


def position_weights(battles: list[tuple[int, int, int]]) -> tuple[float, float]:
    first = sum(1 for _, _, r in battles if r == 1)
    second = sum(1 for _, _, r in battles if r == -1)
    if first + second == 0:
        return 0.5, 0.5
    return second / (first + second), first / (first + second)


def bradley_terry(n_players: int, battles: list[tuple[int, int, int]], weighted: bool = True, l2: float = 0.01, iters: int = 200) -> np.ndarray:
    """Strengths e (mean 0) maximising the weighted BT log-likelihood, by Newton's method."""
    w1, w2 = position_weights(battles) if weighted else (1.0, 1.0)
    wins = np.zeros((n_players, n_players))  # wins[m, n]: weighted count of m beating n
    for a, b, r in battles:
        if r == 1:
            wins[a, b] += w1
        elif r == -1:
            wins[b, a] += w2
    e = np.zeros(n_players)
    for _ in range(iters):
        diff = e[:, None] - e[None, :]
        p = 1 / (1 + np.exp(-diff))
        total = wins + wins.T
        grad = (wins - total * p).sum(axis=1) - l2 * e
        h = total * p * (1 - p)
        hess = -np.diag(h.sum(axis=1)) + h - l2 * np.eye(n_players)
        step = np.linalg.solve(hess, grad)
        e = e - step
        if np.abs(step).max() < 1e-9:
            break
    return e - e.mean()


def elo(strengths: np.ndarray) -> list[float]:
    return [1000.0 + 400.0 * float(s) / math.log(10) for s in strengths]
