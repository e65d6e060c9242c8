"""Row builders turn kept samples into training rows (SFT rows, preference pairs, correction trajectories). Each
declares the sample columns it reads and the row columns it writes (`columns()`), so the loop checks them against
the scorers before it and the trainer after it before any model loads."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from pydantic import BaseModel

from ..columns import DeclaresColumns
from ..options import NoOptions, validate_options
from ..registry import ROW_BUILDERS


class RowBuilder(DeclaresColumns, ABC):
    """Subclasses set `name`, `reads` (sample columns), `optional_reads`, `writes` (row columns) (or override `columns()`
    when they depend on options), `Options`, and implement `build`."""

    name: ClassVar[str]
    reads: ClassVar[tuple[str, ...]]
    writes: ClassVar[tuple[str, ...]]
    Options: ClassVar[type[BaseModel]] = NoOptions
    # count keys of `build`'s counts: why a prompt (or sample) gave no row, and what is audited against gold (never a
    # selection criterion); the select stage reports them as `yield`, and the run report shows them as they are
    skip_reasons: ClassVar[dict[str, str]] = {}
    skip_unit: ClassVar[str] = "prompts"  # what the skip counts count: "prompts", or "samples" for a per-sample builder
    audit: ClassVar[dict[str, str]] = {}
    # raised when the rows built from the same samples and options change, so a resumed run rebuilds them
    version: ClassVar[int] = 1

    def identity(self) -> dict:
        """What the select stage hashes: the builder, its options with their defaults filled in, its version (a changed
        default or a changed rule then rebuilds the rows instead of reusing ones built by the old rule)."""
        opts = self.options.model_dump() if hasattr(self.options, "model_dump") else self.options
        return {"name": self.name, "options": opts, "version": self.version}

    def yield_report(self, counts: dict) -> dict:
        """This build's yield as the run report shows it: `skipped` (reason -> count, the non-zero ones), `audit`,
        `reasons` (what each skip reason means, for the error when no row is left) and `units` (what each count counts)."""
        skipped = {k: counts[k] for k in self.skip_reasons if counts.get(k)}
        return {"skipped": skipped, "audit": {k: counts[k] for k in self.audit if counts.get(k) is not None},
                "reasons": {k: self.skip_reasons[k] for k in skipped}, "units": {k: self.skip_unit for k in skipped}}

    def __init__(self, options: dict | BaseModel | None = None, where: str = "select.builder.options"):
        self.options = validate_options(self.Options, options, where)

    @property
    def weighted(self) -> bool:
        """Whether the rows carry weights other than 1 (the trainer must support them)."""
        return False

    @abstractmethod
    def build(self, samples: list[dict], prompts: dict[str, dict]) -> tuple[list[dict], dict]:
        """Training rows from kept samples (`prompts`: prompt_id -> prompt row), and counts for the manifest."""


def make_row_builder(name: str, options: dict | None = None, where: str = "select.builder") -> RowBuilder:
    return ROW_BUILDERS.get(name, f"{where}.name")(options, where=f"{where}.options")
