"""Math word problems (GSM8K) and competition math (MATH-500), from local files or the hub."""

from __future__ import annotations

from ..config import ConfigError, SplitConfig
from .answers import WORKING_VERSION, extract_answer, gold_answer, last_boxed, shows_working
from .base import Task
from .sources import field_value, load_split_rows


class DatasetTask(Task):
    """A task read from a dataset; `fields` maps the task's logical fields to dataset columns."""

    default_fields: dict[str, str] = {}
    optional_fields: frozenset[str] = frozenset()  # may be absent from the data unless the user maps them
    id_column: str | None = None

    def mapped(self, split: SplitConfig, where: str) -> list[tuple[dict, dict]]:
        unknown = set(split.fields) - set(self.default_fields)
        if unknown:
            raise ConfigError(f"{where}.fields: unknown field(s) {sorted(unknown)}; this task maps {sorted(self.default_fields)}")
        fields = {**self.default_fields, **split.fields}
        out = []
        for i, row in enumerate(load_split_rows(split, where)):
            values = {
                k: field_value(row, col, f"{where}.fields.{k}", i)
                for k, col in fields.items()
                if col and not (k in self.optional_fields and k not in split.fields and col not in row)
            }
            out.append((row, values))
        return out

    def row_id(self, row: dict) -> str:
        if self.id_column and self.id_column in row:
            return str(row[self.id_column])
        return str(row["_row_index"])


class MathAnswerTask(DatasetTask):
    """A dataset of math problems with a final answer: a solution shows working when it computes something."""

    working_version = WORKING_VERSION

    def shows_working(self, completion: str) -> bool:
        return shows_working(completion)


class GSM8KTask(MathAnswerTask):
    name = "gsm8k"
    default_template = "math_cot"
    default_fields = {"question": "question", "answer": "answer"}


    def load_items(self, split, where):
        items = []
        for row, v in self.mapped(split, where):
            try:
                gold = gold_answer(str(v["answer"]))
            except ValueError as e:
                raise ConfigError(f"{where}: row {row['_row_index']}: {e}") from None
            # the worked solution too: select.gold_rows can train on it (critique-in-the-loop's original SFT data)
            items.append({"prompt_id": self.row_id(row), "question": str(v["question"]), "reference": gold,
                          "meta": {"solution": str(v["answer"])}})
        return items

    def extract_answer(self, completion: str) -> str | None:
        return extract_answer(completion)


class MATH500Task(MathAnswerTask):
    name = "math500"
    default_template = "math_boxed"
    default_fields = {"question": "problem", "answer": "answer", "solution": "solution"}
    optional_fields = frozenset({"answer", "solution"})
    id_column = "unique_id"


    def load_items(self, split, where):
        items = []
        for row, v in self.mapped(split, where):
            gold = v.get("answer")
            if gold in (None, "") and v.get("solution"):
                gold = last_boxed(str(v["solution"]))
            if gold in (None, ""):
                raise ConfigError(f"{where}: row {row['_row_index']} has neither an answer nor a \\boxed{{}} solution")
            meta = {k: row[k] for k in ("subject", "level") if k in row}
            items.append({"prompt_id": self.row_id(row), "question": str(v["question"]), "reference": str(gold), "meta": meta})
        return items

    def extract_answer(self, completion: str) -> str | None:
        return extract_answer(completion, prefer_boxed=True)
