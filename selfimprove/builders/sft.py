"""SFT row builder: prompt messages + the kept completion as the assistant turn (for a revision, the conversation it
revised: the problem, the attempt, the instruction)."""

from __future__ import annotations

from pydantic import Field

from ..columns import Columns
from ..options import Options
from .base import RowBuilder
from .pair_rows import pair_prompt


class SFTRowOptions(Options):
    weight_column: str | None = Field(
        None, description="A scored column whose value becomes each row's `weight` (needs a trainer that supports weights); "
        "default: every row weighs 1.")


class SFTRows(RowBuilder):
    """Rows: `prompt` (chat list), `completion` (assistant turn), `messages` (both), `weight`, lineage."""

    name = "sft"
    reads = ("prompt_id", "sample_id", "completion", "model_ref")
    writes = ("prompt_id", "sample_id", "prompt", "completion", "messages", "weight", "model_ref")
    Options = SFTRowOptions
    version = 2  # 2: a revision's row holds the conversation it revised

    def columns(self) -> Columns:
        return Columns(self.reads + ((self.options.weight_column,) if self.options.weight_column else ()), self.optional_reads, self.writes)

    @property
    def weighted(self) -> bool:
        return self.options.weight_column is not None

    def build(self, samples: list[dict], prompts: dict[str, dict]) -> tuple[list[dict], dict]:
        col = self.options.weight_column
        rows = []
        no_weight = 0
        by_id = {s["sample_id"]: s for s in samples}
        for s in samples:
            if col and not isinstance(s.get(col), (int, float)):
                no_weight += 1  # e.g. a judge score that did not parse: no weight, no row
                continue
            prompt = pair_prompt(prompts, s, by_id)
            answer = [{"role": "assistant", "content": s["completion"]}]
            rows.append(
                {
                    "prompt_id": s["prompt_id"],
                    "sample_id": s["sample_id"],
                    "prompt": prompt,
                    "completion": answer,
                    "messages": prompt + answer,
                    "weight": float(s[col]) if col else 1.0,
                    "model_ref": s["model_ref"],
                }
            )
        return rows, {"rows": len(rows), **({"dropped_without_weight": no_weight} if col else {})}


def sft_rows(samples: list[dict], prompts: dict[str, dict]) -> list[dict]:
    """SFT rows with weight 1 (the default builder), for library use."""
    return SFTRows().build(samples, prompts)[0]
