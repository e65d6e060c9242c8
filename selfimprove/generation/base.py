"""The generator interface every backend implements: chat requests in, n completions each out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

from ..config.sampling import SamplingParams


@dataclass
class Request:
    """One prompt: an id (for lineage) and its chat messages."""

    request_id: str
    messages: list[dict]


@dataclass
class Completion:
    text: str
    num_tokens: int
    logprob_sum: float | None
    finish_reason: str  # "stop" (EOS or a stop string) or "length"


@dataclass
class TextScore:
    """Log-likelihood of an existing text under the model: sum over its tokens and the token count."""

    logprob_sum: float
    num_tokens: int

    @property
    def mean(self) -> float:
        return self.logprob_sum / self.num_tokens if self.num_tokens else 0.0


@dataclass
class GeneratorInfo:
    backend: str
    model: str
    extra: dict = field(default_factory=dict)


ProgressFn = Callable[[int], None]


class Generator(ABC):
    """Backend interface: `generate(requests, params) -> [[Completion] * n for each request]`."""

    info: GeneratorInfo

    @abstractmethod
    def generate(self, requests: list[Request], params: SamplingParams, progress: ProgressFn | None = None) -> list[list[Completion]]:
        """Return `params.n` completions per request, in request order; call `progress(k)` as k requests finish."""

    def score_texts(self, requests: list[Request], continuations: list[str], end: bool = False) -> list[TextScore]:
        """Teacher-forced log-likelihood of each continuation as the assistant's reply to its request; with `end`, of
        the reply and then the end of the turn (`end_of_turn_id`): the probability of exactly this reply, so an
        empty or cut-off reply is charged for ending there."""
        raise NotImplementedError(f"backend {self.info.backend} cannot score existing text (use transformers or vllm)")

    def next_token_logprobs(self, requests: list[Request], candidates: list[str], prefix: str | list[str] = "") -> list[dict[str, float | None]]:
        """Log-prob of each candidate's first token right after `prefix` at the start of the assistant's reply
        (None: not among the log-probs the backend returns). `prefix`: one for all requests, or one per request (a
        judge's own written judgment followed by `Score: `)."""
        raise NotImplementedError(f"backend {self.info.backend} does not return token log-probabilities")

    def close(self) -> None:  # noqa: B027 (optional: backends holding nothing need not free anything)
        """Free the model (and GPU memory)."""

    def suspend(self) -> bool:
        """Free the accelerator for training. True when the engine stays (asleep or loaded) and `resume` brings a model
        back onto it; by default it is closed (False)."""
        self.close()
        return False

    def resume(self, model_path: str) -> str:
        """Make `model_path` this engine's model again after `suspend` returned True; says what it did."""
        raise NotImplementedError(f"backend {self.info.backend} does not keep its engine across training")


def per_request(prefix: str | list[str], n: int) -> list[str]:
    """`next_token_logprobs`' prefix as one string per request."""
    if isinstance(prefix, str):
        return [prefix] * n
    if len(prefix) != n:
        raise ValueError(f"{len(prefix)} prefixes for {n} requests")
    return list(prefix)


def candidate_tokens(encode: Callable[[str], list[int]], text: str, candidates: list[str]) -> tuple[list[int], dict[str, int]]:
    """Context ids and one distinguishing token per candidate continuation of `text`.

    Tokenizes `text + c` for every candidate, keeps the tokens they all share as context (so "Score: 4"
    split as `Score`, `:`, ` `, `4` puts the space in the context), and returns each candidate's first
    token after it.
    """
    fulls = [encode(text + c) for c in candidates]
    n = 0
    while all(len(f) > n for f in fulls) and len({f[n] for f in fulls}) == 1:
        n += 1
    cand = {}
    for c, f in zip(candidates, fulls):
        if len(f) <= n:
            raise ValueError(f"candidate {c!r} cannot be told apart from the others after {text[-20:]!r}")
        cand[c] = f[n]
    if len(set(cand.values())) < len(cand):
        raise ValueError(f"candidates {candidates} share a first token")
    return fulls[0][:n], cand


def end_of_turn_id(tok) -> int:
    """The token a chat model writes to end its reply: the first special token the chat template puts after an
    assistant message's text (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`), else the tokenizer's EOS."""
    marker = "\u2063reply\u2063"
    try:
        text = tok.apply_chat_template([{"role": "user", "content": "q"}, {"role": "assistant", "content": marker}], tokenize=False)
    except Exception:  # no chat template, or one that cannot end with an assistant message
        text = ""
    special = set(getattr(tok, "all_special_ids", []) or [])
    if marker in text:
        for t in tok(text.split(marker, 1)[1], add_special_tokens=False).input_ids:
            if t in special:
                return int(t)
    if tok.eos_token_id is None:
        raise ValueError("the tokenizer has no chat template end-of-turn token and no eos_token_id: cannot score the end of a reply")
    return int(tok.eos_token_id)


def cut_at_stop(text: str, stops: tuple[str, ...] | list[str]) -> tuple[str, bool]:
    """Cut `text` before the earliest stop string; report whether one was found.

    >>> cut_at_stop("x = 2\\n\\nQuestion: next", ["Question:"])
    ('x = 2\\n\\n', True)
    """
    best = None
    for s in stops:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (best is None or i < best):
            best = i
    if best is None:
        return text, False
    return text[:best], True
