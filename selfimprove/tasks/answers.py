"""Final-answer extraction from completions and gold solutions (GSM8K `#### 42`, MATH `\\boxed{}`).

Extraction returns the answer as a string; equivalence is math-verify's job (`equivalence.py`).
"""

from __future__ import annotations

import re

_NUMBER = r"-?\$?\s?\d[\d,]*(?:\.\d+)?%?|-?\$?\s?\.\d+%?"
NUMBER_RE = re.compile(_NUMBER)
ANSWER_IS_RE = re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:|=)?\s*[:=]?\s*(?:\*\*)?\s*", re.IGNORECASE)


# a derivation: an equation with a number or a bracketed expression before "=" (26 + 43 = 69, 2x = 10, (3 + 4) = 7,
# \frac{1}{2} = 0.5), or an operation between numbers that names its result (72 plus 50 is 122, 85 - 16, which is 69).
# A text that only states a number ("The answer is 69."), restates the question's expression without a result ("the
# sum of 0 + 8 + 7. The answer is 15."), or writes a fraction, a date or a range (\boxed{\frac{3}{4}}, 2024-05-01,
# 3-4 hours) has none.
_OP = r"(?:[-+*/×÷x]|\\times|\\cdot|\\div|plus|minus|times|divided\s+by|multiplied\s+by)"
WORKING_RE = re.compile(
    r"(?:\d[a-zA-Z]*|[)}])\s*=\s*[-\w(\\$.]"
    rf"|\d\s*{_OP}\s*[-(\\$]?\s*\d[\d.,]*\)?\s*,?\s*(?:which\s+)?(?:is|equals|gives|makes|yields|results\s+in)\s+\$?-?\d",
    re.IGNORECASE,
)
WORKING_VERSION = 2  # hashed into refine stages that drop refinements by it (`refine.require_working`)


def shows_working(text: str) -> bool:
    """Whether a math solution derives something (an equation, or an operation that names its result) rather than
    only stating its answer: STaR's rationalizations that copy the hinted answer ("The answer is 69.") teach a model
    to guess."""
    return bool(WORKING_RE.search(text or ""))


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`), braces matched.

    >>> last_boxed(r"so \\boxed{\\frac{1}{2}}.")
    '\\\\frac{1}{2}'
    """
    idx = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if idx < 0:
        return None
    i = text.find("{", idx)
    if i < 0:
        # `\boxed 5` form
        m = re.match(r"\\(?:boxed|fbox)\s+([^\s$]+)", text[idx:])
        return m.group(1) if m else None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
    return None


def clean_number(s: str) -> str:
    """`$1,000.` -> `1000`; `18.00` -> `18.00` (equivalence handles the rest)."""
    s = s.strip().replace("$", "").replace(",", "").replace(" ", "")
    s = s.rstrip(".")
    return s


def last_number(text: str) -> str | None:
    nums = NUMBER_RE.findall(text)
    return clean_number(nums[-1]) if nums else None


def gsm8k_gold(solution: str) -> str:
    """The gold answer of a GSM8K solution: the text after `####`, commas removed."""
    if "####" not in solution:
        raise ValueError("GSM8K answer has no '####' marker")
    return clean_number(solution.split("####")[-1].strip())


def _strip_answer(ans: str) -> str:
    ans = ans.strip().strip("*").strip()
    boxed = last_boxed(ans)
    if boxed is not None:
        return boxed
    if ans.startswith("$") and ans.count("$") >= 2 and not NUMBER_RE.fullmatch(ans.strip(". ")):
        ans = ans[1 : ans.index("$", 1)]
    return ans.strip().rstrip(".").strip()


def extract_answer(text: str, prefer_boxed: bool = False) -> str | None:
    """Final answer of a model completion, or None when it states none.

    Order: `####` marker, `\\boxed{}`, "the answer is ...", then (numeric tasks) the last number.
    For "the answer is" the first number in the phrase wins when the phrase holds one
    (`The answer is 42 apples.` -> `42`), else the phrase itself (`x = \\frac{1}{2}` stays LaTeX).
    """
    if not text or not text.strip():
        return None
    if "####" in text:
        tail = text.split("####")[-1].strip().splitlines()
        if tail and tail[0].strip():
            return clean_number(tail[0]) if NUMBER_RE.search(tail[0]) else tail[0].strip()
    boxed = last_boxed(text)
    if boxed is not None and boxed != "":
        return boxed
    matches = list(ANSWER_IS_RE.finditer(text))
    if matches:
        phrase = _strip_answer(text[matches[-1].end() :].split("\n")[0])
        if phrase:
            if prefer_boxed:
                return phrase
            num = NUMBER_RE.search(phrase)
            if num and not re.search(r"\\frac|\\sqrt|/|\^|[a-zA-Z]\s*=", phrase):
                return clean_number(num.group(0))
            return phrase
    if prefer_boxed:
        return None
    return last_number(text)


def gold_answer(text: str) -> str:
    """The gold answer of a dataset row: GSM8K's `#### n`, a \\boxed{} or "the answer is" in a worked
    solution, the last number of a longer text, or else the field itself (`145.0`, `1,000`, `\\frac{1}{2}`)."""
    text = text.strip()
    if "####" in text:
        return gsm8k_gold(text)
    if "\\boxed" in text or ANSWER_IS_RE.search(text) or len(text.split()) > 4:
        return extract_answer(text) or text
    return text
