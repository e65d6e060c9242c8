"""Samples grouped by the prompt they answer: the one grouping every scorer, row builder, filter and metric uses.

A revision turn (`turn` 2, `generate.revise`) is a group of its own unless `turns=False`: votes and pairs never mix a
prompt's first attempts with its revisions."""

from __future__ import annotations


def group_key(row: dict, turns: bool = True) -> str:
    """`prompt_id`, or `prompt_id#turn<t>` for a turn after the first (with `turns`)."""
    turn = row.get("turn") or 1
    return str(row["prompt_id"]) if turn == 1 or not turns else f"{row['prompt_id']}#turn{turn}"


def by_prompt(rows: list[dict], turns: bool = True) -> dict[str, list[dict]]:
    """Rows per prompt (and turn), each group in the rows' order, groups in order of first appearance."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(group_key(r, turns), []).append(r)
    return groups


def indices_by_prompt(rows: list[dict], turns: bool = True) -> dict[str, list[int]]:
    """As `by_prompt`, with each row's index instead of the row (scorers fill columns by index)."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(group_key(r, turns), []).append(i)
    return groups
