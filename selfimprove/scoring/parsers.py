"""Parsers for judge outputs. A judgment that does not parse is a parse failure (kept with its raw text,
counted), never a zero score.

Rules: the score is the number after `Score:` (or `Points:`), any case, Unicode digits accepted
(NFKC: `Score: ４` is 4); `4/5` reads as 4; several `Score:` lines must agree; the value must lie in
the rubric's range; a score or verdict the judged response writes itself counts only on the judgment's last line
with one (`own_mentions`). Pairwise verdicts read `Winner: A|B|tie`; meta-judge verdicts `Winner: Judgement A|B`; a
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


def own_mentions(regex: re.Pattern, text: str, judged: str, read) -> list:
    """The verdicts (`read` of each `regex` match) a judgment states as its own: every one on its last line that has
    one (the judge's conclusion, whatever the response wrote), and on earlier lines those the judged response does not
    state itself (a quoted "Score: 5" the response planted is not the judge's, and cannot make the judgment conflict).
    A response can therefore neither put a verdict in its judge's mouth nor silence the judge's own by writing it."""
    lines = [line for line in _normalise(text).splitlines() if regex.search(line)]
    planted = {read(m) for m in regex.findall(_normalise(judged))} if judged else set()
    out = []
    for i, line in enumerate(lines):
        values = [read(m) for m in regex.findall(line)]
        out += values if i == len(lines) - 1 else [v for v in values if v not in planted]
    return out


def stated_scores(text: str, judged: str = "") -> list[float]:
    """The scores a judgment states as its own (`own_mentions`)."""
    return own_mentions(SCORE_RE, text, judged, float)


def parse_score(text: str, low: float = 0, high: float = 5, judged: str = "") -> Parsed:
    """The judge's final score in [low, high]; with the judged response (`judged`), scores it states itself and the
    judgment only quotes do not count (`own_mentions`)."""
    t = _normalise(text)
    if not t.strip():
        return Parsed(None, "empty judgment")
    found = stated_scores(t, judged)
    if not found:
        return Parsed(None, "no 'Score: <n>' found")
    if len(set(found)) > 1:
        return Parsed(None, f"conflicting scores {sorted(set(found))}")
    v = found[0]
    if not low <= v <= high:
        return Parsed(None, f"score {v:g} outside [{low:g}, {high:g}]")
    return Parsed(v)


def _one_of(regex: re.Pattern, text: str, what: str, judged: str = "") -> Parsed:
    t = _normalise(text)
    if not t.strip():
        return Parsed(None, "empty judgment")
    found = set(own_mentions(regex, t, judged, str.lower))
    if not found:
        return Parsed(None, f"no '{what}' found")
    if len(found) > 1:
        return Parsed(None, f"conflicting verdicts {sorted(found)}")
    v = found.pop()
    return Parsed(v.upper() if v in ("a", "b") else "tie")


def parse_pairwise(text: str, judged: str = "") -> Parsed:
    """`A`, `B` or `tie` from `Winner: A` / `Winner: B` / `Winner: tie`; a verdict the compared responses (`judged`)
    write themselves counts only on the judgment's last line with one (`own_mentions`)."""
    return _one_of(WINNER_RE, text, "Winner: A|B|tie", judged)


def parse_meta(text: str) -> Parsed:
    """`A` or `B` from `Winner: Judgement A` / `Winner: Judgment B`."""
    return _one_of(META_RE, text, "Winner: Judgement A|B")


def parse_verdict(text: str, judged: str = "") -> Parsed:
    """`correct` or `wrong` from a critique's `Verdict: correct|wrong` (`right` / `incorrect` read the same); where
    there are several verdict lines they must agree; a verdict the critiqued response states itself and the critique
    only quotes does not count (`own_mentions`)."""
    t = _normalise(text)
    if not t.strip():
        return Parsed(None, "empty critique")
    found = set(own_mentions(VERDICT_RE, t, judged, lambda m: "correct" if m.lower() in ("correct", "right") else "wrong"))
    if not found:
        return Parsed(None, "no 'Verdict: correct|wrong' found")
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
