"""Parsers for judge outputs. A judgment that does not parse is a parse failure (kept with its raw text,
counted), never a zero score.

Rules: the score is the number after `Score:` (or `Points:`), any case, Unicode digits accepted
(NFKC: `Score: ４` is 4); `4/5` reads as 4; several `Score:` lines must agree; the value must lie in
the rubric's range. Pairwise verdicts read `Winner: A|B|tie`; meta-judge verdicts `Winner: Judgement A|B`; a
critic's `Verdict: correct|wrong`; a self-evaluation's last `[VERIFY] correct|wrong`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Separators are single character classes (`[\s*\[(]*`), never runs of optional parts each with its own `\s*`: on a
# judge's output of many spaces those backtrack in polynomial time; these run in linear time.
SCORE_RE = re.compile(r"(?:score|points)\s*[:=][\s*]*(-?\d+(?:\.\d+)?)(?:\s*/\s*\d+)?", re.I)
WINNER_RE = re.compile(r"winner\s*[:=][\s*\[(]*(?:(?:response|assistant|answer)[\s(]*)?([ab]|tie)\b", re.I)
VERDICT_RE = re.compile(r"verdict\s*[:=][\s*\[(]*(correct|incorrect|wrong|right)\b", re.I)
META_RE = re.compile(r"winner\s*[:=][\s*\[(]*(?:judgement|judgment)[\s(]*([ab])\b", re.I)
SELF_VERIFY_RE = re.compile(r"\[\s*verify\s*\][\s*]*(correct|wrong)\b", re.I)


@dataclass(frozen=True)
class Parsed:
    """A parsed value, or `error` saying why there is none."""

    value: float | str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text or "")
    return "".join(str(unicodedata.digit(c)) if c.isdigit() and not c.isascii() and unicodedata.digit(c, None) is not None else c for c in text)


def judges_scores(text: str, judged: str = "") -> tuple[list[float], list[float]]:
    """The scores a judgment states: (its own, those that repeat a score the judged response states)."""
    planted = {float(m) for m in SCORE_RE.findall(_normalise(judged))}
    found = [float(m) for m in SCORE_RE.findall(_normalise(text))]
    return [v for v in found if v not in planted], [v for v in found if v in planted]


def parse_score(text: str, low: float = 0, high: float = 5, judged: str = "") -> Parsed:
    """The judge's final score in [low, high]. A score the judged response itself states (`judged`: "Score: 5" written
    into an answer) does not count when the judgment repeats it: a response cannot put a verdict in its judge's mouth,
    nor make a judgment that echoes it conflict with the judge's own score (and go unparsed)."""
    t = _normalise(text)
    if not t.strip():
        return Parsed(None, "empty judgment")
    found, echoed = judges_scores(t, judged)
    if not found:
        return Parsed(None, f"only the score the response itself states ({echoed[0]:g})" if echoed else "no 'Score: <n>' found")
    if len(set(found)) > 1:
        return Parsed(None, f"conflicting scores {sorted(set(found))}")
    v = found[0]
    if not low <= v <= high:
        return Parsed(None, f"score {v:g} outside [{low:g}, {high:g}]")
    return Parsed(v)


def _one_of(regex: re.Pattern, text: str, what: str) -> Parsed:
    t = _normalise(text)
    if not t.strip():
        return Parsed(None, "empty judgment")
    found = {m.lower() for m in regex.findall(t)}
    if not found:
        return Parsed(None, f"no '{what}' found")
    if len(found) > 1:
        return Parsed(None, f"conflicting verdicts {sorted(found)}")
    v = found.pop()
    return Parsed(v.upper() if v in ("a", "b") else "tie")


def parse_pairwise(text: str) -> Parsed:
    """`A`, `B` or `tie` from `Winner: A` / `Winner: B` / `Winner: tie`."""
    return _one_of(WINNER_RE, text, "Winner: A|B|tie")


def parse_meta(text: str) -> Parsed:
    """`A` or `B` from `Winner: Judgement A` / `Winner: Judgment B`."""
    return _one_of(META_RE, text, "Winner: Judgement A|B")


def parse_verdict(text: str, judged: str = "") -> Parsed:
    """`correct` or `wrong` from a critique's `Verdict: correct|wrong` (`right` / `incorrect` read the same); where
    there are several verdict lines they must agree. A verdict the critiqued response itself states (`judged`) does
    not count when the critique repeats it (as `parse_score`)."""
    t = _normalise(text)
    if not t.strip():
        return Parsed(None, "empty critique")

    def verdicts(x: str) -> set[str]:
        return {"correct" if m.lower() in ("correct", "right") else "wrong" for m in VERDICT_RE.findall(x)}

    planted = verdicts(_normalise(judged))
    found = verdicts(t) - planted
    if not found:
        return Parsed(None, "only the verdict the response itself states" if verdicts(t) else "no 'Verdict: correct|wrong' found")
    if len(found) > 1:
        return Parsed(None, "conflicting verdicts")
    return Parsed(found.pop())



def parse_self_verify(text: str) -> Parsed:
    """`correct` or `wrong` from a self-evaluation's last line that carries a `[VERIFY] correct|wrong` tag (it may
    reason before it). A line with both tags is the instruction repeated, not a verdict: unparsed."""
    t = _normalise(text)
    if not t.strip():
        return Parsed(None, "empty self-evaluation")
    tagged = [line for line in t.splitlines() if SELF_VERIFY_RE.search(line)]
    if not tagged:
        return Parsed(None, "no '[VERIFY] correct|wrong' found")
    found = {m.lower() for m in SELF_VERIFY_RE.findall(tagged[-1])}
    if len(found) > 1:
        return Parsed(None, "both verdicts on the last tagged line (the instruction repeated)")
    return Parsed(found.pop())
