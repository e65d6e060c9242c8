"""The trusted side of a sandbox run: runs the task's tests and decides the verdict, away from the program.

The judge is a separate process that the program cannot reach (it holds no channel the program can
write a verdict into, runs under another uid or undumpable, and is forked only after the program's
process). The tests see the program's functions as `Remote` stand-ins: a call crosses to the jailed
process and its result comes back as fresh built-in values (`_wire.decode`). In type-strict mode a
result whose type the program defined is refused (`forged_type`), so an object whose `__eq__` always
answers True never reaches a comparison; otherwise program objects stay remote and every operation
on them is asked of the program (Python's semantics, the program's objects).

Whatever the program writes, the judge answers: an unreadable, too deep or malformed message, and any exception
at all in the judge (BaseException included), ends in a verdict (`failed`, or `blocked` when the audit hook
reported a refused operation). It takes from the program only the names the tests use, never replaces a
built-in, and imports a module the program names only when the tests use it and it is on an allowlist. It runs
in the jail under a uid of its own (as root), with its own limits and the seccomp filter.
"""

import ast
import builtins
import os
import resource
import sys

import _privileges
import _wire
from _remote import Channel, ProgramGone, Remote

# modules a program may import for the tests to use under the same name (MBPP's `import math` in the solution and
# `math.isclose` in the tests): plain computation, nothing that runs code or touches the system on import
TEST_MODULES = frozenset({"math", "cmath", "re", "string", "collections", "itertools", "functools", "operator", "heapq", "bisect",
                          "statistics", "fractions", "decimal", "random", "copy", "datetime", "json", "typing", "array", "numbers",
                          "hashlib", "calendar", "textwrap", "unicodedata", "time", "numpy", "sys"})
PR_SET_DUMPABLE = 4


def assert_line(tb, tests: str) -> str:
    """The failing line of the tests (the innermost frame in `<tests>`)."""
    line = ""
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<tests>":
            lines = tests.splitlines()
            if 0 < tb.tb_lineno <= len(lines):
                line = lines[tb.tb_lineno - 1].strip()
        tb = tb.tb_next
    return line


def names_in(tree: ast.AST) -> set[str]:
    """Every name a syntax tree reads or binds (the names of the program the trusted code may use)."""
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _test_module(name: str):
    """The module the program named, if the tests may have it (TEST_MODULES), imported here; else None."""
    parts = name.split(".")
    if parts[0] not in TEST_MODULES or not all(p.isidentifier() and not p.startswith("_") for p in parts):
        return None
    try:
        __import__(name)
        return sys.modules.get(name)
    except BaseException:
        return None


def bind_program_names(namespace: dict, names: dict, candidates: set, channel: Channel, used: set) -> None:
    """Put the program's globals where the tests look for them, without letting it replace what they trust.

    Only names the trusted code reads (`used`) are taken. The prelude's definitions (a helper the tests call) stay
    the trusted ones, except the `candidates` the tests must take from the program (the entry point); no program
    name ever replaces a built-in (`set`, `sorted`, `abs`: a program could redefine one to make a comparison pass or
    to receive the expected values). A candidate the program does not define is removed (NameError), never left to
    the prelude's stub. A module the program imported is imported here, by name, when it is on the allowlist."""
    for name in candidates:  # the entry point must be the program's function or value: never the prelude's stub
        info = names.get(name)
        if not (isinstance(info, dict) and (info.get("callable") or info.get("value"))):
            namespace.pop(name, None)
    for name, info in names.items():
        if not (isinstance(name, str) and name.isidentifier() and isinstance(info, dict)) or name not in used:
            continue
        if hasattr(builtins, name) or (name in namespace and name not in candidates):
            continue
        if "module" in info:
            module = _test_module(str(info["module"])) if name not in candidates else None
            if module is not None:
                namespace[name] = module
        elif info.get("callable"):
            namespace[name] = Remote(channel, name, "function")
        elif info.get("value"):
            try:
                namespace[name] = channel.ask({"op": "global", "name": name})
            except ProgramGone:
                raise
            except Exception:
                pass  # a value with no data form: a test that reads it fails with NameError


def _load_failure(msg: dict) -> tuple[str, str]:
    """Outcome of a program that did not get as far as its tests."""
    if "syntax_error" in msg:
        return "syntax_error", str(msg["syntax_error"])[:200]
    if "exit" in msg:
        return "crashed", f"exited (code {str(msg['exit'])[:40]}) before the tests finished"
    info = msg.get("load_error") if isinstance(msg.get("load_error"), dict) else {}
    types = info.get("types") if isinstance(info.get("types"), list) else []
    first = str(types[0]) if types else "Exception"
    if first == "MemoryError":
        return "memory", "memory limit exceeded"
    if first == "AssertionError":
        return "failed", "assertion failed in the program"
    return "failed", f"{first}: {str(info.get('msg', ''))[:200]} (in the program)"


def judge(req: dict, channel: Channel) -> tuple[str, str, bool]:
    """Run the tests against the program behind `channel`: (outcome, detail, whether the program's process ended)."""
    outcome, detail = "", ""
    try:
        outcome, detail = _judge(req, channel)
    except ProgramGone as e:
        return e.outcome, e.detail, e.ended
    return outcome, detail, False


FAILED = "__judge_failed__"  # the tests' rewritten asserts report a failure here and go on


