"""The jailed side of a sandbox run: its own root, limits, no privileges, a seccomp filter, then the program.

Forked by the zygote before it has even read the tests, this process never holds them: it runs the
untrusted program, then answers the judge's requests ("call f with these values") with values
encoded by `_wire`. Nothing it writes can be a verdict; the judge decides, in another process.

The boundary is the kernel's (namespaces, the jail root, the uid, limits, cgroups, the seccomp filter). The audit
hook in front of it is telemetry: it reports what a program should never try (processes, signals, sockets, ctypes
called from the program's own code, writes outside its directories, tampering with the sandbox's own functions or
the hook, code compiled under a library's file name, sub-interpreters and C test modules, which run without the hook)
and ends the program at once with status BLOCKED_EXIT, so the run is scored `blocked` (even when the program silenced
the report) and the report counts reward hacking. Its tables and everything it calls are bound into it as constants and default values,
not looked up in module globals a program could change. A program that switches it off anyway gains nothing the
kernel does not refuse.
"""

import builtins
import ctypes
import os
import re
import resource
import sys
import tempfile
import threading
import types

import _privileges
import _wire

PROCESS_EVENTS = frozenset({
    "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen", "pty.spawn",
    "os.kill", "os.killpg", "signal.pthread_kill", "signal.pidfd_send_signal", "os.setuid", "os.setgid",
    "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto", "socket.gethostbyname",
    "os.chroot", "os.unshare", "os.setns", "shutil.chown", "os.chown", "cpython.PyInterpreterState_New",
})
# interpreters without the hook (sub-interpreters), and test modules that reach C internals
SUBINTERPRETERS = frozenset({"_xxsubinterpreters", "_xxinterpchannels", "_interpreters", "_interpchannels", "_interpqueues",
                             "concurrent.interpreters", "_testcapi", "_testinternalcapi", "_testmultiphase", "_testsinglephase",
                             "_testimportmultiple", "_testbuffer", "_testclinic", "_ctypes_test", "_xxtestfuzz"})
BLOCKED_EXIT = 77  # the status a refused operation ends the program with (the zygote scores it `blocked`)
# path events: (indices of path arguments, index of their dir_fd arguments)
PATH_EVENTS = {"os.remove": ((0,), (1,)), "os.rmdir": ((0,), (1,)), "os.rename": ((0, 1), (2, 3)), "os.replace": ((0, 1), (2, 3)),
               "os.link": ((0, 1), (2, 3)), "os.symlink": ((1,), (2,)), "os.truncate": ((0,), ()), "os.chmod": ((0,), (2,)),
               "os.mkdir": ((0,), (2,)), "shutil.rmtree": ((0,), (1,)), "shutil.move": ((0, 1), ()), "os.utime": ((0,), (3,))}
HOOK_FILE = "<selfimprove-sandbox-audit-hook>"
PR_SET_PDEATHSIG = 1
PROGRAM_MODULE = _wire.PROGRAM_MODULES[0]  # the program's __name__: not "__main__", so a usage block under `if __name__ == "__main__"` stays unrun

