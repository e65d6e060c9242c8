"""Scorers (registry in base.py): gold verifier, majority vote."""

from . import consistency, verifier  # noqa: F401  (register)
from .base import SCORERS, ScoreResult, Scorer, make_scorers

__all__ = ["SCORERS", "ScoreResult", "Scorer", "make_scorers"]
