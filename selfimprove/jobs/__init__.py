"""The batch jobs beside the loop, each a sharded, resumable run of its own: `selfimprove eval` (jobs/eval.py),
`selfimprove judge` (jobs/judge.py) and `selfimprove generate` (jobs/generate.py)."""
