"""The preference-pair row every pair builder writes (DPO's `prompt`, `chosen`, `rejected`, `weight` plus margin and
lineage), and the gold audit of a set of pairs: audit columns and counts only, never a selection criterion."""

from __future__ import annotations

from ..prompts import after_attempt

PAIR_COLUMNS = ("prompt_id", "prompt", "chosen", "rejected", "weight", "margin", "chosen_id", "rejected_id", "label_correct",
                "rejected_correct", "model_ref")


def _gold(sample: dict) -> bool | None:
    v = sample.get("correct")
    return v if isinstance(v, bool) else None


def pair_prompt(prompts: dict[str, dict], sample: dict, by_id: dict[str, dict]) -> list[dict]:
    """The conversation a sample answers: its prompt's messages, and for a revision (turn 2: `generate.revise`, or
    `refine` with `as: revision`) the first attempt (from `by_id`, samples by sample_id, else the sample's own
    `attempt` column) and the instruction after them, as the revision was sampled."""
    messages = list(prompts[sample["prompt_id"]]["messages"])
    if (sample.get("turn") or 1) > 1 and sample.get("parent_id"):
        first = by_id.get(sample["parent_id"])
        attempt = first["completion"] if first is not None else sample.get("attempt")
        if attempt is not None:
            messages = after_attempt(messages, attempt, sample.get("revise_instruction") or "")
    return messages


def pair_row(prompt: list[dict], chosen: dict, rejected: dict, weight: float, margin: float, **extra) -> dict:
    """One pair of two samples of one prompt (and turn): the chat-list `prompt` they answer and the assistant turns,
    the pair's weight and margin, the sample ids, and where the gold scorer ran, whether each side was right
    (`label_correct` = the chosen side's; audit only)."""
    return {
        "prompt_id": chosen["prompt_id"],
        "prompt": list(prompt),
        "chosen": [{"role": "assistant", "content": chosen["completion"]}],
        "rejected": [{"role": "assistant", "content": rejected["completion"]}],
        "weight": float(weight),
        "margin": float(margin),
        "chosen_id": chosen["sample_id"],
        "rejected_id": rejected["sample_id"],
        "label_correct": _gold(chosen),
        "rejected_correct": _gold(rejected),
        "model_ref": chosen["model_ref"],
        **extra,
    }


AUDIT = {"pseudo_label_accuracy": "share of pairs whose chosen side is right (gold)",
         "pair_order_accuracy": "of the pairs whose sides differ in correctness, the share that prefers the right one",
         "pairs_split_by_gold": "pairs whose sides differ in correctness"}


def audit_counts(rows: list[dict]) -> dict:
    """`pseudo_label_accuracy`: share of pairs whose chosen side is right; `pair_order_accuracy`: of the pairs whose
    sides differ in correctness, the share that prefers the right one (both only where gold was scored)."""
    out = {}
    chosen = [r["label_correct"] for r in rows if r["label_correct"] is not None]
    if chosen:
        out["pseudo_label_accuracy"] = round(sum(chosen) / len(chosen), 4)
    split = [r for r in rows if r["label_correct"] is not None and r["rejected_correct"] is not None and r["label_correct"] != r["rejected_correct"]]
    if split:
        out["pair_order_accuracy"] = round(sum(r["label_correct"] for r in split) / len(split), 4)
        out["pairs_split_by_gold"] = len(split)
    return out
