"""Training overhead: the same data trained by plain TRL and by selfimprove's trainers, in one run: SFT (weighted SFT,
every weight 1), DPO (weighted DPO, weights 1, alpha 0) and GRPO (our scorer as the reward vs the same vote written
as a plain reward function). Both sides use the same TRL config (LoRA, float32 on CPU, no gradient checkpointing)
and the same rows; the time is `trainer.train()` only (loading and saving excluded). Goal: ratio >= 0.95.

    python benchmarks/training_overhead.py [--model builtin:smollm2-135m-instruct] [--steps 8] [--grpo-steps 2] [--repeats 2]
        [--device cpu|cuda]

On `--device cuda` both sides train in bf16 where the GPU has it (training.common.training_setup decides for ours,
the plain side takes the same), still LoRA and without gradient checkpointing (benchmarks/gpu/si_gpu.sh runs this).
"""

from __future__ import annotations

import argparse
import collections
import math
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import torch

from selfimprove.config import DPOTrainConfig, GRPOTrainConfig, SFTTrainConfig, TaskConfig
from selfimprove.models import resolve_model
from selfimprove.prompts import PromptLibrary
from selfimprove.tasks import make_task
from selfimprove.training.common import load_model_and_tokenizer, peft_config, quiet, total_steps, training_setup
from selfimprove.training.dpo import DPOTrainer, dpo_config
from selfimprove.training.grpo import GRPOTrainer, grpo_config
from selfimprove.training.sft import SFTTrainer, sft_config

LORA = {"r": 16, "alpha": 32, "dropout": 0.0}


def sft_rows(n: int) -> list[dict]:
    return [{"prompt": [{"role": "user", "content": f"What is {10 + i} + {20 + i}?"}],
             "completion": [{"role": "assistant", "content": f"{10 + i} + {20 + i} = {30 + 2 * i}. The answer is {30 + 2 * i}."}],
             "weight": 1.0} for i in range(n)]


def dpo_rows(n: int) -> list[dict]:
    return [{"prompt": r["prompt"], "chosen": r["completion"], "rejected": [{"role": "assistant", "content": f"The answer is {7 * i + 3}."}],
             "weight": 1.0} for i, r in enumerate(sft_rows(n))]


def prompt_rows(n: int) -> list[dict]:
    return [{"prompt_id": f"p{i}", "messages": r["prompt"], "reference": str(30 + 2 * i)} for i, r in enumerate(sft_rows(n))]


def timed(trainer) -> float:
    quiet(trainer)
    t = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t


def ours(trainer, model, rows, out: Path) -> tuple[float, int]:
    """Our trainer's `train_seconds` come from the same `trainer.train()` call (training/common.fit_and_save)."""
    stats = trainer.train(model, rows, out)
    return stats["train_seconds"], stats["steps"]


def plain_sft(model_path, rows, cfg, out: Path) -> tuple[float, int]:
    import datasets
    from trl import SFTTrainer as TRLSFTTrainer

    _, dtype, on_cpu = training_setup(cfg.device)
    args = sft_config(cfg, out, on_cpu=on_cpu, bf16=dtype == torch.bfloat16, total_steps=total_steps(len(rows), cfg))
    model, tok = load_model_and_tokenizer(model_path, dtype)
    ds = datasets.Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    tr = TRLSFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config(cfg.lora))
    return timed(tr), tr.state.global_step


def plain_dpo(model_path, rows, cfg, out: Path) -> tuple[float, int]:
    import datasets
    from trl import DPOTrainer as TRLDPOTrainer

    _, dtype, on_cpu = training_setup(cfg.device)
    args = dpo_config(cfg, out, on_cpu=on_cpu, bf16=dtype == torch.bfloat16, total_steps=total_steps(len(rows), cfg))
    model, tok = load_model_and_tokenizer(model_path, dtype)
    ds = datasets.Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    tr = TRLDPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config(cfg.lora))
    return timed(tr), tr.state.global_step


