"""Answer extraction from completions and gold solutions (GSM8K and MATH formats)."""

import pytest

from selfimprove.tasks.answers import extract_answer, gsm8k_gold, last_boxed

COMPLETIONS = [
    ("The answer is 42.", "42"),
    ("so the total is 12.\nThe answer is 1,234.", "1234"),
    ("The answer is $18.", "18"),
    ("The final answer is 7 apples.", "7"),
    ("Answer: 3.5", "3.5"),
    ("answer: -4", "-4"),
    ("We get 5 + 6 = 11", "11"),
    ("First 3, then 4, so 7", "7"),
    ("#### 72", "72"),
    ("blah\n#### 1,000", "1000"),
    ("Therefore \\boxed{13}.", "13"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("so $x = \\boxed{\\dfrac{3}{4}}$", "\\dfrac{3}{4}"),
    ("\\boxed{x^2 + {1}}", "x^2 + {1}"),
    ("first \\boxed{1} then \\boxed{2}", "2"),
    ("The answer is **56**.", "56"),
    ("The answer is: 9", "9"),
    ("The answer is 0.25", "0.25"),
    ("the answer is 50%", "50%"),
    ("It costs $1,250.50 in total", "1250.50"),
    ("The answer is \\frac{1}{2}.", "\\frac{1}{2}"),
    ("The answer is 3/4", "3/4"),
    ("No numbers here.", None),
    ("", None),
    ("   ", None),
    ("The answer is 12. Wait, 5 + 8 = 13. The answer is 13.", "13"),
    ("23 + 45 = 68. The answer is 68", "68"),
    ("The answer is .5", ".5"),
    ("Final answer: 144", "144"),
    ("so 93 + 69 is 162", "162"),
    ("The answer is 1 000", "1"),
]


@pytest.mark.parametrize("text,expected", COMPLETIONS)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("so \\boxed{5}", "5"),
        ("The answer is $\\frac{\\pi}{2}$.", "\\frac{\\pi}{2}"),
        ("I think it's 5", None),  # MATH: a bare trailing number is not an answer
        ("\\boxed{(1, 2)}", "(1, 2)"),
        ("\\fbox{7}", "7"),
        ("\\boxed 5", "5"),
    ],
)
def test_extract_answer_math(text, expected):
    assert extract_answer(text, prefer_boxed=True) == expected


@pytest.mark.parametrize(
    "solution,gold",
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "72"),
        ("... = 1,000\n#### 1,000", "1000"),
        ("#### -3", "-3"),
        ("text\n####  5.5 ", "5.5"),
    ],
)
def test_gsm8k_gold(solution, gold):
    assert gsm8k_gold(solution) == gold


def test_gsm8k_gold_without_marker():
    with pytest.raises(ValueError, match="####"):
        gsm8k_gold("no marker 5")


def test_last_boxed_unbalanced():
    assert last_boxed("\\boxed{1") is None
    assert last_boxed("nothing") is None


def test_gsm8k_gold_matches_dataset(shared_data):
    import json

    rows = [json.loads(line) for line in open(shared_data / "gsm8k" / "test.jsonl")][:200]
    golds = [gsm8k_gold(r["answer"]) for r in rows]
    assert all(g.lstrip("-").replace(".", "").isdigit() for g in golds)


def test_math500_boxed_matches_answer_field(shared_data):
    import json

    rows = [json.loads(line) for line in open(shared_data / "math500" / "test.jsonl")]
    agree = sum(last_boxed(r["solution"]) == r["answer"] for r in rows)
    assert agree / len(rows) > 0.9


@pytest.mark.parametrize("text, working", [
    ("The answer is 69.", False), ("The answer is 77. The answer is 77.", False), ("101.", False), ("", False),
    ("Ben has 72 - 50 = 22 marbles left. The answer is 22.", True), ("26+43 gives 69", True), (r"so $3 \times 4 = 12$", True),
    ("(3 + 4) = 7", True), ("72 plus 50 is 122 marbles", True), ("85 - 16, which is 69.", True), ("2x = 10, so x = 5", True),
    ("1 + 3 + 3 = 7.", True), (r"$\frac{1}{2} \cdot 4 = 2$", True),
    # restating the question's expression, a fraction, a date or a range is not a derivation
    ("What is 26 + 43? The answer is 69.", False), ("We need the sum of 0 + 8 + 7. The answer is 15.", False),
    (r"The answer is $\boxed{\frac{3}{4}}$.", False), (r"\frac{1}{2} of it", False), ("On 2024-05-01 it rained for 3-4 hours.", False),
    ("x = 5", False), ("Dara has 21 marbles, and she has 56 more. The answer is 77.", False),
])
def test_a_solution_shows_working_when_it_computes_something(text, working):
    from selfimprove.tasks.answers import shows_working

    assert shows_working(text) is working
