"""OpenAI-compatible backend: any server speaking /v1/chat/completions or /v1/completions
(`vllm serve`, SGLang, llama.cpp's server, hosted APIs), through the official `openai` client.

Requests run `concurrency` at a time; the client retries 429, 5xx, connection errors and timeouts
with exponential backoff (`max_retries`). The API key is read from the environment variable named by
`api_key_env` and is never written to manifests or logs. Teacher-forced scoring (`score_texts`) uses
vLLM's `prompt_logprobs` extension, so it needs a vLLM server.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

from ..errors import ConfigError, ModelError
from ..optional import require
from .base import Completion, Generator, GeneratorInfo, ProgressFn, Request, SamplingParams, TextScore, per_request

log = logging.getLogger("selfimprove.generation")


class OpenAIGenerator(Generator):
    def __init__(self, model, backend, adapter=None):
        if adapter is not None:
            raise ConfigError("the openai backend serves adapters by name: load the LoRA on the server and set backend.served_model")
        require("openai", "backend.name")
        import openai

        if not backend.base_url:
            raise ConfigError("backend.base_url: the openai backend needs the server URL, e.g. http://localhost:8000/v1")
        key = "EMPTY"
        if backend.api_key_env:
            key = os.environ.get(backend.api_key_env, "")
            if not key:
                raise ConfigError(f"backend.api_key_env: environment variable {backend.api_key_env} is not set")
        self.openai = openai
        self.client = openai.OpenAI(base_url=backend.base_url, api_key=key, max_retries=backend.max_retries, timeout=backend.request_timeout)
        self.model = backend.served_model or str(model)
        self.api = backend.api
        self.concurrency = backend.concurrency
        self.info = GeneratorInfo("openai", self.model, {"base_url": backend.base_url, "api": self.api})

    def _map(self, fn, items: list, progress: ProgressFn | None = None) -> list:
        def run(item):
            try:
                return fn(item)
            finally:
                if progress:
                    progress(1)

        if len(items) <= 1 or self.concurrency == 1:
            return [run(i) for i in items]
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(run, items))

    def _call(self, create, **kw):
        try:
            return create(model=self.model, **kw)
        except self.openai.AuthenticationError as e:
            raise ModelError(f"openai backend: the server rejected the API key ({e.status_code})") from None
        except self.openai.NotFoundError as e:
            raise ModelError(f"openai backend: model {self.model!r} not found on the server: {e.message}") from None
        except self.openai.APIConnectionError as e:
            raise ModelError(f"openai backend: cannot reach {self.client.base_url} after retries: {e}") from None

    def generate(self, requests: list[Request], params: SamplingParams, progress: ProgressFn | None = None) -> list[list[Completion]]:
        kw = dict(n=params.n, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_tokens, seed=params.seed)
        if params.stop:
            kw["stop"] = list(params.stop)
        if params.logprobs:
            kw["logprobs"] = True if self.api == "chat" else 1

        def one(req: Request) -> list[Completion]:
            if self.api == "chat":
                resp = self._call(self.client.chat.completions.create, messages=req.messages, **kw)
                return [self._from_chat(c) for c in sorted(resp.choices, key=lambda c: c.index)]
            prompt = req.messages[-1]["content"]
            resp = self._call(self.client.completions.create, prompt=prompt, **kw)
            return [self._from_text(c) for c in sorted(resp.choices, key=lambda c: c.index)]

        return self._map(one, requests, progress)

    @staticmethod
    def _from_chat(c) -> Completion:
        tokens = c.logprobs.content if c.logprobs is not None and c.logprobs.content else None
        lp = float(sum(t.logprob for t in tokens)) if tokens else None
        return Completion(c.message.content or "", len(tokens) if tokens else 0, lp, "length" if c.finish_reason == "length" else "stop")

    @staticmethod
    def _from_text(c) -> Completion:
        lps = c.logprobs.token_logprobs if c.logprobs is not None else None
        lp = float(sum(x for x in lps if x is not None)) if lps else None
        return Completion(c.text or "", len(lps) if lps else 0, lp, "length" if c.finish_reason == "length" else "stop")

    def next_token_logprobs(self, requests: list[Request], candidates: list[str], prefix: str | list[str] = "") -> list[dict[str, float | None]]:
        """Top-20 log-probs of the first reply token; a `prefix` is sent as a partial assistant message
        (vLLM's `continue_final_message`). Candidates are matched on the token text without spaces."""

        def one(item) -> dict[str, float | None]:
            req, prefix = item
            msgs, extra = req.messages, None
            if prefix:
                msgs = list(req.messages) + [{"role": "assistant", "content": prefix}]
                extra = {"add_generation_prompt": False, "continue_final_message": True}
            resp = self._call(self.client.chat.completions.create, messages=msgs, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=20,
                              extra_body=extra)
            content = resp.choices[0].logprobs.content if resp.choices[0].logprobs else None
            top = {t.token.strip(): t.logprob for t in content[0].top_logprobs} if content else {}
            return {c: top.get(c.strip()) for c in candidates}

        return self._map(one, list(zip(requests, per_request(prefix, len(requests)))))

    def score_texts(self, requests: list[Request], continuations: list[str]) -> list[TextScore]:
        def one(item) -> TextScore:
            req, cont = item
            base = self._call(self.client.chat.completions.create, messages=req.messages, max_tokens=1, temperature=0.0)
            prompt_len = base.usage.prompt_tokens
            msgs = list(req.messages) + [{"role": "assistant", "content": cont}]
            extra = {"prompt_logprobs": 0, "add_generation_prompt": False, "continue_final_message": True}
            resp = self._call(self.client.chat.completions.create, messages=msgs, max_tokens=1, temperature=0.0, extra_body=extra)
            plp = getattr(resp, "prompt_logprobs", None) or (resp.model_extra or {}).get("prompt_logprobs")
            if plp is None:
                raise ModelError("openai backend: the server returned no prompt_logprobs (scoring existing text needs a vLLM server)")
            values = [_actual(d) for d in plp[prompt_len:] if d]
            return TextScore(float(sum(values)), len(values))

        return self._map(one, list(zip(requests, continuations)))

    def close(self) -> None:
        self.client.close()


def _actual(entry: dict) -> float:
    """vLLM's prompt_logprobs entry: {token_id: {logprob, rank, decoded_token}}; with prompt_logprobs=0 it holds only the prompt's own token."""
    first = next(iter(entry.values()))
    return float(first["logprob"] if isinstance(first, dict) else first)
