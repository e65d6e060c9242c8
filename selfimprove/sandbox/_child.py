"""The jailed side of a sandbox run: its own root, limits, no privileges, an audit hook, then the program.

Forked by the zygote before it has even read the tests, this process never holds them: it runs the
untrusted program, then answers the judge's requests ("call f with these values") with values
encoded by `_wire`. Nothing it writes can be a verdict; the judge decides, in another process. So the
audit hook no longer guards secrets (there are none here); it keeps the program from starting
processes, signalling, opening sockets, calling C through ctypes and writing outside its directory,
in front of the jail root, the pid namespace and the unprivileged uid that contain it anyway.
"""

import builtins
import ctypes
import os
import resource
import sys
import threading

import _wire

BLOCKED_EVENTS = {
    "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen", "pty.spawn",
    "os.kill", "os.killpg", "signal.pthread_kill", "signal.pidfd_send_signal", "os.setuid", "os.setgid", "resource.setrlimit",
    "resource.prlimit", "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto",
    "socket.gethostbyname", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.addressof", "ctypes.call_function",
    "ctypes.string_at", "os.chroot", "os.mount", "os.unshare", "os.setns", "os.chdir", "shutil.chown", "os.chown",
}
BLOCKED_IMPORTS = {"_posixsubprocess", "_ctypes", "ctypes"}  # _posixsubprocess.fork_exec raises no audit event
PATH_EVENTS = {"os.remove": 0, "os.rmdir": 0, "os.rename": (0, 1), "os.replace": (0, 1), "os.link": (0, 1), "os.symlink": (1,),
               "os.truncate": 0, "os.chmod": 0, "os.mkdir": 0, "shutil.rmtree": 0, "shutil.move": (0, 1), "os.utime": 0}
PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG = 38, 1
# numerical libraries start a thread per CPU on import, which the process limit would refuse
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def make_hook(workdir: str, report):
    """Audit hook: a blocked operation is reported to the judge at once, then raises PermissionError."""
    root = os.path.realpath(workdir)

    def inside(path) -> bool:
        if isinstance(path, int):
            return True
        try:
            p = os.path.realpath(os.fsdecode(path))
        except Exception:
            return False
        return p == root or p.startswith(root + os.sep) or p == "/dev/null"

    def hook(event, args):
        bad = event in BLOCKED_EVENTS or event.startswith("ctypes.") or (
            event == "import" and args and str(args[0]).split(".")[0] in BLOCKED_IMPORTS)
        if not bad and event == "open" and args:
            mode, flags = (args[1] or "r"), (args[2] or 0)
            writing = any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
            bad = bool(writing) and not inside(args[0])
        if not bad and event in PATH_EVENTS:
            idx = PATH_EVENTS[event]
            bad = not all(inside(args[i]) for i in (idx if isinstance(idx, tuple) else (idx,)) if i < len(args))
        if bad:
            report(event)
            raise PermissionError(f"sandbox: {event} is not allowed")

    return hook


def drop_capabilities(libc) -> None:
    """No capabilities (a user namespace gives its creator all of them; chroot, mount or ptrace must not stay)."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def jail(req: dict, layout, workdir: str, uid: int | None, keep: tuple[int, ...]) -> None:
    """Own session, stdio to /dev/null, only `keep` fds, the jail root, limits, no privileges, empty environment.

    `uid`: the unprivileged uid to switch to (root zygote), None to keep this one (the zygote's user namespace).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    last = 3
    for fd in sorted(keep):
        os.closerange(last, fd)
        last = fd + 1
    os.closerange(last, 1 << 16)
    layout.enter()
    mem = int(req.get("memory_mb", 1024)) << 20
    cpu = int(req.get("timeout", 5)) + 1
    limits = [(resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_FSIZE, int(req.get("max_file_mb", 16)) << 20),
              (resource.RLIMIT_NOFILE, 64), (resource.RLIMIT_CORE, 0)]
    if uid is not None:  # counts this uid's processes machine-wide: the zygote's own uid, so only this program's
        limits.append((resource.RLIMIT_NPROC, int(req.get("max_procs", 16))))
    for what, value in limits:
        resource.setrlimit(what, (value, value))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    else:
        drop_capabilities(libc)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)  # the zygote's reaper gone (killed at the deadline): this process too
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(SINGLE_THREADED)
    sys.dont_write_bytecode = True


