"""Self-correction trajectories (two-turn self-correction, self-rewarding correction): SFT rows that teach the
revision turn. Each turn-2 sample (`generate.revise`) with its first attempt is a trajectory; it is typed by the
`signal` column of both turns (the gold verifier's `correct`, or label-free `is_majority`): `wrong_to_right`,
`right_to_right`, `right_to_wrong`, `wrong_to_wrong`, `unverified`. The kept types (default: the two that end right)
become rows whose prompt is the problem, the first attempt and the instruction, and whose completion is the revision,
so the loss covers the revision only; with `loss_on: both_turns` a right -> right trajectory's completion is attempt,
instruction, revision and the loss covers both of the model's turns (never the instruction, never a wrong attempt).

Rows: `prompt` (chat list), `completion`, `weight` 1, `prompt_id`, `sample_id` (the revision), `parent_id`,
`trajectory`, `model_ref`. Counts: trajectories per type and rows.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..columns import Columns
from ..options import Options
from .base import RowBuilder

TYPES = ("wrong_to_right", "right_to_right", "right_to_wrong", "wrong_to_wrong")


class TrajectoryOptions(Options):
    signal: str = Field("correct", description="Boolean sample column that says a turn is right (correct, or is_majority label-free).")
    keep: list[Literal["wrong_to_right", "right_to_right", "right_to_wrong", "wrong_to_wrong"]] = Field(
        default_factory=lambda: ["wrong_to_right", "right_to_right"], description="Trajectory types that become rows.")
    max_per_prompt: int | None = Field(None, gt=0, description="Cap rows per problem (the first ones by sample id).")
    loss_on: Literal["revision", "both_turns"] = Field("revision", description="revision: the attempt and the instruction are the "
                                                                            "prompt; both_turns: for right -> right, the "
                                                                            "completion is attempt, instruction, revision, with "
                                                                            "the loss on both of the model's turns (never the "
                                                                            "instruction; a wrong attempt stays in the prompt).")


def trajectory_type(first: bool | None, second: bool | None) -> str:
    if not isinstance(first, bool) or not isinstance(second, bool):
        return "unverified"
    return f"{'right' if first else 'wrong'}_to_{'right' if second else 'wrong'}"


class CorrectionTrajectories(RowBuilder):
    name = "correction_trajectories"
    reads = ("prompt_id", "sample_id", "turn", "completion", "model_ref", "parent_id", "revise_instruction")
    writes = ("prompt_id", "prompt", "completion", "weight", "sample_id", "parent_id", "trajectory", "model_ref")
    Options = TrajectoryOptions
    skip_unit = "samples"
    skip_reasons = {"unverified": "the first or the second turn has no value of the signal",
                    "no_first_turn": "the first attempt was dropped by a select filter"}

    def yield_report(self, counts: dict) -> dict:
        """Also the trajectory types that `keep` leaves out, as reasons a revision gave no row."""
        out = super().yield_report(counts)
        not_kept = {f"{t} (not kept)": counts[t] for t in TYPES if t not in self.options.keep and counts.get(t)}
        out["skipped"].update(not_kept)
        out["units"].update({k: self.skip_unit for k in not_kept})
        return out

    def columns(self) -> Columns:
        return Columns(self.reads + (self.options.signal,), self.optional_reads, self.writes)

    def build(self, samples: list[dict], prompts: dict[str, dict]) -> tuple[list[dict], dict]:
        o = self.options
        firsts = {s["sample_id"]: s for s in samples if (s.get("turn") or 1) == 1}
        counts = {t: 0 for t in (*TYPES, "unverified", "no_first_turn")}
        rows, per_prompt = [], {}
        for s in sorted((s for s in samples if s.get("turn") == 2), key=lambda s: s["sample_id"]):
            first = firsts.get(s.get("parent_id"))
            if first is None:  # dropped by a select filter before the builder
                counts["no_first_turn"] += 1
                continue
            kind = trajectory_type(first.get(o.signal), s.get(o.signal))
            counts[kind] += 1
            if kind not in o.keep or (o.max_per_prompt is not None and per_prompt.get(s["prompt_id"], 0) >= o.max_per_prompt):
                continue
            per_prompt[s["prompt_id"]] = per_prompt.get(s["prompt_id"], 0) + 1
            turns = [{"role": "assistant", "content": first["completion"]}, {"role": "user", "content": s["revise_instruction"]},
                     {"role": "assistant", "content": s["completion"]}]
            problem = list(prompts[s["prompt_id"]]["messages"])
            both = o.loss_on == "both_turns" and kind == "right_to_right"  # a wrong attempt is never trained on
            prompt, completion = (problem, turns) if both else (problem + turns[:2], turns[2:])
            rows.append({"prompt_id": s["prompt_id"], "prompt": prompt, "completion": completion,
                         "weight": 1.0, "sample_id": s["sample_id"], "parent_id": first["sample_id"], "trajectory": kind,
                         "model_ref": s["model_ref"]})
        counts["rows"] = len(rows)
        return rows, counts
