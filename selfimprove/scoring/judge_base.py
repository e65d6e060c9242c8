"""What every model-based scorer shares: which model judges, how it is reached, and cached requests.

`judge` option: `policy` (the model being scored: self-judging), `iter_<k>` (an earlier iteration of
this run), a local folder, a hub id or `builtin:<name>`. `backend` option: a backend config for the
judge (e.g. `{name: openai, base_url: ..., served_model: ...}` for a remote endpoint); default: the
run's own backend.

A model scorer reaches its model through `bind(models, policy)`: `models` is anything with
`generator(model_ref, backend) -> Generator`, a `request_cache` and (for `iter_<k>` judges)
`iteration_model(k)`; the pipeline's run context is one, `Models` below is the plain library one, and
`use(generator)` binds a scorer to a generator you already hold.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from pydantic import Field, ValidationError, field_validator

from ..config.backend import parse_backend
from ..config.base import format_validation_error
from ..errors import ConfigError
from ..generation import Generator, Request, SamplingParams, check_backend, make_generator
from ..generation.base import per_request
from ..models import ModelRef, model_ref
from ..options import Options
from ..request_cache import RequestCache
from ..store import stable_hash
from .base import Scorer


class JudgeOptions(Options):
    judge: str = Field("policy", description="policy, iter_<k>, a folder, a hub id or builtin:<name>.")
    backend: dict[str, Any] | None = Field(None, description="Backend of the judge (default: the run's).")

    @field_validator("backend")
    @classmethod
    def _backend(cls, v):
        if v is not None:
            try:
                check_backend(parse_backend(v), "backend")  # a wrong key fails now, naming it
            except ValidationError as e:
                raise ValueError("; ".join(line.strip() for line in format_validation_error(e, "").splitlines()[1:])) from None
            except ConfigError as e:
                raise ValueError(str(e)) from None
        return v


class ModelAccess(Protocol):
    """What model scorers get: generators, a request cache, and (optionally) `finetune(start_path, rows, out_dir, cfg,
    device)`, which trains a model for a scorer that needs one of its own (ds_weight's valid-set model); scoring never
    imports training, so whoever builds the access hands it in (`training.sft.train_sft`; the run context does)."""

    request_cache: RequestCache
    finetune: Callable | None

    def generator(self, model: ModelRef, backend=None) -> Generator: ...


class Models:
    """Model access for library use: one generator at a time per (model, backend), built by `make_generator`;
    requests cached in memory, or in SQLite at `cache_path` so a rerun asks nothing twice. `finetune`: see
    ModelAccess (`Models(..., finetune=selfimprove.training.sft.train_sft)` for ds_weight)."""

    def __init__(self, backend: dict | Any | None = None, cache_path=None, finetune: Callable | None = None):
        self.backend = parse_backend(backend or {})
        self.request_cache = RequestCache(cache_path)
        self.finetune = finetune
        self._current: tuple[str, Generator] | None = None

    def iteration_model(self, k: int) -> ModelRef:
        raise ConfigError(f"judge: iter_{k} names a model of a pipeline run; outside a run, give its folder (runs/<name>/iter_{k}/train/model)")

    def generator(self, model: ModelRef, backend=None) -> Generator:
        backend = backend or self.backend
        key = stable_hash([model.fingerprint, backend.model_dump()])
        if self._current and self._current[0] == key:
            return self._current[1]
        self.close()
        self._current = (key, make_generator(backend, model.path))
        return self._current[1]

    def close(self) -> None:
        if self._current:
            self._current[1].close()
            self._current = None


class _Fixed:
    """Model access that always answers with one generator (`ModelScorer.use`)."""

    def __init__(self, generator: Generator, cache_path=None, finetune: Callable | None = None):
        self._gen = generator
        self.request_cache = RequestCache(cache_path)
        self.finetune = finetune

    def generator(self, model, backend=None) -> Generator:
        return self._gen


class ModelScorer(Scorer):
    """A scorer that asks a model; `bind(models, policy)` or `use(generator)` must be called before `score`."""

    needs_model = True
    Options = JudgeOptions

    def __init__(self, task, options=None, where=None):
        super().__init__(task, options, where)
        o = self.options
        self.judge_ref = o.judge
        self.backend = parse_backend(o.backend) if o.backend is not None else None
        self.models: ModelAccess | None = None
        self.model: ModelRef | None = None
        for key in [k for k in type(o).model_fields if k.endswith("template")]:
            task.prompts.require(getattr(o, key), f"{where or 'score[' + self.name + '].options'}.{key}")

    def bind(self, models: ModelAccess, policy: ModelRef) -> None:
        """Resolve the judge model (the policy, an earlier iteration, or any model reference) and how to reach it."""
        self.models = models
        if self.judge_ref == "policy":
            self.model = policy
        elif self.judge_ref.startswith("iter_") and self.judge_ref[5:].isdigit():
            self.model = models.iteration_model(int(self.judge_ref[5:]))
        elif self.backend is not None and self.backend.name == "openai":
            self.model = ModelRef(self.judge_ref, self.judge_ref, f"openai:{self.backend.base_url}:{self.backend.served_model or self.judge_ref}")
        else:
            self.model = model_ref(self.judge_ref)

    def without_models(self) -> "ModelScorer":
        """A copy that holds no model access (unbound), e.g. to send to another process, where it is bound again."""
        import copy

        other = copy.copy(self)
        other.models, other.model = None, None
        return other

    def use(self, generator: Generator, fingerprint: str = "direct", cache_path=None) -> "ModelScorer":
        """Judge with `generator` (any backend instance); `fingerprint` keys the request cache."""
        self.models = _Fixed(generator, cache_path)
        self.model = ModelRef(fingerprint, fingerprint, fingerprint)
        return self

    @property
    def bound(self) -> bool:
        return self.models is not None

    def _gen(self) -> Generator:
        if self.models is None:
            raise RuntimeError(f"scorer {self.name} was not bound to a model (call bind(models, policy) or use(generator) first)")
        return self.models.generator(self.model, self.backend)

    def _key(self, kind: str, payload) -> str:
        if self.model is None:
            self._gen()  # raises the "not bound" error
        backend = {k: v for k, v in self.backend.identity().items() if k != "api_key_env"} if self.backend else None
        return stable_hash([kind, self.model.fingerprint, backend, payload])

    def generate_cached(self, messages: list[list[dict]], params: SamplingParams, progress=None) -> list[list[dict]]:
        """Completions (as dicts: text, num_tokens, finish_reason) per message list; identical requests are asked once."""
        keys = [self._key("generate", [m, params.to_dict()]) for m in messages]

        def compute(idx: list[int]) -> list:
            outs = self._gen().generate([Request(str(i), messages[i]) for i in idx], params, progress=progress)
            return [[{"text": c.text, "num_tokens": c.num_tokens, "finish_reason": c.finish_reason} for c in comps] for comps in outs]

        return self._cache().map(keys, compute)

    def next_token_cached(self, messages: list[list[dict]], candidates: list[str], prefix: str | list[str] = "") -> list[dict]:
        """`next_token_logprobs` through the request cache; `prefix`: one for all messages or one per message."""
        prefixes = per_request(prefix, len(messages))
        keys = [self._key("next_token", [m, candidates, p]) for m, p in zip(messages, prefixes)]
        return self._cache().map(keys, lambda idx: self._gen().next_token_logprobs([Request(str(i), messages[i]) for i in idx], candidates,
                                                                                  [prefixes[i] for i in idx]))

    def score_texts_cached(self, messages: list[list[dict]], texts: list[str], end: bool = False) -> list[dict]:
        """`score_texts` through the request cache (`end`: the end-of-turn token scored after each text)."""
        keys = [self._key("score_text", [m, t] + (["end"] if end else [])) for m, t in zip(messages, texts)]

        def compute(idx: list[int]) -> list:
            res = self._gen().score_texts([Request(str(i), messages[i]) for i in idx], [texts[i] for i in idx], end=end)
            return [{"logprob_sum": r.logprob_sum, "num_tokens": r.num_tokens} for r in res]

        return self._cache().map(keys, compute)

    def _cache(self) -> RequestCache:
        if self.models is None:
            self._gen()
        return self.models.request_cache

    def user(self, template: str, **variables) -> list[dict]:
        return [{"role": "user", "content": self.task.prompts.render(template, **variables)}]


def bind_scorers(scorers, models: ModelAccess, policy: ModelRef) -> dict[str, str]:
    """Point every model-based scorer at its model; returns {scorer name: judge model fingerprint}."""
    out = {}
    for sc in scorers:
        if sc.needs_model:
            sc.bind(models, policy)
            out[sc.name] = sc.model.fingerprint
    return out


def response_of(sample: dict) -> str:
    return sample.get("completion") or ""
