"""Sample filters: finished-only, correct-only, vote-share threshold, majority-only, quantile of a column, score
threshold, dedup, best-k per prompt, per-prompt cap, a cap grown to a target size, balance; and B-STaR's balance score
of what was kept.

Each returns the kept rows and the loop records how many each filter dropped.
"""

from __future__ import annotations

import math
import random
import re

from ..config import SelectConfig
from ..groups import by_prompt
from ..stats import as_number


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


def _value(r: dict, column: str) -> float | None:
    """A row's number in `column` (a verdict counts 1 or 0: `correct` as an outcome score); None when it has none."""
    return as_number(r.get(column), verdicts=True)


def keep_min_score(rows: list[dict], column: str, tau: float, strict: bool = False) -> list[dict]:
    """Rows whose `column` is at least `tau` (above it when `strict`); rows without a value go."""
    return [r for r in rows if (v := _value(r, column)) is not None and (v > tau if strict else v >= tau)]


def top_k_per_prompt(rows: list[dict], column: str, k: int) -> list[dict]:
    """Each prompt's k rows with the highest `column` (ties: the earlier row); rows without a value go."""
    out = []
    for g in by_prompt([r for r in rows if _value(r, column) is not None], turns=False).values():
        out.extend(sorted(g, key=lambda r: -_value(r, column))[:k])
    return out


def grow_cap_to(rows: list[dict], target: int, rng: random.Random, column: str | None = None) -> tuple[list[dict], int]:
    """The smallest per-prompt cap c = 1, 2, ... whose capped set has at least `target` rows (all rows when none
    does), taking each prompt's best rows by `column` first (else a seeded random order); returns (rows, c)."""
    groups = by_prompt(rows, turns=False)
    if not groups:
        return [], 0
    def best_first(r: dict) -> float:
        v = _value(r, column)
        return -v if v is not None else math.inf  # a missing value last; a 0 is a value like any other

    ordered = {pid: sorted(g, key=best_first) if column else rng.sample(g, len(g)) for pid, g in groups.items()}
    largest = max(len(g) for g in groups.values())
    cap = next((c for c in range(1, largest + 1) if sum(min(len(g), c) for g in groups.values()) >= target), largest)
    return [r for g in ordered.values() for r in g[:cap]], cap


def graded(rows: list[dict]) -> bool:
    """Whether the rows carry gold verdicts (`correct`), so a balance score means something."""
    return any(isinstance(r.get("correct"), bool) for r in rows)


def balance_score(rows: list[dict], prompt_ids: set, n_star: int) -> float:
    """B-STaR's balance score of a kept set, averaged over `prompt_ids` (every prompt the selection saw; one with
    nothing kept scores 0): per prompt, with n' unique correct and n unique kept responses,
    min(n'/n*, 1) * n'/n. Meaningful only where the samples were graded (`graded`)."""
    if not prompt_ids:
        return 0.0
    unique: dict = {}
    for r in rows:
        unique.setdefault(r["prompt_id"], {})[(r.get("turn") or 1, _norm(r["completion"]))] = r.get("correct") is True
    total = 0.0
    for pid in prompt_ids:
        kept = unique.get(pid, {})
        n, good = len(kept), sum(kept.values())
        total += min(good / n_star, 1.0) * good / n if n else 0.0
    return total / len(prompt_ids)


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
    if cfg.min_score is not None:
        out["min_score"] = (cfg.min_score.column,)
    if cfg.top_k_per_prompt is not None:
        out["top_k_per_prompt"] = ("prompt_id", cfg.top_k_per_prompt.column)
    if cfg.target_size is not None:
        out["target_size"] = ("prompt_id",)
    return out


def order_column(cfg: SelectConfig) -> str | None:
    """The column `target_size` takes each prompt's best rows by: min_score's, else top_k_per_prompt's, else none."""
    return cfg.min_score.column if cfg.min_score is not None else cfg.top_k_per_prompt.column if cfg.top_k_per_prompt is not None else None


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
    if cfg.min_score is not None:
        steps.append(("min_score", lambda rs: keep_min_score(rs, cfg.min_score.column, cfg.min_score.tau, cfg.min_score.strict)))
    if cfg.dedup:
        steps.append(("dedup", dedup))
    if cfg.top_k_per_prompt is not None:
        steps.append(("top_k_per_prompt", lambda rs: top_k_per_prompt(rs, cfg.top_k_per_prompt.column, cfg.top_k_per_prompt.k)))
    if cfg.max_per_prompt is not None:
        steps.append(("max_per_prompt", lambda rs: cap_per_prompt(rs, cfg.max_per_prompt, rng)))
    if cfg.target_size is not None:
        def grow(rs):
            kept, counts["per_prompt_cap"] = grow_cap_to(rs, cfg.target_size, rng, order_column(cfg))
            return kept

        steps.append(("target_size", grow))
    if cfg.balance:
        steps.append(("balance", lambda rs: balance(rs, rng)))
    prompts = seen = {r["prompt_id"] for r in rows}
    with_gold = graded(rows)
    for name, fn in steps:
        rows = fn(rows)
        counts[f"after_{name}"] = len(rows)
        left = {r["prompt_id"] for r in rows}
        if len(left) < len(prompts):
            counts[f"prompts_emptied_by_{name}"] = len(prompts - left)  # their last sample fell at this filter
        prompts = left
    counts["kept"] = len(rows)
    counts["prompts_kept"] = len(prompts)
    if with_gold:
        counts["balance_score"] = round(balance_score(rows, seen, cfg.balance_n), 4)
    return rows, counts
