"""math-verify equivalence in the process pool."""

import pytest

from selfimprove.tasks.equivalence import Equivalence


@pytest.fixture(scope="module")
def eq():
    e = Equivalence(workers=1, timeout=5)
    yield e
    e.close()


@pytest.mark.parametrize(
    "gold,pred,same",
    [
        ("145", "145.0", True),
        ("1000", "1,000", True),
        ("18", "$18", True),  # math-verify reads the dollar amount
        ("0.5", "\\frac{1}{2}", True),
        ("\\frac{1}{2}", "1/2", True),
        ("\\sqrt{2}", "\\sqrt{2}", True),
        ("2", "3", False),
        ("x^2+1", "1+x^2", True),
        ("5", None, False),
        ("5", "", False),
    ],
)
def test_same(eq, gold, pred, same):
    assert eq.same([(gold, pred)])[0][0] is same


def test_many_and_cached(eq):
    pairs = [("\\frac{1}{2}", "0.5")] * 5 + [("3", "4")]
    res = eq.same(pairs)
    assert [r[0] for r in res] == [True] * 5 + [False]
    assert ("\\frac{1}{2}", "0.5") in eq._cache


def test_garbage_does_not_crash(eq):
    res = eq.same([("\\frac{1}{2}", "\\frac{{{"), ("5", "}}}}\\\\")])
    assert all(r[0] is False for r in res)
