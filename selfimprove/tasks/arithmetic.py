"""Synthetic arithmetic: a seeded generator of problems a small model can learn on CPU.

Knobs: digits per operand, operations, operand count, plain or word-problem phrasing.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config import ConfigError, SplitConfig
from .answers import extract_answer
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

    def _number(self, rng: random.Random) -> int:
        lo_d = self.options.min_digits or self.options.digits
        d = rng.randint(lo_d, self.options.digits)
        return rng.randint(10 ** (d - 1) if d > 1 else 0, 10**d - 1)

    def problem(self, rng: random.Random) -> tuple[str, int]:
        o = self.options
        if o.word_problems:
            op = rng.choice(o.operations)
            a, b = self._number(rng), self._number(rng)
            if op == "-" and b > a:
                a, b = b, a
            text = rng.choice(WORD[op]).format(name=rng.choice(NAMES), a=a, b=b)
            return text, OPS[op](a, b)
        nums = [self._number(rng) for _ in range(o.operands)]
        ops = [rng.choice(o.operations) for _ in range(o.operands - 1)]
        expr = " ".join(f"{n} {op}" for n, op in zip(nums, ops)) + f" {nums[-1]}"
        return f"What is {expr}?", eval(expr, {"__builtins__": {}})  # expr is built from ints and + - * only

    def load_items(self, split: SplitConfig, where: str):
        if split.source:
            raise ConfigError(f"{where}.source: the arithmetic task generates its problems; remove source and set size")
        if split.size is None:
            raise ConfigError(f"{where}.size: the arithmetic task needs the number of problems to generate")
        rng = random.Random(f"arithmetic:{split.seed}")
        seen, items = set(), []
        attempts = 0
        while len(items) < split.size:
            attempts += 1
            if attempts > 50 * split.size + 1000:
                raise ConfigError(f"{where}.size: only {len(items)} distinct problems exist with these options")
            q, ans = self.problem(rng)
            if q in seen:
                continue
            seen.add(q)
            items.append({"prompt_id": f"arith-{split.seed}-{len(items)}", "question": q, "reference": str(ans)})
        return items

    def extract_answer(self, completion: str) -> str | None:
        return extract_answer(completion)
