"""Batch jobs beside the loop: `selfimprove generate` (jobs/generate.py)."""
