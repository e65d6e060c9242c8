"""OpenAI-compatible backend: any server speaking /v1/chat/completions or /v1/completions
(`vllm serve`, SGLang, llama.cpp's server, hosted APIs), through the official `openai` client.

Requests run `concurrency` at a time; the client retries 429, 5xx, connection errors and timeouts
with exponential backoff (`max_retries`). The API key is read from the environment variable named by
`api_key_env` and is never written to manifests or logs. Teacher-forced scoring (`score_texts`) uses
vLLM's `prompt_logprobs` extension, so it needs a vLLM server; next-token reads (judges' log-prob verdicts) are
token-exact where the server has vLLM's `/tokenize`, matched on token text elsewhere.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

from ..errors import ConfigError, ModelError
from ..optional import require
from .base import Completion, Generator, GeneratorInfo, ProgressFn, Request, SamplingParams, TextScore, candidate_tokens, per_request

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
        self._tokenizes: bool | None = None  # whether the server answers /tokenize (asked on the first next-token read)
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
        """Log-probs of each candidate as the next token after the chat and an optional assistant `prefix`.

        Where the server tokenizes (vLLM's `/tokenize`), the read is token-exact as on the local backends: the chat with
        `prefix + candidate` is tokenized per candidate, the shared tokens are the context (so the space of "Score: " goes
        where the tokenizer puts it) and each candidate's next token is read from the top 20 by id. Elsewhere the prefix
        is sent as a partial assistant message and candidates are matched on token text without spaces (a prefix ending
        in a space may then leave the candidates out of the top 20)."""
        items = list(zip(requests, per_request(prefix, len(requests))))
        if items and self._token_exact(items[0][0], items[0][1] + candidates[0]):
            return self._map(lambda item: self._read_by_ids(item[0], item[1], candidates), items)
        return self._map(lambda item: self._read_by_text(item[0], item[1], candidates), items)

    def _token_exact(self, req: Request, reply: str) -> bool:
        """Whether the server answers `/tokenize` for chats (asked once per generator)."""
        if self._tokenizes is None:
            self._tokenizes = self._tokenize(list(req.messages) + [{"role": "assistant", "content": reply}]) is not None
            if not self._tokenizes:
                log.warning("openai backend: %s has no /tokenize; next-token reads match token text (a prefix ending in a space may "
                            "miss the candidates)", self._root_url())
        return self._tokenizes

    def _root_url(self) -> str:
        base = str(self.client.base_url).rstrip("/")
        return base[: -len("/v1")] if base.endswith("/v1") else base

    def _tokenize(self, messages: list[dict]) -> list[int] | None:
        """Token ids of a chat whose last (assistant) message is left open, by the server's `/tokenize` (vLLM, SGLang);
        None where the server has no such endpoint or answers in another shape."""
        body = {"model": self.model, "messages": messages, "add_generation_prompt": False, "continue_final_message": True}
        try:
            out = self.client.post(self._root_url() + "/tokenize", cast_to=object, body=body)
        except self.openai.APIStatusError as e:
            if e.status_code in (401, 403):
                raise ModelError(f"openai backend: the server rejected the API key ({e.status_code})") from None
            return None
        except self.openai.APIConnectionError as e:
            raise ModelError(f"openai backend: cannot reach {self.client.base_url} after retries: {e}") from None
        tokens = out.get("tokens") if isinstance(out, dict) else None
        return [int(t) for t in tokens] if isinstance(tokens, list) else None

    def _read_by_ids(self, req: Request, prefix: str, candidates: list[str]) -> dict[str, float | None]:
        def encode(text: str) -> list[int]:
            ids = self._tokenize(list(req.messages) + [{"role": "assistant", "content": text}])
            if ids is None:
                raise ModelError(f"openai backend: {self._root_url()}/tokenize stopped answering")
            return ids

        context, ids = candidate_tokens(encode, prefix, candidates)
        resp = self._call(self.client.completions.create, prompt=context, max_tokens=1, temperature=0.0, logprobs=20,
                          extra_body={"return_tokens_as_token_ids": True})
        lp = resp.choices[0].logprobs
        top = (lp.top_logprobs[0] if lp is not None and lp.top_logprobs else None) or {}
        by_id = {int(k.split(":", 1)[1]): v for k, v in top.items() if k.startswith("token_id:")}
        if top and not by_id:  # tokens came back as text (the server ignores return_tokens_as_token_ids): read by text
            self._tokenizes = False
            return self._read_by_text(req, prefix, candidates)
        return {c: by_id.get(ids[c]) for c in candidates}

    def _read_by_text(self, req: Request, prefix: str, candidates: list[str]) -> dict[str, float | None]:
        msgs, extra = req.messages, None
        if prefix:
            msgs = list(req.messages) + [{"role": "assistant", "content": prefix}]
            extra = {"add_generation_prompt": False, "continue_final_message": True}
        resp = self._call(self.client.chat.completions.create, messages=msgs, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=20,
                          extra_body=extra)
        content = resp.choices[0].logprobs.content if resp.choices[0].logprobs else None
        top: dict[str, float] = {}
        for t in content[0].top_logprobs if content else []:  # " A" and "A" both read as A: the likelier one counts
            key = t.token.strip()
            top[key] = max(t.logprob, top.get(key, float("-inf")))
        return {c: top.get(c.strip()) for c in candidates}

    def score_texts(self, requests: list[Request], continuations: list[str], end: bool = False) -> list[TextScore]:
        def one(item) -> TextScore:
            req, cont = item
            base = self._call(self.client.chat.completions.create, messages=req.messages, max_tokens=1, temperature=0.0)
            prompt_len = base.usage.prompt_tokens
            msgs = list(req.messages) + [{"role": "assistant", "content": cont}]
            open_reply = {"add_generation_prompt": False, "continue_final_message": True}
            stop = None
            if end:  # the reply as a finished turn: its tokens and the first the template puts after them (end of turn)
                stop = self._call(self.client.chat.completions.create, messages=msgs, max_tokens=1, temperature=0.0,
                                  extra_body=open_reply).usage.prompt_tokens + 1
                open_reply = {"add_generation_prompt": False, "continue_final_message": False}
            resp = self._call(self.client.chat.completions.create, messages=msgs, max_tokens=1, temperature=0.0,
                              extra_body={"prompt_logprobs": 0, **open_reply})
            plp = getattr(resp, "prompt_logprobs", None) or (resp.model_extra or {}).get("prompt_logprobs")
            if plp is None:
                raise ModelError("openai backend: the server returned no prompt_logprobs (scoring existing text needs a vLLM server)")
            values = [_actual(d) for d in plp[prompt_len:stop] if d]
            return TextScore(float(sum(values)), len(values))

        return self._map(one, list(zip(requests, continuations)))

    def close(self) -> None:
        self.client.close()


def _actual(entry: dict) -> float:
    """vLLM's prompt_logprobs entry: {token_id: {logprob, rank, decoded_token}}; with prompt_logprobs=0 it holds only the prompt's own token."""
    first = next(iter(entry.values()))
    return float(first["logprob"] if isinstance(first, dict) else first)
