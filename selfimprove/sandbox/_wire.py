"""Values and messages between the jailed program and the trusted judge: JSON lines with type tags.

Standard library only (the zygote imports it as a script sibling). The program's side encodes; the judge's
side decodes into fresh objects of trusted types only (built-ins and a few stdlib containers), so whatever
bytes the program writes, the judge holds plain data, never an object whose methods the program wrote.

    >>> decode(json.loads(json.dumps(encode((1, [2.5, "x"], {3: None}, {4}, b"\\x00")))))
    (1, [2.5, 'x'], {3: None}, {4}, b'\\x00')
"""

import base64
import collections
import decimal
import fractions
import json
import os
import sys

OUTCOMES = ("passed", "failed", "timeout", "memory", "syntax_error", "crashed", "blocked", "forged_type")
FILESYSTEMS = ("auto", "jail", "mirror", "host")  # see _fs.py
MAX_MESSAGE = 64 << 20  # bytes; a longer line from the program is refused ("result too large")
MAX_ITEMS = 1_000_000  # items taken from an iterator the program returns
# Integers longer than this cross as hexadecimal text ({"X": ...}): decimal conversion is quadratic, and the reader
# (the judge) keeps Python's default limit on decimal digits, so a forged huge number is refused at once.
HEX_BITS = 12_000
DEEP = 12_000  # recursion limit while encoding or decoding: nested values some thousand levels deep still cross
PROGRAM_MODULES = ("solution", "__main__", "<solution>")  # the __module__ of classes a program defines (_child.PROGRAM_MODULE)
MUTABLE = frozenset({list, dict, set, bytearray, collections.deque, collections.OrderedDict, collections.defaultdict,
                     collections.Counter})


class Unencodable(Exception):
    """A value that has no data form. `forged` when the program defined its type (a reward-hacking signature)."""

    def __init__(self, type_name: str, forged: bool):
        super().__init__(type_name)
        self.type_name, self.forged = type_name, forged


def _type_name(t: type) -> str:
    return f"{getattr(t, '__module__', '?')}.{getattr(t, '__qualname__', t.__name__)}"


def _numpy_scalar(x):
    np = sys.modules.get("numpy")
    if np is not None and isinstance(x, np.generic) and type(x).__module__ == "numpy":
        return x.item()
    return None


def encode(x, handles=None):
    """JSON-able form of `x` by exact type; anything else becomes a handle (when `handles` is given) or raises.

    Exact types only: a subclass of int or list is not an int or a list here, so an object whose `__eq__`
    the program wrote never crosses as a built-in value.
    """
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return x if x.bit_length() <= HEX_BITS else {"X": format(x, "x")}
    if t is float:
        return x if x == x and x not in (float("inf"), float("-inf")) else {"x": x.hex()}
    if t is list:
        return {"l": [encode(v, handles) for v in x]}
    if t is tuple:
        return {"t": [encode(v, handles) for v in x]}
    if t is dict or t is collections.defaultdict:
        return {"d": [[encode(k, handles), encode(v, handles)] for k, v in x.items()]}
    if t is collections.OrderedDict:
        return {"o": [[encode(k, handles), encode(v, handles)] for k, v in x.items()]}
    if t is collections.Counter:
        return {"C": [[encode(k, handles), encode(v, handles)] for k, v in x.items()]}
    if t is set:
        return {"s": [encode(v, handles) for v in x]}
    if t is frozenset:
        return {"f": [encode(v, handles) for v in x]}
    if t is bytes:
        return {"b": base64.b64encode(x).decode()}
    if t is bytearray:
        return {"B": base64.b64encode(bytes(x)).decode()}
    if t is complex:
        return {"c": [encode(x.real), encode(x.imag)]}
    if t is decimal.Decimal:
        return {"D": str(x)}
    if t is fractions.Fraction:
        return {"F": [x.numerator, x.denominator]}
    if t is range:
        return {"r": [x.start, x.stop, x.step]}
    if t is collections.deque:
        return {"q": [encode(v, handles) for v in x], "m": x.maxlen}
    if t is type({}.keys()):
        return {"k": [encode(v, handles) for v in x]}
    if t is type({}.values()):
        return {"v": [encode(v, handles) for v in x]}
    if t is type({}.items()):
        return {"i": [[encode(k, handles), encode(v, handles)] for k, v in x]}
    if x is Ellipsis:
        return {"e": 1}
    if x is NotImplemented:
        return {"n": 1}
    item = _numpy_scalar(x)
    if item is not None:
        return encode(item, handles)
    plain = _plain_value(x)
    if plain is not None:  # e.g. a namedtuple: a subclass that compares exactly as its built-in base
        return encode(plain, handles)
    if handles is not None:
        handles.append(x)
        return {"h": len(handles) - 1, "type": _type_name(t)}
    if _is_iterator(x):  # generators, map/filter/zip objects: the values, read back as an iterator
        return {"I": [encode(v, handles) for v, _ in zip(x, range(MAX_ITEMS))]}
    raise Unencodable(_type_name(t), forged=getattr(t, "__module__", "") in PROGRAM_MODULES)