def _raised(e: BaseException) -> dict:
    try:
        msg = str(e)[:200]
    except BaseException:
        msg = "?"
    return {"raised": {"types": [getattr(t, "__name__", "?") for t in type(e).__mro__][:16], "msg": msg}}


def _encode_reply(value, handles) -> dict:
    try:
        return {"ok": _wire.encode(value, handles)}
    except _wire.Unencodable as e:
        return {"forged" if e.forged else "unsupported": e.type_name}
    except (RecursionError, MemoryError, ValueError) as e:
        return {"unsupported": f"{type(e).__name__} while reading the value"}


def _names(namespace: dict, handles) -> dict:
    """The program's globals: callables by name, modules by name (the tests import their own), other values encoded."""
    out = {}
    for name, value in list(namespace.items())[:10000]:
        if name.startswith("__"):
            continue
        if type(value).__name__ == "module":
            out[name] = {"module": str(getattr(value, "__name__", ""))}
        elif callable(value):
            out[name] = {"callable": True}
        else:
            reply = _encode_reply(value, handles)
            if "ok" in reply:
                out[name] = {"value": reply["ok"]}
    return out


class Server:
    """Runs the program, then answers the judge's requests until the judge is done (end of input)."""

    def __init__(self, rfd: int, wfd: int, strict: bool):
        self.reader, self.wfd = _wire.Reader(rfd), wfd
        self.handles = None if strict else []
        self.lock = threading.Lock()
        self.namespace = {"__name__": "__main__", "__builtins__": dict(builtins.__dict__)}

    def send(self, msg: dict) -> None:
        with self.lock:
            _wire.send(self.wfd, msg)

    def blocked(self, event: str) -> None:
        try:
            self.send({"blocked": event})
        except Exception:
            pass

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
        self.send({"ready": _names(self.namespace, self.handles)})
        return True

    def _target(self, msg: dict):
        target = msg.get("target")
        if isinstance(target, str):
            return self.namespace[target]
        if self.handles is not None and isinstance(target, int) and 0 <= target < len(self.handles):
            return self.handles[target]
        raise LookupError(f"no program object {target!r}")

    def _value(self, v):
        return _wire.decode(v, None if self.handles is None else (lambda i, _t: self.handles[i]))

    def answer(self, msg: dict) -> dict:
        obj = self._target(msg)
        if msg.get("op") == "attr":
            return _encode_reply(getattr(obj, str(msg["name"])), self.handles)
        args = [self._value(a) for a in msg.get("args", [])]
        kwargs = {str(k): self._value(v) for k, v in msg.get("kwargs", [])}
        before = [_arg_copy(a) for a in args]
        method = msg.get("method")
        if method:
            fn = getattr(type(obj), str(method), None)
            if fn is None:
                return {"raised": {"types": ["TypeError"], "msg": f"{type(obj).__name__} has no {method}"}}
            value = fn(obj, *args, **kwargs)
        else:
            value = obj(*args, **kwargs)
        reply = _encode_reply(value, self.handles)
        changed = [b is not None and (type(a) is not type(b) or a != b) for a, b in zip(args, before)]
        if any(changed):
            reply["args"] = [_encode_reply(a, None).get("ok") if c else None for a, c in zip(args, changed)]
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


def _arg_copy(a):
    """A shallow copy of an argument the program could change in place (list, dict, set, bytearray), else None."""
    t = type(a)
    return t(a) if t in (list, dict, set, bytearray) else None


def run_child(req: dict, layout, workdir: str, uid: int | None, rfd: int, wfd: int) -> None:
    """In the forked child: jail, run the program, serve the judge; never returns."""
    try:
        jail(req, layout, workdir, uid, (rfd, wfd))
        server = Server(rfd, wfd, bool(req.get("type_strict", True)))
        sys.addaudithook(make_hook(workdir, server.blocked))
        if server.load(req.get("program", "")):
            server.serve()
    finally:
        os._exit(0)
