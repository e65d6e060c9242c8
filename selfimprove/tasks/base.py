"""Task interface: where prompts come from, how they are phrased, how answers are read and checked."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Set as AbstractSet
from typing import Any, ClassVar

from pydantic import BaseModel

from ..config import ConfigError, SplitConfig, TaskConfig
from ..options import NoOptions, validate_options
from ..prompts import PromptLibrary
from .answers import gold_answer
from .equivalence import shared_equivalence

# a completion longer than this is not parsed (no answer): what a scorer reads from untrusted text stays bounded
MAX_COMPLETION_CHARS = 1_000_000


class Task(ABC):
    """A task turns a split config into prompt rows and grades completions against `reference`.

    Prompt rows (the `prompts` table): `prompt_id`, `messages`, `reference`, `task`, `question`, `meta` (JSON object as text).
    """

    name: ClassVar[str]
    default_template: ClassVar[str]
    default_system_template: ClassVar[str | None] = None
    Options: ClassVar[type[BaseModel]] = NoOptions
    fields: ClassVar[tuple[str, ...]] = ()  # logical fields a dataset row must map to
    outcome_column: ClassVar[bool] = False  # code tasks also report a per-sample `outcome` (passed, timeout, ...)
    generated: ClassVar[bool] = False  # problems come from a seeded generator, which can draw around held-out ones
    kind: ClassVar[str] = "answer"  # "answer": a final answer compared by `check`; "code": a program run against tests
    heldout_key: ClassVar[str] = "the question text with whitespace runs collapsed to one space and the ends stripped (case kept)"

    def __init__(self, cfg: TaskConfig, prompts: PromptLibrary):
        self.options = validate_options(self.Options, cfg.options, "task.options")
        self.prompts = prompts
        self.cfg = cfg  # the `task:` section it was built from (part of stage configs)
        self.template = cfg.prompt_template or self.default_template
        self.system_template = cfg.system_prompt_template or self.default_system_template
        prompts.require(self.template, "task.prompt_template")
        prompts.require(self.system_template, "task.system_prompt_template")

    def template_info(self) -> dict:
        info = {"template": self.template, "template_sha": self.prompts.digest(self.template)}
        if self.system_template:
            info.update(system_template=self.system_template, system_template_sha=self.prompts.digest(self.system_template))
        return info

    def messages(self, question: str) -> list[dict]:
        msgs = []
        if self.system_template:
            msgs.append({"role": "system", "content": self.prompts.render(self.system_template)})
        msgs.append({"role": "user", "content": self.prompts.render(self.template, question=question)})
        return msgs

    def load(self, split: SplitConfig, where: str, exclude: AbstractSet[str] = frozenset()) -> list[dict]:
        """Prompt rows for one split; `where` is the YAML path (`data.train`) used in error messages.

        `exclude`: problem keys (`problem_key`) a generated task must not produce, i.e. the eval split's when
        loading train. A dataset task reads what its source holds; the caller drops and counts its overlap.
        """
        if exclude and not self.generated:
            raise TypeError(f"task {self.name} reads a dataset and cannot exclude problems; drop overlapping rows instead")
        rows = []
        for item in self.load_items(split, where, exclude) if exclude else self.load_items(split, where):
            rows.append(
                {
                    "prompt_id": str(item["prompt_id"]),
                    "task": self.name,
                    "question": item["question"],
                    "reference": item["reference"],
                    "messages": self.messages(item["question"]),
                    "meta": json.dumps({k: v for k, v in (item.get("meta") or {}).items()}, sort_keys=True, default=str),
                }
            )
        ids = [r["prompt_id"] for r in rows]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{where}: prompt ids are not unique")
        return rows

    def problem_key(self, row: dict) -> str:
        """What makes two prompt rows the same problem, for keeping eval problems out of training (see `heldout_key`)."""
        return normalize_question(row["question"])

    @abstractmethod
    def load_items(self, split: SplitConfig, where: str) -> list[dict[str, Any]]:
        """Dicts with `prompt_id`, `question`, `reference` (gold answer string), optional `meta`."""

    @abstractmethod
    def extract_answer(self, completion: str) -> str | None:
        """The final answer stated in a completion, or None."""

    working_version = 1  # of the `shows_working` rule; a new rule re-runs refine stages that drop by it

    def shows_working(self, completion: str) -> bool:
        """Whether a completion derives its answer rather than only stating it (`refine.require_working`); tasks that
        have no such notion (code, free-form answers) accept every completion."""
        return True

    def read_answer(self, completion: str, prompt: dict | None = None) -> str | None:
        """The answer scorers read from one completion of `prompt` (its prompt row, when known): `extract_answer`, or
        None for a completion over MAX_COMPLETION_CHARS, so parsing untrusted text stays bounded."""
        if not completion or len(completion) > MAX_COMPLETION_CHARS:
            return None
        return self.extract_answer(completion)

    def normalize_reference(self, text: str) -> str:
        """A gold answer as a user's data gives it (judge jobs' `reference`), in the form `check` compares: for
        answer tasks, GSM8K's `#### n`, a `\\boxed{}`, "the answer is", or the text itself (`tasks.answers.gold_answer`)."""
        return gold_answer(text)

    def check(self, references: list[str], answers: list[str | None]) -> list[tuple[bool, str | None]]:
        """(correct, error) per pair, by math-verify equivalence."""
        return shared_equivalence().same(list(zip(references, answers)))

    def check_detailed(self, references: list[str], answers: list[str | None], progress=None) -> list[dict]:
        """`correct`, `error` (and `outcome` for code tasks) per pair; `progress(k)` is called as items finish."""
        out = [{"correct": ok, "error": err} for ok, err in self.check(references, answers)]
        if progress:
            progress(len(out))
        return out


def normalize_question(text: str) -> str:
    """Question text compared for held-out overlap: whitespace runs (spaces, tabs, newlines) become one space, ends stripped."""
    return " ".join(str(text).split())
