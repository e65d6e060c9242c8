"""Sandboxed execution of untrusted (model-generated) code."""

from .pool import OUTCOMES, Outcome, Program, Sandbox, SandboxError, SandboxLimits, outcome_counts

__all__ = ["OUTCOMES", "Outcome", "Program", "Sandbox", "SandboxError", "SandboxLimits", "outcome_counts"]
