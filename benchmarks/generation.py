"""Generation throughput: the quickstart's generate stage vs a plain `model.generate` loop, and the
transformers backend against plain `model.generate` at batch 1/8/32/64 (the same prompts, one sample each), with
the fraction of this machine's fp32 compute roofline.

    python benchmarks/generation.py [--prompts 32] [--batches 1,8,32,64] [--repeats 2]

Roofline: a decode step costs 2 x parameters x batch FLOP, so at F FLOP/s (measured here with a
large fp32 matmul) no batch can exceed F / (2 x parameters) tokens/s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from selfimprove.config import load_pipeline
from selfimprove.generation import Request, SamplingParams, make_generator
from selfimprove.models import resolve_model
from selfimprove.pipeline.loop import prepare

REPO = Path(__file__).resolve().parents[1]


def matmul_gflops(size: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    t = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * size**3 * reps / (time.perf_counter() - t) / 1e9


def linears_ceiling(model, batch: int, reps: int = 3) -> float:
    """Tokens/s a decode step could reach at `batch` rows if it did nothing but the model's matrix products (every
    linear layer and the output head, on a random input of that many rows, weights as they lie in memory): the
    ceiling of any exact decoder at that batch on this machine."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    xs = {m.in_features: torch.randn(batch, m.in_features) for m in linears}

    def step():
        for m in linears:
            m(xs[m.in_features])

    with torch.inference_mode():
        step()
        t = time.perf_counter()
        for _ in range(reps):
            step()
    return batch * reps / (time.perf_counter() - t)


def plain_generate(model, tok, texts: list[str], n: int, temperature: float, max_tokens: int, prompts_per_batch: int, seed: int) -> int:
    """The loop people write by hand: fixed batches in input order, num_return_sequences, no log-probs."""
    torch.manual_seed(seed)
    tokens = 0
    for i in range(0, len(texts), prompts_per_batch):
        enc = tok(texts[i : i + prompts_per_batch], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **enc, do_sample=temperature > 0, temperature=temperature, top_k=0, max_new_tokens=max_tokens,
                num_return_sequences=n, pad_token_id=tok.pad_token_id,
            )
        new = out[:, enc.input_ids.shape[1]:]
        for row in new.tolist():
            tokens += next((j + 1 for j, t in enumerate(row) if t == tok.eos_token_id), len(row))
    return tokens


def ours(gen, requests, params) -> int:
    outs = gen.generate(requests, params)
    return sum(c.num_tokens for o in outs for c in o)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", default=str(REPO / "pipelines" / "quickstart.yaml"))
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--repeats", type=int, default=2, help="runs per side and batch (alternating; the best counts)")
    args = ap.parse_args()

    cfg = load_pipeline(args.pipeline)
    ctx, (train_rows, _) = prepare(cfg)
    rows = train_rows[: args.prompts]
    g = cfg.generate
    params = SamplingParams(n=g.n, temperature=g.temperature, top_p=g.top_p, max_tokens=g.max_tokens, seed=g.seed)
    path = resolve_model(cfg.model)
    gen = make_generator(cfg.backend, path)
    requests = [Request(r["prompt_id"], r["messages"]) for r in rows]
    texts = [gen.render(r.messages) for r in requests]
    n_params = sum(p.numel() for p in gen.model.parameters())
    threads = torch.get_num_threads()
    gflops = matmul_gflops()
    roof = gflops * 1e9 / (2 * n_params)
    print(f"model {cfg.model}: {n_params / 1e6:.1f}M parameters, torch threads {threads}")
    print(f"fp32 matmul: {gflops:.1f} GFLOP/s -> roofline {roof:.0f} tokens/s (any batch)\n")

    ours(gen, requests[:2], params)  # warm-up
    t = time.perf_counter()
    ours_tokens = ours(gen, requests, params)
    ours_s = time.perf_counter() - t
    t = time.perf_counter()
    plain_tokens = plain_generate(gen.model, gen.tok, texts, g.n, g.temperature, g.max_tokens, max(1, cfg.backend.batch_size // g.n), g.seed)
    plain_s = time.perf_counter() - t
    o, p = ours_tokens / ours_s, plain_tokens / plain_s
    print(f"quickstart generate stage ({len(rows)} prompts x n={g.n}, T={g.temperature}, max_tokens={g.max_tokens}, batch {cfg.backend.batch_size}):")
    print(f"  selfimprove  {ours_tokens:6d} tokens in {ours_s:6.1f}s = {o:6.1f} tokens/s ({o / roof:.0%} of roofline)")
    print(f"  plain        {plain_tokens:6d} tokens in {plain_s:6.1f}s = {p:6.1f} tokens/s ({p / roof:.0%} of roofline)")
    print(f"  ratio ours/plain = {o / p:.2f}\n")

    print("| batch (sequences) | selfimprove tokens/s | plain generate tokens/s | ratio | selfimprove, fraction of roofline | matrix products only (ceiling) |")
    print("|---|---|---|---|---|---|")
    for b in [int(x) for x in args.batches.split(",")]:
        gen.batch_size = b
        reqs = (requests * ((b + len(requests) - 1) // len(requests)))[:b]
        reqs_texts = [gen.render(r.messages) for r in reqs]
        bp = SamplingParams(n=1, temperature=g.temperature, max_tokens=g.max_tokens, seed=1)
        rate = plain_rate = 0.0
        for _ in range(args.repeats):  # alternating, the best of each side (this machine's speed drifts)
            t = time.perf_counter()
            toks = ours(gen, reqs, bp)
            rate = max(rate, toks / (time.perf_counter() - t))
            t = time.perf_counter()
            plain_toks = plain_generate(gen.model, gen.tok, reqs_texts, 1, g.temperature, g.max_tokens, b, 1)
            plain_rate = max(plain_rate, plain_toks / (time.perf_counter() - t))
        print(f"| {b} | {rate:.1f} | {plain_rate:.1f} | {rate / plain_rate:.2f} | {rate / roof:.1%} | {linears_ceiling(gen.model, b):.0f} |", flush=True)

if __name__ == "__main__":
    main()
