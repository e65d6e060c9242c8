"""The trusted side of a sandbox run: runs the task's tests and decides the verdict, away from the program.

The judge is a separate process that the program cannot reach (it holds no channel the program can
write a verdict into, runs under another uid or undumpable, and is forked only after the program's
process). The tests see the program's functions as `Remote` stand-ins: a call crosses to the jailed
process and its result comes back as fresh built-in values (`_wire.decode`). In type-strict mode a
result whose type the program defined is refused (`forged_type`), so an object whose `__eq__` always
answers True never reaches a comparison; otherwise program objects stay remote and every operation
on them is asked of the program (Python's semantics, the program's objects).
"""

import builtins
import os
import select

import _wire

OPERATORS = (
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__", "__bool__", "__len__", "__iter__", "__next__",
    "__contains__", "__getitem__", "__setitem__", "__delitem__", "__int__", "__float__", "__index__", "__round__", "__abs__",
    "__neg__", "__pos__", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
    "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__", "__rpow__", "__and__", "__or__", "__xor__",
    "__str__", "__format__", "__reversed__", "__enter__", "__exit__",
)


class ProgramGone(BaseException):
    """The program's process ended (or exited) before the tests finished. BaseException: tests cannot catch it."""

    def __init__(self, outcome: str, detail: str, ended: bool = False):
        super().__init__(detail)
        self.outcome, self.detail, self.ended = outcome, detail, ended


class Channel:
    """Requests to the jailed program; collects the audit hook's reports of blocked operations on the way."""

    def __init__(self, rfd: int, wfd: int, strict: bool):
        self.reader, self.wfd, self.strict = _wire.Reader(rfd), wfd, strict
        self.blocked: list[str] = []

    def receive(self) -> dict:
        """The program's next answer; `ProgramGone` at end of input or on a malformed or over-long answer."""
        while True:
            try:
                msg = self.reader.read()
            except ValueError as e:
                raise ProgramGone("failed", f"the program's answer was unreadable ({e})") from None
            if msg is None:
                raise ProgramGone("crashed", "the program ended before the tests finished", ended=True)
            if "blocked" in msg:
                if len(self.blocked) < 5:
                    self.blocked.append(str(msg["blocked"])[:80])
                continue
            return msg

    def drain(self) -> None:
        """Read what the program has already written (late reports of blocked operations), without waiting."""
        try:
            while b"\n" in self.reader.buf or select.select([self.reader.fd], [], [], 0)[0]:
                self.receive()
        except (ProgramGone, OSError):
            pass

    def ask(self, msg: dict, args: tuple = ()):
        """Send one request; the decoded result, or the program's failure raised. `args`: the tests' own argument
        objects, updated in place when the program changed its copies."""
        try:
            _wire.send(self.wfd, msg)
        except OSError:
            raise ProgramGone("crashed", "the program ended before the tests finished", ended=True) from None
        reply = self.receive()
        if "ok" in reply:
            value = _wire.decode(reply["ok"], None if self.strict else self.remote)
            self._write_back(args, reply.get("args"))
            return value
        raise self._failure(reply, msg.get("method"))

    def _failure(self, reply: dict, method: str | None = None) -> BaseException:
        if "raised" in reply:
            return program_exception(reply["raised"], method)
        if "forged" in reply:
            return ProgramGone("forged_type", f"returned an object of type {str(reply['forged'])[:80]} defined by the program "
                               "(type-strict comparison takes built-in values only)")
        if "unsupported" in reply:
            return TypeError(f"the program returned a {str(reply['unsupported'])[:80]}, which has no built-in value to compare")
        if "exit" in reply:
            return ProgramGone("crashed", f"exited (code {str(reply['exit'])[:40]}) before the tests finished")
        return ProgramGone("failed", "the program's answer was malformed")

    def _write_back(self, args: tuple, states) -> None:
        """Mirror in-place changes the program made to list/dict/set/bytearray arguments."""
        if not isinstance(states, list):
            return
        for arg, state in zip(args, states):
            if state is None:
                continue
            new = _wire.decode(state)
            if type(arg) is list or type(arg) is bytearray:
                arg[:] = new
            elif type(arg) is dict or type(arg) is set:
                arg.clear()
                arg.update(new)

    def call(self, target, args, kwargs, method=None):
        msg = {"op": "call", "target": target, "args": [self.send_value(a) for a in args],
               "kwargs": [[k, self.send_value(v)] for k, v in kwargs.items()]}
        if method:
            msg["method"] = method
        return self.ask(msg, args)

    def send_value(self, x):
        if type(x) is Remote and type(x._target) is int:
            return {"h": x._target}
        try:
            return _wire.encode(x)
        except _wire.Unencodable as e:
            raise TypeError(f"the tests pass a {e.type_name} to the program; the sandbox sends data only") from None

    def remote(self, handle: int, type_name: str) -> "Remote":
        return Remote(self, handle, type_name)


