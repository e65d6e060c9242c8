"""Synthetic arithmetic: a seeded generator of problems a small model can learn on CPU.

Knobs: digits per operand, operations, operand count, plain or word-problem phrasing. Each problem has an
identity (`meta.problem`, e.g. `12 + 7`, the same for every phrasing): a split's problems are distinct by it,
and the train split is drawn around the eval split's problems, so no eval problem is ever trained on.
"""

from __future__ import annotations

import json
import random
from collections.abc import Set as AbstractSet
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config import ConfigError, SplitConfig
from .answers import WORKING_VERSION, extract_answer, shows_working
from .base import Task

OPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
WORD = {
    "+": [
        "{name} has {a} marbles and finds {b} more. How many marbles does {name} have now?",
        "A shop sold {a} apples in the morning and {b} in the afternoon. How many apples did it sell in total?",
    ],
    "-": [
        "{name} had {a} stickers and gave away {b}. How many stickers are left?",
        "A tank holds {a} litres. {b} litres are drained. How many litres remain?",
    ],
    "*": [
        "{name} buys {a} boxes with {b} pencils in each. How many pencils is that?",
        "A hall has {a} rows of {b} chairs. How many chairs are there?",
    ],
}
NAMES = ["Ava", "Ben", "Chen", "Dara", "Eli", "Farah", "Gus", "Hana"]


class ArithmeticOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    digits: int = Field(2, ge=1, le=9, description="Digits per operand (max).")
    min_digits: int | None = Field(None, ge=1, le=9, description="Smallest operand digit count (default = digits).")
    operations: list[Literal["+", "-", "*"]] = Field(default_factory=lambda: ["+"])
    operands: int = Field(2, ge=2, le=4, description="Numbers per problem (word problems use 2).")
    word_problems: bool = False

    @model_validator(mode="after")
    def _check(self):
        if self.min_digits is not None and self.min_digits > self.digits:
            raise ValueError("min_digits must be <= digits")
        if not self.operations:
            raise ValueError("operations must not be empty")
        return self


class ArithmeticTask(Task):
    name = "arithmetic"
    default_template = "arithmetic"
    default_system_template = "arithmetic_system"
    Options = ArithmeticOptions

    heldout_key = "the problem itself: operands and operations in order (`meta.problem`, e.g. `12 + 7`), whatever the phrasing"
    generated = True

    def _number(self, rng: random.Random) -> int:
        lo_d = self.options.min_digits or self.options.digits
        d = rng.randint(lo_d, self.options.digits)
        return rng.randint(10 ** (d - 1) if d > 1 else 0, 10**d - 1)

    def problem(self, rng: random.Random) -> tuple[str, int, str]:
        """One random problem: (question, answer, identity). The identity (`12 + 7`) names the numbers and
        operations, so two phrasings of the same word problem are the same problem."""
        o = self.options
        if o.word_problems:
            op = rng.choice(o.operations)
            a, b = self._number(rng), self._number(rng)
            if op == "-" and b > a:
                a, b = b, a
            text = rng.choice(WORD[op]).format(name=rng.choice(NAMES), a=a, b=b)
            return text, OPS[op](a, b), f"{a} {op} {b}"
        nums = [self._number(rng) for _ in range(o.operands)]
        ops = [rng.choice(o.operations) for _ in range(o.operands - 1)]
        expr = " ".join(f"{n} {op}" for n, op in zip(nums, ops)) + f" {nums[-1]}"
        return f"What is {expr}?", eval(expr, {"__builtins__": {}}), expr  # expr is built from ints and + - * only

    def problem_space(self) -> int:
        """How many distinct problems (identities) these options can produce."""
        o = self.options
        lo_d = o.min_digits or o.digits
        numbers = sum(10 if d == 1 else 9 * 10 ** (d - 1) for d in range(lo_d, o.digits + 1))
        ops = set(o.operations)
        if o.word_problems:  # a - b is drawn with a >= b
            return sum(numbers * (numbers + 1) // 2 if op == "-" else numbers**2 for op in ops)
        return numbers**o.operands * len(ops) ** (o.operands - 1)

    def problem_key(self, row: dict) -> str:
        return json.loads(row["meta"])["problem"]

    def load_items(self, split: SplitConfig, where: str, exclude: AbstractSet[str] = frozenset()):
        """`size` distinct problems (by identity), none of them in `exclude`; the same seed always gives the same list.

        Draws from a seeded generator and skips repeats and excluded problems, so the train split has exactly
        `size` problems that are not eval problems (rather than losing the overlapping ones afterwards)."""
        if split.source:
            raise ConfigError(f"{where}.source: the arithmetic task generates its problems; remove source and set size")
        if split.size is None:
            raise ConfigError(f"{where}.size: the arithmetic task needs the number of problems to generate")
        self._check_space(split.size, len(exclude), where)
        rng = random.Random(f"arithmetic:{split.seed}")
        seen, items = set(exclude), []
        attempts, max_attempts = 0, 100 * split.size + 10_000
        while len(items) < split.size:
            attempts += 1
            if attempts > max_attempts:  # only when size is close to the whole space and some problems are rarely drawn
                raise ConfigError(
                    f"{where}.size: {attempts - 1} draws found only {len(items)} of {split.size} distinct problems that are not "
                    f"held out; lower {where}.size or widen task.options (digits, operations, operands)"
                )
            q, ans, key = self.problem(rng)
            if key in seen:
                continue
            seen.add(key)
            pid = f"arith-{split.seed}-{len(items)}"
            items.append({"prompt_id": pid, "question": q, "reference": str(ans), "meta": {"problem": key}})
        return items

    def _check_space(self, size: int, excluded: int, where: str) -> None:
        """Fail before drawing when the options cannot give `size` distinct problems outside the excluded ones."""
        space = self.problem_space()
        if size > space - excluded:
            held = f", and {excluded} of them are held out as data.eval problems" if excluded else ""
            lower = f"{where}.size (or data.eval.size)" if excluded else f"{where}.size"
            raise ConfigError(
                f"{where}.size: {size} distinct problems asked for, but task.options allow only {space}{held}; "
                f"lower {lower} or widen task.options (digits, operations, operands)"
            )

    def extract_answer(self, completion: str) -> str | None:
        return extract_answer(completion)

    working_version = WORKING_VERSION

    def shows_working(self, completion: str) -> bool:
        return shows_working(completion)
