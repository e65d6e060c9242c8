"""What every model-based scorer shares: which model judges, how it is reached, and cached requests.

`judge` option: `policy` (the model being scored: self-judging), `iter_<k>` (an earlier iteration of
this run), a local folder, a hub id or `builtin:<name>`. `backend` option: a backend config for the
judge (e.g. `{name: openai, base_url: ..., served_model: ...}` for a remote endpoint); default: the
run's own backend.
"""

from __future__ import annotations


from ..config import BackendConfig, ConfigError
from ..generation import Request, SamplingParams
from ..store import stable_hash
from .base import Scorer

COMMON_OPTIONS = ["judge", "backend"]


class ModelScorer(Scorer):
    """A scorer that asks a model; `bind(ctx, policy)` must be called before `score`."""

    needs_model = True

    def __init__(self, task, options):
        super().__init__(task, options)
        self.judge_ref = str(options.get("judge", "policy"))
        self.backend: BackendConfig | None = None
        if options.get("backend") is not None:
            try:
                self.backend = BackendConfig.model_validate(options["backend"])
            except Exception as e:  # pydantic message names the key
                raise ConfigError(f"score[{self.name}].options.backend: {e}") from None
        self.ctx = None
        self.model = None
        for key in [k for k in self.option_names() if k.endswith("template")]:
            name = options.get(key)
            if name is not None and not task.prompts.exists(name):
                raise ConfigError(f"score[{self.name}].options.{key}: no template {name!r} (known: {task.prompts.names()})")

    def bind(self, ctx, policy) -> None:
        """Resolve the judge model: the policy, an earlier iteration, or any model reference."""
        from ..stages.context import ModelRef, model_fingerprint
        from ..models import resolve_model

        self.ctx = ctx
        if self.judge_ref == "policy":
            self.model = policy
        elif self.judge_ref.startswith("iter_") and self.judge_ref[5:].isdigit():
            self.model = ctx.iteration_model(int(self.judge_ref[5:]))
        elif self.backend is not None and self.backend.name == "openai":
            self.model = ModelRef(self.judge_ref, self.judge_ref, f"openai:{self.backend.base_url}:{self.backend.served_model or self.judge_ref}")
        else:
            path = resolve_model(self.judge_ref)
            self.model = ModelRef(self.judge_ref, path, model_fingerprint(self.judge_ref, path))

    def _gen(self):
        if self.ctx is None:
            raise RuntimeError(f"scorer {self.name} was not bound to a model (call bind(ctx, policy) first)")
        return self.ctx.generator(self.model, self.backend)

    def _key(self, kind: str, payload) -> str:
        backend = self.backend.model_dump(exclude={"api_key_env"}) if self.backend else None
        return stable_hash([kind, self.model.fingerprint, backend, payload])

    def generate_cached(self, messages: list[list[dict]], params: SamplingParams, progress=None) -> list[list[dict]]:
        """Completions (as dicts: text, num_tokens, finish_reason) per message list; identical requests are asked once."""
        keys = [self._key("generate", [m, params.to_dict()]) for m in messages]

        def compute(idx: list[int]) -> list:
            outs = self._gen().generate([Request(str(i), messages[i]) for i in idx], params, progress=progress)
            return [[{"text": c.text, "num_tokens": c.num_tokens, "finish_reason": c.finish_reason} for c in comps] for comps in outs]

        return self.ctx.request_cache.map(keys, compute)

    def next_token_cached(self, messages: list[list[dict]], candidates: list[str], prefix: str = "") -> list[dict]:
        keys = [self._key("next_token", [m, candidates, prefix]) for m in messages]
        return self.ctx.request_cache.map(keys, lambda idx: self._gen().next_token_logprobs([Request(str(i), messages[i]) for i in idx], candidates, prefix))

    def score_texts_cached(self, messages: list[list[dict]], texts: list[str]) -> list[dict]:
        keys = [self._key("score_text", [m, t]) for m, t in zip(messages, texts)]

        def compute(idx: list[int]) -> list:
            res = self._gen().score_texts([Request(str(i), messages[i]) for i in idx], [texts[i] for i in idx])
            return [{"logprob_sum": r.logprob_sum, "num_tokens": r.num_tokens} for r in res]

        return self.ctx.request_cache.map(keys, compute)

    def user(self, template: str, **variables) -> list[dict]:
        return [{"role": "user", "content": self.task.prompts.render(template, **variables)}]


def response_of(sample: dict) -> str:
    return sample.get("completion") or ""
