"""Several row builders in one select stage (`select.builders`): each source builds rows from its prompts (all, the
labelled ones, the unlabelled ones), its row weights are multiplied by its `weight`, a source with a `share` keeps at
most that share of the combined set (seeded sampling drops the rest), and every row names its `source`.
Semi-supervised ScPO mixes gold pairs (labelled prompts, weight 1) with vote pairs (unlabelled ones); Meta-Rewarding
mixes actor pairs with judge pairs capped at a share."""

from __future__ import annotations

import math
import random

from ..columns import Columns
from .base import RowBuilder, make_row_builder


def source_names(names: list[str]) -> list[str]:
    """Builder names as row `source` labels: `vote_pairs`, or `vote_pairs#2` for a second source of the same builder."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def shared_counts(sizes: list[int], shares: list[float | None]) -> list[int]:
    """How many rows each group keeps: a group without a share keeps all of its rows; one with a share s keeps at most
    s times the combined set. The combined size N solves N = uncapped + sum(min(n_i, floor(s_i N))), found by iterating
    down from everything (each step can only lower N, so it stops; with every group capped it may reach 0: two
    groups can never each be under a share below one half). Sources of a mixed select."""
    total = sum(sizes)
    while True:
        keep = [n if s is None else min(n, math.floor(s * total)) for n, s in zip(sizes, shares)]
        if sum(keep) == total:
            return keep
        total = sum(keep)


class MixedRows(RowBuilder):
    """The builders of `select.builders` as one builder: reads what any source reads, writes what every source writes
    (what a trainer can rely on) plus `source`."""

    name = "mixed"
    reads = ()
    writes = ()

    def __init__(self, sources: list, labelled_size: int | None = None, seed: int = 0):
        self.sources = list(sources)
        self.builders = [make_row_builder(s.name, s.options, where=f"select.builders[{i}]") for i, s in enumerate(self.sources)]
        self.labels = source_names([b.name for b in self.builders])
        self.name = "+".join(self.labels)
        self.labelled_size = labelled_size
        self.seed = seed
        self.options = None

    def columns(self) -> Columns:
        cols = [b.columns() for b in self.builders]
        reads = tuple(dict.fromkeys(c for col in cols for c in col.reads))
        optional = tuple(dict.fromkeys(c for col in cols for c in col.optional if c not in reads))
        writes = set(cols[0].writes).intersection(*(set(c.writes) for c in cols[1:]))
        return Columns(reads, optional, tuple(sorted(writes | {"source"})))

    @property
    def weighted(self) -> bool:
        return any(b.weighted for b in self.builders) or any(s.weight != 1.0 for s in self.sources)

    def identity(self) -> dict:
        return {"name": self.name, "sources": [b.identity() for b in self.builders], "seed": self.seed}

    def labelled(self, prompts: dict[str, dict]) -> set[str]:
        """Prompts with a gold answer, the first `labelled_size` of them by id when it is set."""
        ids = sorted(pid for pid, p in prompts.items() if p.get("reference") not in (None, ""))
        return set(ids[: self.labelled_size] if self.labelled_size is not None else ids)

    def build(self, samples: list[dict], prompts: dict[str, dict]) -> tuple[list[dict], dict]:
        labelled = self.labelled(prompts)
        built, counts = [], {"sources": {}}
        for label, src, b in zip(self.labels, self.sources, self.builders):
            mine = [s for s in samples if src.prompts == "all" or (s["prompt_id"] in labelled) == (src.prompts == "labelled")]
            rows, c = b.build(mine, prompts)
            for r in rows:
                r["source"] = label
                if src.weight != 1.0:
                    r["weight"] = float(r.get("weight", 1.0)) * src.weight
            built.append(rows)
            counts["sources"][label] = {**{k: v for k, v in c.items() if not isinstance(v, (list, dict))}, "rows_built": len(rows)}
        keep = shared_counts([len(r) for r in built], [s.share for s in self.sources])
        rng = random.Random(self.seed)
        out = []
        for label, rows, k in zip(self.labels, built, keep):
            chosen = rows if k >= len(rows) else [rows[i] for i in sorted(rng.sample(range(len(rows)), k))]
            counts["sources"][label]["rows"] = len(chosen)
            out.extend(chosen)
        keys = list(dict.fromkeys(k for r in out for k in r))  # one schema for the table: a column one source lacks is null
        out = [{k: r.get(k) for k in keys} for r in out]
        counts["rows"] = len(out)
        return out, counts

    def yield_report(self, counts: dict) -> dict:
        """Each source's own yield, its reasons and audit named by the source (`vote_pairs: below_tau`)."""
        skipped, audit, reasons, units = {}, {}, {}, {}
        for label, b in zip(self.labels, self.builders):
            rep = b.yield_report(counts["sources"].get(label, {}))
            skipped.update({f"{label}: {k}": v for k, v in rep["skipped"].items()})
            audit.update({f"{label}.{k}": v for k, v in rep["audit"].items()})  # a stop rule names it select.<source>.<key>
            reasons.update({f"{label}: {k}": v for k, v in rep.get("reasons", {}).items()})
            units.update({f"{label}: {k}": v for k, v in rep.get("units", {}).items()})
        return {"skipped": skipped, "audit": audit, "reasons": reasons, "units": units}


def make_select_builder(select, seed: int = 0) -> RowBuilder:
    """The select stage's builder: `select.builders` as one MixedRows, else `select.builder`."""
    if select.builders:
        return MixedRows(select.builders, select.labelled_size, seed)
    return make_row_builder(select.builder.name, select.builder.options)
