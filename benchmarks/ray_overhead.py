"""Ray overhead: the same generate stage (the builtin model, transformers backend, the same prompts, shards and seeds)
in this process and on a local Ray cluster, in one run. Prints each stage time, the ratio (in-process time / Ray
time) and the fixed start-up cost (starting Ray, then the workers until they answer); and checks the rows are equal.

Two Ray layouts: 1 worker with every CPU (the same compute as in-process: the ratio is Ray's overhead alone) and one
worker per CPU (what `ray: {num_workers: <cpus>}` gives on one machine). The in-process run and the 1-worker run use
the same torch thread count, so their rows match to the bit; the 1-thread workers sum floats in another order, so
their log-probs may differ in the last digits (texts are compared).

    python benchmarks/ray_overhead.py [--prompts 24] [--n 4] [--max-tokens 32] [--shard-size 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from selfimprove.config import SplitConfig, TaskConfig, TransformersBackendConfig
from selfimprove.config.ray import RayConfig
from selfimprove.generation import SamplingParams
from selfimprove.models import DEFAULT_MODEL
from selfimprove.prompts import PromptLibrary
from selfimprove.runtime.context import RunContext
from selfimprove.runtime.generate_shards import generate_sharded
from selfimprove.runtime.quiet import quiet_libraries
from selfimprove.runtime.runner import workers
from selfimprove.tasks import make_task


def stage(root: Path, ray_cfg: RayConfig | None, args) -> tuple[list[dict], float, float]:
    """(rows, start-up seconds, stage seconds): start-up = the Ray workers until they answer (0 in-process)."""
    prompts = PromptLibrary()
    task = make_task(TaskConfig(name="arithmetic"), prompts)
    ctx = RunContext(root, task, prompts, model=args.model, backend=TransformersBackendConfig(batch_size=64), ray=ray_cfg)
    rows = task.load(SplitConfig(size=args.prompts, seed=11), "data")
    sd = ctx.store.stage(1, "generate", {"bench": 1}, {})
    sd.begin()
    params = SamplingParams(n=args.n, temperature=0.7, max_tokens=args.max_tokens, seed=3)
    try:
        t0 = time.perf_counter()
        if ray_cfg is not None:
            workers(ctx)
        t1 = time.perf_counter()
        out = generate_sharded(ctx, sd, rows, ctx.models.base_model(), params, args.shard_size, 1, "generate")
        t2 = time.perf_counter()
    finally:
        ctx.close()
    return out, t1 - t0, t2 - t1


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--shard-size", type=int, default=4)
    args = ap.parse_args()
    quiet_libraries()
    import ray

    cpus = os.cpu_count() or 1
    torch.set_num_threads(cpus)
    print(f"{args.prompts} prompts x {args.n} samples, {args.max_tokens} tokens max, shards of {args.shard_size}; {cpus} CPUs, ray {ray.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stage(tmp / "warm", None, argparse.Namespace(**{**vars(args), "prompts": args.shard_size}))  # model conversion and caches
        local, _, t_local = stage(tmp / "local", None, args)
        t = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level="WARNING")
        t_init = time.perf_counter() - t
        results = {}
        try:
            for name, cfg in (("1 worker x %d CPUs" % cpus, RayConfig(num_workers=1, num_cpus=cpus)),
                              ("%d workers x 1 CPU" % cpus, RayConfig(num_workers=cpus, num_cpus=1))):
                results[name] = stage(tmp / name.replace(" ", "_"), cfg, args)
        finally:
            ray.shutdown()
    texts = [(r["sample_id"], r["completion"]) for r in local]
    print(f"\nin-process: {t_local:.1f} s")
    print(f"ray start (ray.init, local cluster): {t_init:.1f} s")
    for name, (rows, t_up, t_stage) in results.items():
        same = "rows equal" if rows == local else ("texts equal" if [(r["sample_id"], r["completion"]) for r in rows] == texts else "ROWS DIFFER")
        print(f"ray {name}: workers up {t_up:.1f} s, stage {t_stage:.1f} s, ratio in-process/ray {t_local / t_stage:.2f} "
              f"(with worker start-up {t_local / (t_stage + t_up):.2f}); {same}")


if __name__ == "__main__":
    main()
