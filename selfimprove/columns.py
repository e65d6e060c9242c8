"""The one column contract every plug-in declares (scorers, row builders, trainers): the columns it reads, those it
reads when they are there, and those it writes. The pipeline checks the chain generate -> score -> select -> train
against these before any model loads (`pipeline/contracts.py`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Columns:
    """`reads`: columns it needs; `optional`: columns it uses when an earlier step wrote them (never required);
    `writes`: columns it adds (a scorer: sample columns; a row builder: the columns of its rows; a trainer: none)."""

    reads: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()


class DeclaresColumns:
    """Mixin: `reads`, `optional_reads` and `writes` as class attributes; `columns()` (override it when the contract
    depends on options or on the task) returns them as a `Columns`."""

    reads: tuple[str, ...] = ()
    optional_reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()

    def columns(self) -> Columns:
        return Columns(tuple(self.reads), tuple(self.optional_reads), tuple(self.writes))
