"""How well a model checks its own answers (self-rewarding correction's `[VERIFY]` turn): rates per class, read by the
eval's self_verify mode and by two-turn GRPO's per-step monitors."""

from __future__ import annotations


def self_verification_rates(verdicts: list[str | None] | None, r1: list[float | None]) -> dict[str, float]:
    """Self-rewarding correction's self-check, per attempt's verdict (None: unparsed) and the attempt's reward (right at
    >= 0.5; None: not judged): the share revised (said wrong), unparsed, and the self-check's accuracy per class,
    `verify_tpr` on right attempts, `verify_tnr` on wrong ones (a class with no attempt has no rate). The eval's and
    GRPO's per-step numbers alike."""
    if not verdicts:
        return {}
    out = {"revised": sum(v == "wrong" for v in verdicts) / len(verdicts), "verify_unparsed": sum(v is None for v in verdicts) / len(verdicts)}
    right = [v == "correct" for v, r in zip(verdicts, r1) if r is not None and r >= 0.5]
    wrong = [v == "wrong" for v, r in zip(verdicts, r1) if r is not None and r < 0.5]
    if right:
        out["verify_tpr"] = sum(right) / len(right)
    if wrong:
        out["verify_tnr"] = sum(wrong) / len(wrong)
    return out