HOOK_SOURCE = '''
def hook(event, args, _report=None, _roots=(), _prefixes=(), _devs=(), _realpath=REALPATH, _fsdecode=FSDECODE, _fstat=FSTAT,
         _getframe=GETFRAME, _getattr=getattr,
         _type=type, _str=str, _int=int, _len=len, _function=FUNCTION, _error=Exception, _exit=EXIT):
    """Refuse and report what a program should never try (see _child's docstring)."""
    bad = ""
    if event in PROCESS:
        bad = event
    elif event == "compile" or event == "code.__new__":
        # code that claims a library's file name (so that its ctypes calls would count as library code): only the
        # import machinery and library code may compile such code
        name = args[1] if _len(args) > 1 else ""
        name = name if _type(name) is _str else ""
        if name == HOOK_FILE:
            bad = event
        elif name.startswith(LIBRARIES):
            caller = _getframe(1).f_code.co_filename
            bad = "" if caller.startswith("<frozen importlib") or caller.startswith(LIBRARIES) else event + " under a library's name"
    elif event == "object.__setattr__" or event == "object.__delattr__":
        target = args[0]
        if _type(target) is _function:
            owner = target.__code__.co_filename
        else:
            owner = _getattr(target, "__module__", "") if _type(target) is _type else ""
        bad = event + " on the sandbox" if owner in SANDBOX else ""
    elif event.startswith("ctypes."):
        f = _getframe(1)
        while f is not None and f.f_code.co_filename.startswith(SKIPPED):
            f = f.f_back
        bad = event if f is None or not f.f_code.co_filename.startswith(LIBRARIES) else ""
    elif event == "import":
        bad = event + " " + _str(args[0]) if args and _str(args[0]).split(".")[0] in SUBINTERPRETERS else ""
    elif event == "open":
        mode, flags = (args[1] or "r"), (args[2] or 0)
        writing = ("w" in _str(mode) or "a" in _str(mode) or "x" in _str(mode) or "+" in _str(mode)) or flags & WRITE_FLAGS
        if writing and _type(args[0]) is not _int:
            try:
                p = _realpath(_fsdecode(args[0]))
            except _error:
                p = ""
            bad = "" if p == "/dev/null" or p in _roots or p.startswith(_prefixes) else event
    elif event in PATH_NAMES:
        for name, paths, dir_fds in PATHS:
            if name != event:
                continue
            for i in dir_fds:
                fd = args[i] if i < _len(args) else None
                if _type(fd) is _int and fd >= 0:  # None, -1 or AT_FDCWD: no directory descriptor
                    rel = _str(_fsdecode(args[0]))
                    try:
                        dev = _fstat(fd).st_dev
                    except _error:
                        dev = -1
                    if dev not in _devs or rel.startswith("/") or ".." in rel.split("/"):
                        bad = event + " (dir_fd)"
            for i in paths:
                if not bad and i < _len(args) and _type(args[i]) is not _int:
                    try:
                        p = _realpath(_fsdecode(args[i]))
                    except _error:
                        p = ""
                    if not (p in _roots or p.startswith(_prefixes)):
                        bad = event
    if bad:
        _report(bad)
        _exit(BLOCKED_EXIT)  # at once: a program that silenced the report cannot go on and pass
'''


def _reporter(wfd: int, lock):
    """A function that writes one `{"blocked": event}` line to the judge, built from builtins only."""
    def report(event, _wfd=wfd, _lock=lock, _write=os.write, _str=str, _oserror=OSError):
        text = "".join(c if c.isalnum() or c in "._ ()" else "?" for c in _str(event)[:80])
        with _lock:
            try:
                _write(_wfd, b'{"blocked":"' + text.encode("ascii", "replace") + b'"}\n')
            except _oserror:
                pass
    return report


def _literal(value) -> str:
    """Source text of a constant: a set becomes a set display, which the compiler folds into a frozenset constant."""
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(repr(v) for v in sorted(value)) + "}" if value else "()"
    return repr(value)


def hook_template(libraries: tuple[str, ...], skipped: tuple[str, ...]):
    """The audit hook compiled once per zygote, its tables as constants (HOOK_SOURCE); `make_hook` binds a run's values."""
    sandbox = {os.path.abspath(__file__), os.path.abspath(_wire.__file__), HOOK_FILE, "_child", "_wire"}
    consts = {"PROCESS": PROCESS_EVENTS, "SUBINTERPRETERS": SUBINTERPRETERS, "SANDBOX": sandbox, "HOOK_FILE": HOOK_FILE,
              "LIBRARIES": libraries or ("\0",), "SKIPPED": skipped, "PATH_NAMES": set(PATH_EVENTS), "BLOCKED_EXIT": BLOCKED_EXIT,
              "WRITE_FLAGS": os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
              "PATHS": tuple((k, p, d) for k, (p, d) in PATH_EVENTS.items())}
    source = re.sub(r"\b(%s)\b" % "|".join(consts), lambda m: _literal(consts[m.group(1)]), HOOK_SOURCE)
    namespace = {"REALPATH": os.path.realpath, "FSDECODE": os.fsdecode, "FSTAT": os.fstat, "GETFRAME": sys._getframe,
                 "FUNCTION": type(_literal), "EXIT": os._exit}
    exec(compile(source, HOOK_FILE, "exec"), namespace)
    return namespace["hook"]


