"""The loop's hand-off from generation (a vLLM engine) to training and back, per `backend.hand_off` mode: how long the
engine takes to get out of the way (`suspend`), how long the next iteration's model takes to be served again
(`resume`: wake + in-place load, or a new engine), how much accelerator memory the engine gave back, and whether the
engine then answers as a fresh engine on that model does (greedy text, summed log-probs).

    python benchmarks/hand_off.py [--model builtin:smollm2-135m-instruct] [--modes restart keep] [--lora]
        [--device cpu|cuda] [--json OUT]

The next iteration is the model with every weight matrix nudged (a full fine-tune's output: same layout, other
weights); with `--lora` the engine serves adapters (`enable_lora`), the next model is the base again (sleep level 1:
weights kept in CPU memory) and the answers compared are those through a LoRA adapter served after the hand-off.
`sleep` needs CUDA/ROCm/XPU (step 7 of benchmarks/gpu/si_gpu.sh); on CPU run restart and keep.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from tempfile import TemporaryDirectory


def nudged_copy(src: Path, dst: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.add_(torch.randn_like(p) * 0.1 * p.std())
    model.save_pretrained(dst)
    for f in src.iterdir():
        if f.name.startswith(("tokenizer", "chat_template", "special_tokens")):
            shutil.copy(f, dst / f.name)


def nudged_adapter(src: Path, dst: Path) -> None:
    """A rank-8 LoRA adapter on `src` whose B matrices are not zero (PEFT starts them at zero: no change to serve)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    model.save_pretrained(dst)


def free_gib() -> float | None:
    import torch

    return torch.cuda.mem_get_info()[0] / 2**30 if torch.cuda.is_available() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="builtin:smollm2-135m-instruct")
    ap.add_argument("--modes", nargs="+", default=["restart", "keep"], choices=["restart", "keep", "sleep"])
    ap.add_argument("--lora", action="store_true", help="serve iterations as LoRA adapters: the next model is the base")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--max-model-len", type=int, default=1024)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()

    from selfimprove.config import VLLMBackendConfig
    from selfimprove.generation import Request, SamplingParams, make_generator
    from selfimprove.models import resolve_model

    base = Path(resolve_model(a.model))
    reqs = [Request(f"p{i}", [{"role": "user", "content": f"What is {10 + i} + {23 + 2 * i}?"}]) for i in range(16)]
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=32, logprobs=True)
    answers = lambda outs: [(o[0].text, o[0].logprob_sum) for o in outs]  # noqa: E731
    results = []
    with TemporaryDirectory() as tmp:
        nxt = base if a.lora else Path(tmp) / "next"
        adapter = Path(tmp) / "adapter"
        if a.lora:
            nudged_adapter(base, adapter)
        else:
            nudged_copy(base, nxt)
        # with --lora, what is compared is the answers through an adapter served by the woken engine
        serve = (lambda g: g.adapter_view("iter_1", 1, adapter)) if a.lora else (lambda g: g)  # noqa: E731
        backend = lambda mode: VLLMBackendConfig(hand_off=mode, device=a.device, max_model_len=a.max_model_len,  # noqa: E731
                                                 enable_lora=a.lora, max_lora_rank=8)
        for mode in a.modes:
            t = time.perf_counter()
            gen = make_generator(backend(mode), base)
            start = time.perf_counter() - t
            gen.generate(reqs, greedy)
            before = free_gib()
            t = time.perf_counter()
            kept = gen.suspend()
            suspend = time.perf_counter() - t
            freed = None if before is None else round(free_gib() - before, 2)
            t = time.perf_counter()
            if kept:
                what = gen.resume(nxt)
            else:
                gen, what = make_generator(backend(mode), nxt), "started a new engine"
            resume = time.perf_counter() - t
            out = answers(serve(gen).generate(reqs, greedy))
            gen.close()
            results.append({"mode": mode, "engine_start_s": round(start, 2), "suspend_s": round(suspend, 2), "resume_s": round(resume, 2),
                            "hand_off_s": round(suspend + resume, 2), "memory_freed_gib": freed, "resume_did": what, "answers": out})
            print(json.dumps({k: v for k, v in results[-1].items() if k != "answers"}), flush=True)
        fresh = make_generator(backend("restart"), nxt)
        expected = answers(serve(fresh).generate(reqs, greedy))
        fresh.close()
    for r in results:
        got = r.pop("answers")
        r["matches_fresh_engine"] = [t for t, _ in got] == [t for t, _ in expected] and all(
            abs(x - y) < 1e-2 for (_, x), (_, y) in zip(got, expected))
    print("| mode | engine start (s) | suspend (s) | resume (s) | hand-off (s) | memory freed (GiB) | resume did | answers as a fresh engine |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['mode']} | {r['engine_start_s']} | {r['suspend_s']} | {r['resume_s']} | {r['hand_off_s']} | {r['memory_freed_gib']} | "
              f"{r['resume_did']} | {r['matches_fresh_engine']} |")
    if a.json:
        a.json.write_text(json.dumps({"model": a.model, "lora": a.lora, "results": results}, indent=1))


if __name__ == "__main__":
    main()
