"""Evaluation: metrics (accuracy, pass@k, maj@k, self-correction), `selfimprove eval` suites, the run report."""