def plain_grpo(model_path, rows, cfg, task, out: Path) -> tuple[float, int]:
    """GRPO with the majority vote written by hand as a TRL reward function (string answers, no equivalence check)."""
    import datasets
    from trl import GRPOTrainer as TRLGRPOTrainer

    def majority(prompts, completions, prompt_id, **_):
        answers = [task.extract_answer(c[0]["content"]) for c in completions]
        votes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for pid, a in zip(prompt_id, answers):
            if a is not None:
                votes[pid][a] += 1
        top = {pid: c.most_common(1)[0][0] for pid, c in votes.items()}
        return [1.0 if a is not None and a == top.get(pid) else 0.0 for pid, a in zip(prompt_id, answers)]

    _, dtype, on_cpu = training_setup(cfg.device)
    args = grpo_config(cfg, out, on_cpu=on_cpu, bf16=dtype == torch.bfloat16, total_steps=cfg.max_steps)
    model, tok = load_model_and_tokenizer(model_path, dtype)
    ds = datasets.Dataset.from_list([{"prompt": list(r["messages"]), "prompt_id": r["prompt_id"], "reference": r["reference"]} for r in rows])
    tr = TRLGRPOTrainer(model=model, reward_funcs=[majority], args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config(cfg.lora))
    return timed(tr), tr.state.global_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=8, help="optimizer steps of SFT and DPO")
    ap.add_argument("--grpo-steps", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="alternate plain/ours this many times; the fastest of each counts")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (bf16 there)")
    a = ap.parse_args()
    model = resolve_model(a.model)
    task = make_task(TaskConfig(name="arithmetic"), PromptLibrary())
    common = dict(lora=LORA, batch_size=4, device=a.device, max_length=128)
    sft = SFTTrainConfig(**common, epochs=1.0)  # rows = steps x batch: one epoch is `steps` optimizer steps
    dpo = DPOTrainConfig(**common, epochs=1.0, learning_rate=5e-5)
    grpo = GRPOTrainConfig(**{**common, "batch_size": 8}, rewards=[{"scorer": "majority_vote", "column": "is_majority"}], num_generations=8,
                           max_completion_length=32, temperature=0.7, max_steps=a.grpo_steps)
    n = a.steps * 4
    cases = [
        ("sft", lambda out: plain_sft(model, sft_rows(n), sft, out), lambda out: ours(SFTTrainer(sft), model, sft_rows(n), out)),
        ("dpo", lambda out: plain_dpo(model, dpo_rows(n), dpo, out), lambda out: ours(DPOTrainer(dpo), model, dpo_rows(n), out)),
        ("grpo", lambda out: plain_grpo(model, prompt_rows(8), grpo, task, out),
         lambda out: ours(GRPOTrainer(grpo).attach(task), model, prompt_rows(8), out)),
    ]
    _, dtype, _ = training_setup(a.device)
    gpu = f", {torch.cuda.get_device_name()}" if a.device.startswith("cuda") else ""
    print(f"model {a.model}, {a.device}{gpu} {str(dtype).removeprefix('torch.')}, torch threads {torch.get_num_threads()}, "
          f"{a.steps} SFT/DPO steps of 4 rows, {a.grpo_steps} GRPO steps of 8 completions")
    print(f"{'method':6} {'plain TRL s':>12} {'selfimprove s':>14} {'steps':>6} {'plain steps/s':>14} {'ours steps/s':>13} {'ratio':>6}")
    for name, plain, mine in cases:
        best_p = best_o = math.inf
        steps_p = steps_o = 0
        for _ in range(a.repeats):
            with TemporaryDirectory() as d:
                t, steps_p = plain(Path(d))
                best_p = min(best_p, t)
            with TemporaryDirectory() as d:
                t, steps_o = mine(Path(d))
                best_o = min(best_o, t)
        assert steps_p == steps_o, (name, steps_p, steps_o)
        print(f"{name:6} {best_p:12.2f} {best_o:14.2f} {steps_o:6d} {steps_p / best_p:14.3f} {steps_o / best_o:13.3f} {best_p / best_o:6.3f}", flush=True)


if __name__ == "__main__":
    main()
