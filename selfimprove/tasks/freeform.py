"""Free-form prompts (judge jobs, custom chat data): the question is sent as is; an optional gold answer
is checked like a math answer ("the answer is", \\boxed{}, last number) with math-verify."""

from __future__ import annotations

from ..config import SplitConfig
from .answers import extract_answer, gold_answer
from .math import DatasetTask


class FreeformTask(DatasetTask):
    name = "freeform"
    default_template = "freeform"
    default_fields = {"question": "prompt", "answer": "reference"}
    optional_fields = frozenset({"answer"})

    def load_items(self, split: SplitConfig, where: str):
        items = []
        for row, v in self.mapped(split, where):
            ref = v.get("answer")
            items.append({"prompt_id": self.row_id(row), "question": str(v["question"]), "reference": gold_answer(str(ref)) if ref not in (None, "") else ""})
        return items

    def extract_answer(self, completion: str) -> str | None:
        return extract_answer(completion)