def program_exception(info, method: str | None = None) -> BaseException:
    """The program's exception, re-raised in the tests as the nearest built-in class (so `except ValueError` works).

    StopIteration (and StopAsyncIteration) become RuntimeError, as PEP 479 does for generators: raised from a
    function the tests call inside `all(map(...))`, it would end their iteration early and skip the checks.
    Only a remote `__next__` may stop an iteration.
    """
    info = info if isinstance(info, dict) else {}
    types = [str(t) for t in info.get("types", [])] if isinstance(info.get("types"), list) else []
    msg = str(info.get("msg", ""))[:200]
    for t in types + ["Exception"]:
        cls = getattr(builtins, t, None)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            continue
        if issubclass(cls, (StopIteration, StopAsyncIteration)) and method != "__next__":
            cls, msg = RuntimeError, f"the program raised {t}"
        try:
            e = cls(msg)
        except TypeError:  # a class whose constructor takes other arguments (UnicodeDecodeError): its base
            continue
        e.from_program = types[0] if types else "?"
        return e
    return Exception(msg)


class Remote:
    """Stands for an object in the program's process: a function (by name) or, when not type-strict, a handle."""

    __slots__ = ("_channel", "_target", "_type")

    def __init__(self, channel: Channel, target, type_name: str):
        self._channel, self._target, self._type = channel, target, type_name

    def __call__(self, *args, **kwargs):
        return self._channel.call(self._target, args, kwargs)

    def __getattr__(self, name: str):
        if self._channel.strict or name.startswith("__"):
            raise AttributeError(name)
        return self._channel.ask({"op": "attr", "target": self._target, "name": name})

    def __repr__(self) -> str:
        return f"<program {self._type} {self._target!r}>"


def _operator(name: str):
    def op(self, *args):
        if self._channel.strict:
            raise TypeError(f"{name} of a program object")
        value = self._channel.call(self._target, args, {}, method=name)
        if name == "__hash__" and type(value) is not int:
            raise TypeError("__hash__ returned a non-integer")
        return value

    op.__name__ = name
    return op


for _name in OPERATORS:
    setattr(Remote, _name, _operator(_name))


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


def bind_program_names(namespace: dict, names: dict, candidates: set, channel: Channel) -> None:
    """Put the program's globals where the tests look for them, without letting it replace what they trust.

    The prelude's definitions (a helper the tests call) and every built-in name (`abs`, `sorted`, `len`, which a
    program could redefine to make a comparison pass or to receive the expected values) stay the trusted ones,
    except the `candidates` the tests must take from the program. A module the program imported (MBPP's
    `import math`, used by its tests) is imported here, by name, from this interpreter's own paths.
    """
    for name, info in names.items():
        if not (isinstance(name, str) and name.isidentifier() and isinstance(info, dict)):
            continue
        if name not in candidates and (name in namespace or hasattr(builtins, name)):
            continue
        if "module" in info:
            module = str(info["module"])
            if name not in candidates and all(part.isidentifier() for part in module.split(".")):
                try:
                    namespace[name] = __import__(module, fromlist=["_"]) if "." in module else __import__(module)
                except Exception:
                    pass
        elif info.get("callable"):
            namespace[name] = Remote(channel, name, "function")
        elif "value" in info:
            namespace[name] = _wire.decode(info["value"], None if channel.strict else channel.remote)


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


def _judge(req: dict, channel: Channel) -> tuple[str, str]:
    tests = req.get("tests", "")
    try:
        first = channel.receive()
        if "ready" not in first or not isinstance(first["ready"], dict):
            return _load_failure(first)
        namespace = {"__name__": "__main__"}
        try:
            exec(compile(req.get("prelude", ""), "<prelude>", "exec"), namespace)
        except Exception as e:
            return "crashed", f"the task's trusted prelude failed: {type(e).__name__}: {e}"[:300]
        bind_program_names(namespace, first["ready"], set(req.get("candidates") or ()), channel)
        try:
            code = compile(tests + "\n" + req.get("entry", ""), "<tests>", "exec")
        except SyntaxError as e:
            return "crashed", f"test code does not compile: {e.msg}"
        exec(code, namespace)
        return "passed", ""
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


def run_judge(req: dict, rfd: int, wfd: int, vfd: int) -> None:
    """In the forked judge: decide, then write the one verdict line to the zygote; never returns."""
    try:
        channel = Channel(rfd, wfd, bool(req.get("type_strict", True)))
        outcome, detail, ended = judge(req, channel)
        channel.drain()
        if channel.blocked:
            outcome, detail, ended = "blocked", "blocked: " + ", ".join(channel.blocked), False
        _wire.send(vfd, {"outcome": outcome, "detail": detail[:300], "ended": ended})
    finally:
        os._exit(0)
