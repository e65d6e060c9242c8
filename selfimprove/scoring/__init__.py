"""Scorers (registry in base.py): gold verifier, majority vote, LLM judges, meta-judge, P(True), self log-likelihood."""

from . import confidence, consistency, judges, meta_judge, reward_model, verifier  # noqa: F401  (register)
from .base import SCORERS, ScoreResult, Scorer, make_scorers

__all__ = ["SCORERS", "ScoreResult", "Scorer", "make_scorers"]
