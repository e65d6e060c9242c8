"""The judge's side of the channel to the jailed program: requests, answers, and the stand-ins the tests see.

A function of the program appears in the tests as a `Remote`; calling it (or, when not type-strict, any operator on a
program object) becomes a request over the channel, and the answer comes back as fresh built-in values or as the
program's exception mapped onto the nearest built-in class. Whatever the program writes, a malformed or missing answer
ends in `ProgramGone`, which the tests cannot catch.
"""

import builtins
import collections
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
        """The program's next answer; `ProgramGone` at end of input or on a malformed, too deep or over-long answer."""
        while True:
            try:
                msg = self.reader.read()
            except OSError:
                raise ProgramGone("crashed", "the program ended before the tests finished", ended=True) from None
            except Exception as e:
                raise ProgramGone("failed", f"the program's answer was unreadable ({str(e)[:100]})") from None
            if msg is None:
                raise ProgramGone("crashed", "the program ended before the tests finished", ended=True)
            if "blocked" in msg:
                if len(self.blocked) < 5:
                    self.blocked.append(msg["blocked"][:80] if isinstance(msg["blocked"], str) else "(a malformed report)")
                continue
            return msg

    def drain(self) -> None:
        """Read what the program has already written (late reports of blocked operations), without waiting."""
        try:
            while b"\n" in self.reader.buf or select.select([self.reader.fd], [], [], 0)[0]:
                self.receive()
        except BaseException:
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
            try:
                value = _wire.decode_deep(reply["ok"], None if self.strict else self.remote)
                self._write_back(args, reply.get("args"))
            except Exception as e:
                raise ProgramGone("failed", f"the program's answer was malformed ({type(e).__name__})") from None
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
        """Mirror in-place changes the program made to arguments of a mutable type, nested ones included."""
        if not isinstance(states, list):
            return
        for arg, state in zip(args, states):
            if state is not None and type(arg) in _wire.MUTABLE:
                update_in_place(arg, _wire.decode_deep(state))

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


def update_in_place(old, new):
    """Make container `old` equal `new`, keeping its identity and, where both hold containers of one type at the same
    place, theirs too (a test that kept a reference to an inner list sees the change). Returns what to store."""
    if isinstance(old, (list, collections.deque)) and isinstance(new, (list, collections.deque)):
        merged = [update_in_place(o, n) for o, n in zip(old, new)] + list(new)[len(old):]
        old.clear()
        old.extend(merged)
        return old
    if isinstance(old, dict) and isinstance(new, dict):
        merged = {k: update_in_place(old[k], v) if k in old else v for k, v in new.items()}
        old.clear()
        old.update(merged)
        return old
    if isinstance(old, set) and isinstance(new, (set, frozenset)):
        old.clear()
        old.update(new)
        return old
    if isinstance(old, bytearray) and isinstance(new, (bytes, bytearray)):
        old[:] = new
        return old
    return new


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