# built-in bases whose subclasses may cross as the base value, and how to read that value through the base's own slots
PLAIN_BASES = (
    (tuple, lambda x: tuple.__getitem__(x, slice(None))), (list, lambda x: list.__getitem__(x, slice(None))),
    (str, lambda x: str.__getitem__(x, slice(None))), (bytes, lambda x: bytes.__getitem__(x, slice(None))),
    (int, lambda x: int.__add__(x, 0)), (float, lambda x: float.__mul__(x, 1.0)),
    (dict, lambda x: dict(dict.items(x))), (frozenset, lambda x: frozenset(frozenset.__iter__(x))),
    (set, lambda x: set(set.__iter__(x))),
)
COMPARISON = ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__hash__", "__iter__", "__len__", "__getitem__",
              "__contains__", "__bool__")


def _plain_value(x):
    """The built-in value of a subclass instance that overrides none of its base's comparison methods, else None."""
    t = type(x)
    for base, read in PLAIN_BASES:
        if isinstance(x, base) and t is not base:
            if all(getattr(t, m, None) is getattr(base, m, None) for m in COMPARISON):
                return read(x)
            return None
    return None


def _is_iterator(x) -> bool:
    t = type(x)
    return getattr(t, "__module__", None) == "builtins" and hasattr(t, "__next__") and hasattr(t, "__iter__")


def decode(v, handle=None):
    """Fresh trusted objects from an encoded value; `handle(i, type_name)` makes a proxy for a program object."""
    if v is None or isinstance(v, (bool, str, int, float)):
        return v
    if isinstance(v, list):
        raise ValueError("untagged list")
    if not isinstance(v, dict) or not v:
        raise ValueError(f"malformed value {type(v).__name__}")
    tag = next(iter(v))
    body = v[tag]
    d = lambda items: [decode(i, handle) for i in _list(items)]  # noqa: E731
    pairs = lambda items: [(decode(k, handle), decode(x, handle)) for k, x in (_pair(p) for p in _list(items))]  # noqa: E731
    if tag == "x":
        return float.fromhex(str(body))
    if tag == "X":
        return int(str(body), 16)
    if tag == "l":
        return d(body)
    if tag == "t":
        return tuple(d(body))
    if tag == "d":
        return dict(pairs(body))
    if tag == "o":
        return collections.OrderedDict(pairs(body))
    if tag == "C":
        return collections.Counter(dict(pairs(body)))
    if tag == "s":
        return set(d(body))
    if tag == "f":
        return frozenset(d(body))
    if tag == "b":
        return base64.b64decode(str(body), validate=True)
    if tag == "B":
        return bytearray(base64.b64decode(str(body), validate=True))
    if tag == "c":
        re_, im = d(body)
        return complex(_num(re_), _num(im))
    if tag == "D":
        return decimal.Decimal(str(body))
    if tag == "F":
        num, den = _list(body)
        return fractions.Fraction(int(num), int(den))
    if tag == "r":
        return range(*(int(i) for i in _list(body)))
    if tag == "q":
        maxlen = v.get("m")
        return collections.deque(d(body), None if maxlen is None else int(maxlen))
    if tag == "k":
        return dict.fromkeys(d(body)).keys()
    if tag == "v":
        return dict(enumerate(d(body))).values()
    if tag == "i":
        return dict(pairs(body)).items()
    if tag == "I":
        return iter(d(body))
    if tag == "e":
        return Ellipsis
    if tag == "n":
        return NotImplemented
    if tag == "h" and handle is not None:
        return handle(int(body), str(v.get("type", "?")))
    raise ValueError(f"unknown value tag {tag!r}")


