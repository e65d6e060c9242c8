"""One scorer interface for the loop, `eval`, `judge` and GRPO rewards (`scoring/rewards.py`).

A scorer maps a batch of samples (rows with `prompt_id`, `completion`, `answer`) plus their prompt
rows to per-sample values. It never raises on one bad sample: it returns an error string for it.
Each scorer declares the sample columns it reads and writes (`columns()`: the one contract of every plug-in), so a pipeline's
chain of scorers, filters, row builder and trainer is checked before any model loads, and its options
as a pydantic model (`Options`), validated when it is built.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from pydantic import BaseModel

from ..columns import DeclaresColumns
from ..errors import ConfigError
from ..options import NoOptions, validate_options
from ..registry import SCORERS
from ..tasks.base import Task

Progress = Callable[[int], None]

# Columns every scored sample has before any scorer runs: the generate stage's columns plus `answer`.
REVISION_COLUMNS = ("parent_id", "revise_instruction")  # turn-2 samples (generate.revise): the first attempt and the instruction
SAMPLE_COLUMNS = ("prompt_id", "sample_id", "turn", "completion", "num_tokens", "logprob_sum", "finish_reason", "model_ref",
                  "sampling", "iteration", "answer")


@dataclass(frozen=True)
class SummaryColumn:
    """A score a scorer writes that summaries, the run report and `judge --diagnose` describe: its histogram's range
    (None: the values' own), whether scores are whole numbers (a histogram bar per value), the threshold at or above
    which a score counts as passing (agreement with gold: accuracy and Cohen's kappa; None: AUROC only), and whether
    its rank correlation with the response's length is reported (length bias), and whether it is a probability of being
    right (P(True)): then its calibration against gold (ECE, Brier score) is reported too."""

    range: tuple[float, float] | None = None
    discrete: bool = False
    threshold: float | None = None
    length_bias: bool = True
    probability: bool = False  # the value claims a probability of being right: calibration (ECE, Brier) is reported


@dataclass
class ScoreResult:
    """Per-sample columns (same order as the samples) and per-sample error (None when fine)."""

    columns: dict[str, list[Any]]
    errors: list[str | None] = field(default_factory=list)


class Scorer(DeclaresColumns, ABC):
    """Subclasses set `name`, `writes` (and `reads` beyond the basic ones, `optional_reads`; or override `columns()`
    when the contract depends on options or the task), `Options` when they take options, and implement `score`.
    Construct with `Scorer(task, options_dict_or_model)`."""

    name: ClassVar[str]
    writes: ClassVar[tuple[str, ...]]
    reads: ClassVar[tuple[str, ...]] = ("prompt_id", "completion", "answer")
    Options: ClassVar[type[BaseModel]] = NoOptions
    needs_model: ClassVar[bool] = False
    groupwise: ClassVar[bool] = False  # a sample's value depends on the other samples of its prompt (votes, pairwise comparisons)
    whole_table: ClassVar[bool] = False  # needs every prompt at once (picks a valid set among them): the score stage gives it one shard
    summary: ClassVar[dict[str, SummaryColumn]] = {}  # its score columns, as summaries and diagnostics describe them
    task_kinds: ClassVar[tuple[str, ...]] = ("answer", "code")  # `Task.kind`s it can score; others are refused when it is built
    unsupported_hint: ClassVar[str] = ""  # what to use instead, for the refusal's message
    version: ClassVar[int] = 1  # raised when its columns change for the same options: the score stage then scores again

    def __init__(self, task: Task, options: dict | BaseModel | None = None, where: str | None = None):
        where = where or f"score[{self.name}].options"
        if task.kind not in self.task_kinds:
            at = where[: -len(".options")] if where.endswith(".options") else where
            raise ConfigError(f"{at}: scorer {self.name!r} cannot score {task.kind} tasks (task {task.name!r}); it supports "
                              f"{' and '.join(self.task_kinds)} tasks. {self.unsupported_hint}".strip())
        self.task = task
        self.options = validate_options(self.Options, options, where)

    def summary_columns(self, pass_threshold: float | None = None) -> dict[str, SummaryColumn]:
        """Its score columns as summaries describe them (`pass_threshold`: a judge job's own, where one was set)."""
        return dict(self.summary)

    @classmethod
    def parse_failures(cls, rows: list[dict]) -> tuple[int, int] | None:
        """(unparsable answers, answers) of a model scorer over scored rows, for the parse-failure rate; None if not asked."""
        return None

    @classmethod
    def read_after_unparsed(cls, rows: list[dict]) -> tuple[int, int] | None:
        """(verdicts read from log-probs after an unparsed written one, answers) with `read_unparsed`; None if none."""
        return None

    def close(self) -> None:  # noqa: B027 - a hook with nothing to do by default
        """Free a model this scorer loaded itself (a reward model); the job's release calls it after each use."""

    @abstractmethod
    def score(self, prompts: dict[str, dict], samples: list[dict], progress: Progress | None = None) -> ScoreResult:
        """Score `samples` (each has `prompt_id`, `completion`, `answer`); `prompts` maps prompt_id -> prompt row.

        `progress(k)`, when given, is called as samples finish (long scorers: sandbox runs, judges)."""


def make_scorer(name: str, task: Task, options: dict | None = None, where: str = "score", name_key: str = "name") -> Scorer:
    """The scorer registered as `name` (or at `"package.module:Class"`), its options validated; errors name the YAML
    path `where` (`<where>.<name_key>` for the name: `score[1].name`, `train.rewards[0].scorer`)."""
    return SCORERS.get(name, f"{where}.{name_key}")(task, options, where=f"{where}.options")


def make_scorers(configs, task: Task, where: str = "score") -> list[Scorer]:
    """Scorers for a `score:` list of `{name, options}` (ScorerConfig or dicts), in order."""
    out = []
    for i, c in enumerate(configs):
        name, options = (c["name"], c.get("options")) if isinstance(c, dict) else (c.name, c.options)
        out.append(make_scorer(name, task, options, f"{where}[{i}]"))
    return out


def changed_versions(scorers: list[Scorer]) -> dict[str, int]:
    """{scorer name: version} for the scorers whose columns changed since version 1: hashed into the stages that score,
    so a resumed run scores again (left out at 1, so older runs keep their hashes)."""
    return {sc.name: sc.version for sc in scorers if sc.version != 1}


def versions_of(named: list[tuple[str, dict | None]], task: Task) -> dict[str, int]:
    """`changed_versions` of scorers given as (name, options), as a config names them (GRPO rewards, eval's best-of
    and critic), for the stages that score with them; no model loads."""
    return changed_versions([make_scorer(n, task, o) for n, o in named])


def describe_parse_failures(report: dict) -> str:
    """`pointwise_judge 100.0% (100.0% read)`: each judge's written verdicts that did not parse and, with
    `read_unparsed`, the share read afterwards (those have a verdict)."""
    read = report.get("read_after_unparsed_rate") or {}
    return ", ".join(f"{k} {100 * v:.1f}%" + (f" ({100 * read[k]:.1f}% read)" if k in read else "")
                     for k, v in (report.get("parse_failure_rate") or {}).items())