class _GoOnAfterFailures(ast.NodeTransformer):
    """`assert test` becomes: evaluate `test`, report a false or raising one to FAILED, and go on.

    So the tests call the program the same way whatever it answers: a program learns nothing, during its run, about
    which of its answers were right (the judge used to stop at the first failing assert, so whether call k+1 came told
    the program that answer k passed: one bit per run, an oracle wherever the program can keep memory between runs)."""

    def visit_Assert(self, node: ast.Assert):
        def report(exc):
            return ast.Expr(ast.Call(func=ast.Name(FAILED, ast.Load()), args=[ast.Constant(node.lineno), exc], keywords=[]))

        check = ast.If(test=ast.UnaryOp(op=ast.Not(), operand=node.test), body=[report(ast.Constant(None))], orelse=[])
        handler = ast.ExceptHandler(type=ast.Name("Exception", ast.Load()), name="__judge_error__",
                                    body=[report(ast.Name("__judge_error__", ast.Load()))])
        return ast.copy_location(ast.Try(body=[check], handlers=[handler], orelse=[], finalbody=[]), node)


class Compiled:
    """A task's trusted code compiled: the prelude, and the tests with their entry line, asserts rewritten to go on
    after a failure (`_GoOnAfterFailures`), as code objects (or why they do not compile); the names they read."""

    def __init__(self, prelude: str, tests: str, entry: str):
        self.prelude = self.tests = None
        self.error = ""
        self.used: set[str] = set()
        try:
            prelude_tree, tree = ast.parse(prelude, "<prelude>"), ast.parse(tests + "\n" + entry, "<tests>")
            self.used = names_in(prelude_tree) | names_in(tree)
            self.prelude = compile(prelude_tree, "<prelude>", "exec")
            self.tests = compile(ast.fix_missing_locations(_GoOnAfterFailures().visit(tree)), "<tests>", "exec")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            self.error = f"test code does not compile: {getattr(e, 'msg', e)}"


def _judge(req: dict, channel: Channel) -> tuple[str, str]:
    tests = req.get("tests", "")
    compiled = Compiled(req.get("prelude", ""), tests, req.get("entry", ""))
    try:
        first = channel.receive()
        if "ready" not in first or not isinstance(first["ready"], dict):
            return _load_failure(first)
        if compiled.error:
            return "crashed", compiled.error
        namespace = {"__name__": "__main__"}
        try:
            exec(compiled.prelude, namespace)
        except Exception as e:
            return "crashed", f"the task's trusted prelude failed: {type(e).__name__}: {e}"[:300]
        bind_program_names(namespace, first["ready"], set(req.get("candidates") or ()), channel, compiled.used)
        failures: list = []
        namespace[FAILED] = lambda line, error: failures.append((line, error))
        exec(compiled.tests, namespace)
        if not failures:
            return "passed", ""
        line, error = failures[0]
        if error is None:
            lines = tests.splitlines()
            return "failed", lines[line - 1].strip() if 0 < line <= len(lines) else "assertion failed in the tests"
        raise error
    except MemoryError:
        return "memory", "memory limit exceeded"
    except RecursionError:
        return "failed", "RecursionError"
    except AssertionError as e:
        return "failed", assert_line(e.__traceback__, tests) or "assertion failed in the tests"
    except Exception as e:
        origin = getattr(e, "from_program", None)
        if origin == "MemoryError":
            return "memory", "memory limit exceeded"
        where = "in the program" if origin else "in the tests"
        return "failed", f"{origin or type(e).__name__}: {str(e)[:200]} ({where})"


def isolate(req: dict, layout, workdir: str, uid: int | None, keep: tuple[int, ...], bpf: bytes) -> None:
    """In the forked judge, before the tests: own session, only `keep` fds, the jail root, its own directory and uid
    (or no capabilities), limits, not dumpable, Python's default limit on decimal digits, and the seccomp filter."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    _privileges.detach(keep, _privileges.SINGLE_THREADED)  # numpy in the tests: one thread
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace or /proc/<pid>/mem from the same uid
    layout.enter()
    mem = (int(req.get("memory_mb", 1024)) + 1024) << 20
    cpu = int(req.get("timeout", 5)) + 1
    for what, value in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_CORE, 0),
                        (resource.RLIMIT_FSIZE, 16 << 20), (resource.RLIMIT_NOFILE, 64)):
        resource.setrlimit(what, (value, value))
    _privileges.become(libc, uid)
    os.chdir(workdir)
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(4300)  # a program's 4-million-digit number is refused, not converted in quadratic time
    _privileges.install_seccomp(libc, bpf)


def run_judge(req: dict, rfd: int, wfd: int, vfd: int, out: int) -> None:
    """In the forked judge: decide, write the verdict's detail to the pool (`out`) and the outcome to the zygote
    (`vfd`, a pipe only the judge holds); never returns. Any exception, BaseException included, still ends in a
    verdict. The detail (a failing assert holds expected values) never passes through the zygote, whose memory every
    later program inherits."""
    channel = None
    try:
        channel = Channel(rfd, wfd, bool(req.get("type_strict", True)))
        outcome, detail, ended = judge(req, channel)
    except BaseException as e:
        outcome, detail, ended = "failed", f"the judge stopped: {type(e).__name__}", False
    try:
        if channel is not None:
            channel.drain()
            if channel.blocked:
                outcome, detail, ended = "blocked", "blocked: " + ", ".join(channel.blocked), False
        if out >= 0:
            _wire.send(out, {"run": req.get("run"), "detail": str(detail)[:300]})
        _wire.send(vfd, {"outcome": outcome, "ended": ended})
    except BaseException:
        pass
    finally:
        os._exit(0)
