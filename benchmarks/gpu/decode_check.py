"""The pruned decoder against `model.generate` on one machine, in one run: greedy parity and tokens/s.

    python benchmarks/gpu/decode_check.py MODEL_DIR [--batches 1,32,256] [--new-tokens 128] [--json OUT]

1. parity (float32): greedy token ids of `decode_pruned` and of `model.generate` on 32 chat prompts of
   different lengths, row by row; and the KV-cache keyword this transformers version takes;
2. the loud failure: the decoder called with the other keyword either decodes the same ids (the version
   accepts both names) or raises BackendError, never returns context-free text;
3. throughput (bf16 on CUDA, float32 on CPU): tokens/s of both at each batch size, the same prompts and
   token budget, after a warm-up; with random weights rows rarely stop early, so this measures per-step cost.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from selfimprove.errors import BackendError  # noqa: E402
from selfimprove.generation import decode  # noqa: E402


def prompts(tok, n: int) -> list[str]:
    qs = [f"What is {a} + {b}?" + " Think step by step." * (a % 4) for a, b in zip(range(10, 10 + n), range(37, 37 + 3 * n, 3))]
    return [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True) for q in qs]


def encode(tok, texts, device):
    return tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def pruned(model, tok, enc, new_tokens, eos):
    rows = decode.decode_pruned(model, tok, enc.input_ids, enc.attention_mask, max_new_tokens=new_tokens, temperature=0.0,
                                top_p=1.0, eos_ids=eos, logprobs=False)
    return [r.tokens for r in rows]


def generated(model, tok, enc, new_tokens, eos):
    out = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                         pad_token_id=tok.pad_token_id)
    rows = []
    for ids in out[:, enc.input_ids.shape[1]:].tolist():
        cut = next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))
        rows.append(ids[:cut])
    return rows


def load(path, dtype, device):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos]) | {tok.eos_token_id, tok.pad_token_id}
    eos.discard(None)
    return model, tok, eos


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--batches", default="1,32,256")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--parity-tokens", type=int, default=48)
    ap.add_argument("--parity-rows", type=int, default=32)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    import transformers

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    res = {"transformers": transformers.__version__, "torch": torch.__version__, "device": str(device),
           "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None}

    model, tok, eos = load(args.model, torch.float32, device)
    res["cache_keyword"] = decode.cache_keyword(model)
    enc = encode(tok, prompts(tok, args.parity_rows), device)
    a, b = pruned(model, tok, enc, args.parity_tokens, eos), generated(model, tok, enc, args.parity_tokens, eos)
    res["parity"] = {"rows": len(a), "equal_rows": sum(x == y for x, y in zip(a, b)), "tokens": sum(map(len, a))}
    other = "cache" if res["cache_keyword"] == "past_key_values" else "past_key_values"
    real = decode.cache_keyword
    decode.cache_keyword = lambda m: other
    try:
        c = pruned(model, tok, enc, args.parity_tokens, eos)
        res["other_keyword"] = {"keyword": other, "result": "same ids" if c == a else "DIFFERENT IDS (context lost?)"}
    except BackendError as e:
        res["other_keyword"] = {"keyword": other, "result": f"refused: {str(e)[:160]}"}
    finally:
        decode.cache_keyword = real
    print(json.dumps(res), flush=True)

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model, tok, eos = load(args.model, dtype, device)
    res["throughput"] = {"dtype": str(dtype), "new_tokens": args.new_tokens, "batches": []}
    for bs in [int(x) for x in args.batches.split(",")]:
        enc = encode(tok, (prompts(tok, 32) * (bs // 32 + 1))[:bs], device)
        row = {"batch": bs}
        for name, fn in (("pruned", pruned), ("generate", generated)):
            fn(model, tok, enc, 8, eos)  # warm-up
            sync(device)
            t = time.perf_counter()
            out = fn(model, tok, enc, args.new_tokens, eos)
            sync(device)
            secs = time.perf_counter() - t
            row[name] = {"seconds": round(secs, 3), "tokens": sum(map(len, out)), "tokens_per_s": round(sum(map(len, out)) / secs, 1)}
        row["ratio_pruned_over_generate"] = round(row["pruned"]["tokens_per_s"] / row["generate"]["tokens_per_s"], 2)
        res["throughput"]["batches"].append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    print(json.dumps(res))
    ok = res["parity"]["equal_rows"] == res["parity"]["rows"] and not res["other_keyword"]["result"].startswith("DIFFERENT")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