def make_hook(template, roots: list[str], scratch_devs: set[int], report):
    """A run's hook: the template's code with this run's directories, scratch devices and report function bound as its
    first default values (a tuple: replacing it is an assignment to `__defaults__`, which the hook refuses)."""
    roots = tuple(roots)
    defaults = (report, roots, tuple(r + "/" for r in roots), frozenset(scratch_devs)) + template.__defaults__[4:]
    return types.FunctionType(template.__code__, template.__globals__, "hook", defaults)


def library_dirs(sys_path: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(directories whose code counts as library code for ctypes events, frames skipped when looking for the caller).

    Installed packages and the standard library call ctypes on their own (torch loads its libraries); the program's own
    code (`<solution>`, anything exec'd) does not count as library code. The ctypes package and the import machinery are
    skipped: the caller that matters is whoever called them."""
    import sysconfig

    stdlib = sysconfig.get_paths()["stdlib"]
    dirs = [p for p in sys_path if p and os.path.isabs(p) and os.path.isdir(p)] + [os.path.dirname(os.path.abspath(__file__))]
    return tuple(d.rstrip("/") + "/" for d in dirs), (os.path.join(stdlib, "ctypes") + "/", "<frozen importlib")


def jail(req: dict, layout, workdir: str, uid: int | None, keep: tuple[int, ...]):
    """Own session, stdio to /dev/null, only `keep` fds, the jail root, limits, no privileges, a clean environment.
    Returns libc (ctypes), for the seccomp filter.

    `uid`: the unprivileged uid to switch to (root zygote), None to keep this one (the zygote's user namespace).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    tmp = "/tmp" if layout.root is not None and layout.tmp else workdir  # jail: a fresh /tmp per run; else its own directory
    _privileges.detach(keep, dict(_privileges.SINGLE_THREADED, TMPDIR=tmp))
    try:
        with open("/proc/self/oom_score_adj", "w") as f:  # the OOM killer's first choice (the zygote exempts itself)
            f.write("1000")
    except OSError:
        pass
    layout.enter()
    mem = int(req.get("memory_mb", 1024)) << 20
    cpu = int(req.get("timeout", 5)) + 1
    limits = [(resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_FSIZE, int(req.get("max_file_mb", 16)) << 20),
              (resource.RLIMIT_NOFILE, 64), (resource.RLIMIT_CORE, 0)]
    if uid is not None:  # counts this uid's processes machine-wide: the zygote's own uid, so only this program's
        limits.append((resource.RLIMIT_NPROC, int(req.get("max_procs", 16))))
    for what, value in limits:
        resource.setrlimit(what, (value, value))
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)  # the zygote's reaper gone (killed at the deadline): this process too
    _privileges.become(libc, uid)
    os.chdir(workdir)
    tempfile.tempdir = None  # the zygote's cached choice (the host's /tmp) is not this run's
    sys.dont_write_bytecode = True
    return libc


def _raised(e: BaseException) -> dict:
    try:
        msg = str(e)[:200]
    except BaseException:
        msg = "?"
    return {"raised": {"types": [getattr(t, "__name__", "?") for t in type(e).__mro__][:16], "msg": msg}}


def _encode_reply(value, handles) -> dict:
    try:
        return {"ok": _wire.encode_deep(value, handles)}
    except _wire.Unencodable as e:
        return {"forged" if e.forged else "unsupported": e.type_name}
    except (RecursionError, MemoryError, ValueError) as e:
        return {"unsupported": f"{type(e).__name__} while reading the value"}


def _kinds(namespace: dict) -> dict:
    """The program's globals by kind: callables and modules by name, other values on request (nothing is read now:
    a module-level generator stays undrained, a deep structure the tests never use is never encoded)."""
    out = {}
    for name, value in list(namespace.items())[:10000]:
        if not isinstance(name, str) or name.startswith("__"):
            continue
        if type(value).__name__ == "module":
            out[name] = {"module": str(getattr(value, "__name__", ""))}
        elif callable(value):
            out[name] = {"callable": True}
        else:
            out[name] = {"value": True}
    return out


class Server:
    """Runs the program, then answers the judge's requests until the judge is done (end of input)."""

    def __init__(self, rfd: int, wfd: int, strict: bool):
        self.reader, self.wfd = _wire.Reader(rfd), wfd
        self.handles = None if strict else []
        self.lock = threading.Lock()
        self.namespace = {"__name__": PROGRAM_MODULE, "__builtins__": dict(builtins.__dict__)}

    def send(self, msg: dict) -> None:
        with self.lock:
            _wire.send(self.wfd, msg)

    def load(self, program: str) -> bool:
        try:
            code = compile(program, "<solution>", "exec")
        except SyntaxError as e:
            self.send({"syntax_error": f"{e.msg} (line {e.lineno})"})
            return False
        except (ValueError, MemoryError, RecursionError) as e:
            self.send({"syntax_error": f"{type(e).__name__}: {e}"[:200]})
            return False
        try:
            exec(code, self.namespace)
        except SystemExit as e:
            self.send({"exit": repr(e.code)[:100]})
            return False
        except BaseException as e:
            self.send({"load_error": _raised(e)["raised"]})
            return False
        self.send({"ready": _kinds(self.namespace)})
        return True

    def _target(self, msg: dict):
        target = msg.get("target")
        if isinstance(target, str):
            return self.namespace[target]
        if self.handles is not None and isinstance(target, int) and 0 <= target < len(self.handles):
            return self.handles[target]
        raise LookupError(f"no program object {target!r}")

    def _value(self, v):
        return _wire.decode_deep(v, None if self.handles is None else (lambda i, _t: self.handles[i]))

    def answer(self, msg: dict) -> dict:
        if msg.get("op") == "global":
            return _encode_reply(self.namespace[str(msg.get("name"))], self.handles)
        obj = self._target(msg)
        if msg.get("op") == "attr":
            return _encode_reply(getattr(obj, str(msg["name"])), self.handles)
        args = [self._value(a) for a in msg.get("args", [])]
        kwargs = {str(k): self._value(v) for k, v in msg.get("kwargs", [])}
        before = [_state(a) for a in args]
        method = msg.get("method")
        if method:
            fn = getattr(type(obj), str(method), None)
            if fn is None:
                return {"raised": {"types": ["TypeError"], "msg": f"{type(obj).__name__} has no {method}"}}
            value = fn(obj, *args, **kwargs)
        else:
            value = obj(*args, **kwargs)
        reply = _encode_reply(value, self.handles)
        after = [_state(a) if b is not None else None for a, b in zip(args, before)]
        if any(b is not None and a != b for a, b in zip(after, before)):
            reply["args"] = [a if b is not None and a != b else None for a, b in zip(after, before)]
        return reply

    def serve(self) -> None:
        while True:
            try:
                msg = self.reader.read()
            except ValueError:
                return
            if msg is None:
                return
            try:
                reply = self.answer(msg)
            except SystemExit as e:
                self.send({"exit": repr(e.code)[:100]})
                return
            except BaseException as e:
                reply = _raised(e)
            try:
                self.send(reply)
            except (ValueError, TypeError, OverflowError, RecursionError) as e:  # an unsendable value
                self.send({"unsupported": f"{type(e).__name__} while sending the value"})


def _state(a):
    """The encoded state of an argument the program could change in place (a container of a mutable type, nested
    changes included), else None: compared after the call to send the tests' copy the new state."""
    if type(a) not in _wire.MUTABLE:
        return None
    try:
        return _wire.encode_deep(a, None)
    except Exception:
        return None


def run_child(req: dict, layout, workdir: str, uid: int | None, rfd: int, wfd: int, bpf: bytes = b"", hook=None) -> None:
    """In the forked child: jail, run the program, serve the judge; never returns. `hook`: the audit hook's template
    (`hook_template`), None for none."""
    try:
        libc = jail(req, layout, workdir, uid, (rfd, wfd))
        _privileges.install_seccomp(libc, bpf)
        server = Server(rfd, wfd, bool(req.get("type_strict", True)))
        if hook is not None:  # last: from here on, ctypes called from code outside the library directories is reported
            roots = [os.path.realpath(workdir)] + (["/tmp"] if layout.root is not None and layout.tmp else [])
            devs = {os.stat(r).st_dev for r in roots} if layout.root is not None else set()
            sys.addaudithook(make_hook(hook, roots, devs, _reporter(wfd, server.lock)))
        if server.load(req.get("program", "")):
            server.serve()
    finally:
        os._exit(0)