def _deep(fn, *args):
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, DEEP))
    try:
        return fn(*args)
    finally:
        sys.setrecursionlimit(limit)


def encode_deep(x, handles=None):
    """`encode` with room for values nested some thousand levels deep (RecursionError beyond)."""
    return _deep(encode, x, handles)


def decode_deep(v, handle=None):
    """`decode` with room for values nested some thousand levels deep (RecursionError beyond)."""
    return _deep(decode, v, handle)


def _list(x) -> list:
    if not isinstance(x, list):
        raise ValueError("malformed value: expected a list")
    return x


def _pair(p) -> list:
    if not isinstance(p, list) or len(p) != 2:
        raise ValueError("malformed value: expected a pair")
    return p


def _num(x):
    if type(x) not in (int, float):
        raise ValueError("malformed complex")
    return x


def send(fd: int, msg: dict) -> None:
    """Write one message (a JSON line), all of it."""
    data = (_deep(lambda: json.dumps(msg, allow_nan=False, separators=(",", ":"))) + "\n").encode()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Reader:
    """Reads JSON-line messages from a file descriptor; refuses lines over `MAX_MESSAGE` bytes."""

    def __init__(self, fd: int, limit: int = MAX_MESSAGE):
        self.fd, self.limit, self.buf = fd, limit, bytearray()

    def read(self):
        """The next message (a dict), None at end of input; ValueError for an over-long or malformed line."""
        start = 0
        while (end := self.buf.find(b"\n", start)) < 0:
            if len(self.buf) > self.limit:
                raise ValueError("message too large")
            start = len(self.buf)
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buf += chunk
        line = bytes(self.buf[:end])
        del self.buf[: end + 1]
        try:
            msg = _deep(json.loads, line)
        except ValueError:
            raise
        except Exception as e:  # too deep (RecursionError), or too big for memory
            raise ValueError(f"unreadable message ({type(e).__name__})") from None
        if not isinstance(msg, dict):
            raise ValueError("malformed message")
        return msg


def frame(msg: dict) -> bytes:
    """A length-prefixed message (`<length>\\n<JSON>`): read with `read_frame`, which never takes a byte beyond it, so
    several processes can each take their own message from one pipe."""
    data = _deep(lambda: json.dumps(msg, allow_nan=False, separators=(",", ":"))).encode()
    return str(len(data)).encode() + b"\n" + data


def read_frame(fd: int, limit: int = MAX_MESSAGE):
    """The next `frame` on `fd` (a dict), reading exactly its bytes; None at end of input; ValueError if malformed."""
    header = b""
    while not header.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            return None
        header += byte
        if len(header) > 20:
            raise ValueError("malformed frame header")
    n = int(header)
    if not 0 <= n <= limit:
        raise ValueError(f"frame of {n} bytes")
    data = bytearray()
    while len(data) < n:
        chunk = os.read(fd, min(n - len(data), 1 << 20))
        if not chunk:
            return None
        data += chunk
    msg = _deep(json.loads, bytes(data))
    if not isinstance(msg, dict):
        raise ValueError("malformed message")
    return msg
