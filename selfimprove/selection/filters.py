"""Sample filters: finished-only, correct-only, vote-share threshold, majority-only, quantile of a column, dedup,
per-prompt cap, balance.

Each returns the kept rows and the loop records how many each filter dropped.
"""

from __future__ import annotations

import math
import random
import re

from ..config import SelectConfig
from ..groups import by_prompt


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def keep_correct(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("correct") is True]


def keep_finished(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("finish_reason") != "length"]


def keep_vote_share(rows: list[dict], min_share: float) -> list[dict]:
    return [r for r in rows if (r.get("vote_share") or 0.0) >= min_share]


def keep_majority(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("is_majority") is True]


def keep_quantile(rows: list[dict], column: str, q: float) -> list[dict]:
    """Rows whose `column` is at most the q-quantile of its values (nearest rank: the ceil(q n)-th smallest); rows
    without a value go."""
    values = sorted(float(r[column]) for r in rows if isinstance(r.get(column), (int, float)) and not isinstance(r.get(column), bool))
    if not values:
        return []
    cut = values[max(0, math.ceil(q * len(values)) - 1)]
    return [r for r in rows if isinstance(r.get(column), (int, float)) and not isinstance(r.get(column), bool) and float(r[column]) <= cut]


def dedup(rows: list[dict]) -> list[dict]:
    """First occurrence of each (prompt, turn, whitespace-normalised completion): a revision that repeats its first
    attempt is kept (it is the turn-2 sample of a right-to-right trajectory)."""
    seen, out = set(), []
    for r in rows:
        key = (r["prompt_id"], r.get("turn") or 1, _norm(r["completion"]))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def cap_per_prompt(rows: list[dict], cap: int, rng: random.Random) -> list[dict]:
    """At most `cap` rows per prompt, chosen at random (seeded) so no position bias creeps in."""
    groups = by_prompt(rows, turns=False)
    out = []
    for pid in groups:
        g = groups[pid]
        out.extend(g if len(g) <= cap else rng.sample(g, cap))
    return out


def balance(rows: list[dict], rng: random.Random) -> list[dict]:
    """The same count for every kept prompt (the smallest), so easy prompts do not dominate."""
    groups = by_prompt(rows, turns=False)
    if not groups:
        return []
    k = min(len(g) for g in groups.values())
    return cap_per_prompt(rows, max(1, k), rng)


def filter_columns(cfg: SelectConfig) -> dict[str, tuple[str, ...]]:
    """The sample columns each configured filter reads, by its `select.*` key."""
    out = {"dedup": ("prompt_id", "completion"), "max_per_prompt": ("prompt_id",), "balance": ("prompt_id",)}
    if cfg.require_finished:
        out["require_finished"] = ("finish_reason",)
    if cfg.correct_only:
        out["correct_only"] = ("correct",)
    if cfg.min_vote_share is not None:
        out["min_vote_share"] = ("vote_share",)
    if cfg.majority_only:
        out["majority_only"] = ("is_majority",)
    if cfg.keep_quantile is not None:
        out["keep_quantile"] = (cfg.keep_quantile.column,)
    return out


def select_samples(rows: list[dict], cfg: SelectConfig, seed: int) -> tuple[list[dict], dict[str, int]]:
    """Apply the configured filters in a fixed order; return kept rows and counts: samples after each step, and per
    step the prompts whose last sample it dropped (`prompts_emptied_by_<step>`: why those prompts give no row)."""
    rng = random.Random(seed)
    counts = {"input": len(rows)}
    steps = []
    if cfg.require_finished:
        steps.append(("finished", keep_finished))
    if cfg.correct_only:
        steps.append(("correct", keep_correct))
    if cfg.min_vote_share is not None:
        steps.append(("vote_share", lambda rs: keep_vote_share(rs, cfg.min_vote_share)))
    if cfg.majority_only:
        steps.append(("majority", keep_majority))
    if cfg.keep_quantile is not None:
        steps.append(("quantile", lambda rs: keep_quantile(rs, cfg.keep_quantile.column, cfg.keep_quantile.q)))
    if cfg.dedup:
        steps.append(("dedup", dedup))
    if cfg.max_per_prompt is not None:
        steps.append(("max_per_prompt", lambda rs: cap_per_prompt(rs, cfg.max_per_prompt, rng)))
    if cfg.balance:
        steps.append(("balance", lambda rs: balance(rs, rng)))
    prompts = {r["prompt_id"] for r in rows}
    for name, fn in steps:
        rows = fn(rows)
        counts[f"after_{name}"] = len(rows)
        left = {r["prompt_id"] for r in rows}
        if len(left) < len(prompts):
            counts[f"prompts_emptied_by_{name}"] = len(prompts - left)  # their last sample fell at this filter
        prompts = left
    counts["kept"] = len(rows)
    counts["prompts_kept"] = len(prompts)
    return rows, counts
