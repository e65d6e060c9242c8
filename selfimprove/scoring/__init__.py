"""Scorers: gold verifier, majority vote, LLM judges, meta-judge, P(True), self log-likelihood, reward model.

Registered lazily in `registry.SCORERS`; `make_scorers` builds them from config, `apply.score_samples` runs
them over a table, `rewards.as_reward_func` turns one into a TRL reward function."""

from ..registry import SCORERS
from .base import Scorer, ScoreResult, make_scorer, make_scorers

__all__ = ["SCORERS", "ScoreResult", "Scorer", "make_scorer", "make_scorers"]
