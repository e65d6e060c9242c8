"""Sandbox zygote: a long-lived, standard-library-only process that forks one jailed child per program.

Started by `selfimprove.sandbox.pool` as `python -I -B _zygote.py`. It reads one JSON request per line
on stdin ({"program", "tests", "entry", "timeout", "memory_mb", "max_procs", "max_file_mb"}) and writes
one JSON result per line on stdout ({"outcome", "detail", "seconds"}). Isolation, applied per child:
a new session (the whole process group is killed at the end), resource limits (address space, CPU
time, processes, file size, open files, no core dumps), a fresh working directory deleted afterwards,
an empty environment, an unprivileged uid when the zygote runs as root, the zygote's own network
namespace with no interfaces up (no network), and an audit hook that blocks process creation,
signals, sockets, ctypes, frame/gc introspection and writes outside the working directory.

The verdict is written by the harness after the tests return, tagged with a per-run nonce the
program never sees in its namespace, so `sys.exit(0)` before the asserts or patched builtins
cannot fake a pass.
"""

import builtins
import ctypes
import json
import os
import resource
import select
import shutil
import signal
import sys
import tempfile
import time

NOBODY = 65534
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PRELOAD = ("typing", "math", "collections", "itertools", "functools", "re", "string", "heapq", "bisect", "hashlib", "fractions", "statistics", "operator", "decimal", "random", "copy", "dataclasses", "json")
BLOCKED_EVENTS = {
    "os.fork", "os.forkpty", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen", "pty.spawn",
    "os.kill", "os.killpg", "signal.pthread_kill", "os.setuid", "os.setgid", "resource.setrlimit", "resource.prlimit",
    "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto", "socket.gethostbyname",
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.addressof", "ctypes.call_function", "ctypes.string_at",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys._current_frames", "sys.settrace", "sys.setprofile",
    "code.__new__", "os.chroot", "os.mount", "os.unshare", "os.setns", "os.chdir", "shutil.chown", "os.chown",
}
PATH_EVENTS = {"os.remove": 0, "os.rmdir": 0, "os.rename": (0, 1), "os.replace": (0, 1), "os.link": (0, 1), "os.symlink": (1,),
               "os.truncate": 0, "os.chmod": 0, "os.mkdir": 0, "shutil.rmtree": 0, "shutil.move": (0, 1), "os.utime": 0}
SIGNAL_OUTCOMES = {signal.SIGXCPU: ("timeout", "CPU time limit"), signal.SIGXFSZ: ("crashed", "file size limit exceeded"),
                   signal.SIGSEGV: ("crashed", "segmentation fault"), signal.SIGKILL: ("memory", "killed (out of memory?)")}


def isolate_network() -> str:
    """Move this process (and so every child) into a network namespace with no interfaces up."""
    libc = ctypes.CDLL(None, use_errno=True)
    if os.geteuid() == 0:
        return "netns" if libc.unshare(CLONE_NEWNET) == 0 else "none"
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0:
        return "none"
    try:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError:
        pass
    return "userns+netns"


def make_hook(workdir: str, state: dict):
    """Audit hook of the child: blocked operations raise PermissionError and are remembered."""
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
        if not state["armed"]:
            return
        bad = event in BLOCKED_EVENTS or event.startswith("ctypes.") or (event == "object.__getattr__" and args and args[1] in ("tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_code"))
        if not bad and event == "open" and args:
            mode, flags = (args[1] or "r"), (args[2] or 0)
            writing = any(c in str(mode) for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
            bad = bool(writing) and not inside(args[0])
        if not bad and event in PATH_EVENTS:
            idx = PATH_EVENTS[event]
            bad = not all(inside(args[i]) for i in (idx if isinstance(idx, tuple) else (idx,)) if i < len(args))
        if bad:
            if len(state["blocked"]) < 5:
                state["blocked"].append(event)
            raise PermissionError(f"sandbox: {event} is not allowed")

    return hook


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


def run_child(req: dict, workdir: str, wfd: int, nonce: str) -> None:
    """In the forked child: apply limits, drop privileges, run program + tests, write the verdict."""
    write, exit_ = os.write, os._exit
    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, wfd)
    os.closerange(wfd + 1, 1 << 16)
    mem = int(req.get("memory_mb", 1024)) << 20
    cpu = int(req.get("timeout", 5)) + 1
    limits = [(resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu), (resource.RLIMIT_FSIZE, int(req.get("max_file_mb", 16)) << 20),
              (resource.RLIMIT_NOFILE, 64), (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, int(req.get("max_procs", 16)))]
    for what, value in limits:
        resource.setrlimit(what, (value, value))
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    os.chdir(workdir)
    os.environ.clear()
    sys.dont_write_bytecode = True
    state = {"armed": True, "blocked": []}
    sys.addaudithook(make_hook(workdir, state))
    namespace = {"__name__": "__main__", "__builtins__": dict(builtins.__dict__)}
    tests = req.get("tests", "")
    outcome, detail = "passed", ""
    phase = "program"
    try:
        code = compile(req.get("program", ""), "<solution>", "exec")
        phase = "tests"
        test_code = compile(tests + "\n" + req.get("entry", ""), "<tests>", "exec")
        phase = "program"
        exec(code, namespace)
        phase = "tests"
        exec(test_code, namespace)
    except SyntaxError as e:
        outcome, detail = ("syntax_error", f"{e.msg} (line {e.lineno})") if phase == "program" else ("crashed", f"test code does not compile: {e.msg}")
    except MemoryError:
        outcome, detail = "memory", "memory limit exceeded"
    except RecursionError:
        outcome, detail = "failed", "RecursionError"
    except AssertionError as e:
        state["armed"] = False
        outcome, detail = "failed", assert_line(e.__traceback__, tests) or f"assertion failed in the {phase}"
    except SystemExit as e:
        outcome, detail = "crashed", f"exited (code {e.code!r}) before the tests finished"
    except BaseException as e:  # the solution raised: a wrong answer, not a sandbox event
        outcome, detail = "failed", f"{type(e).__name__}: {str(e)[:200]} (in the {phase})"
    state["armed"] = False
    if state["blocked"]:
        outcome, detail = "blocked", "blocked: " + ", ".join(state["blocked"])
    write(wfd, (json.dumps({"nonce": nonce, "outcome": outcome, "detail": detail[:300]}) + "\n").encode())
    exit_(0)


def run_one(req: dict, base: str) -> dict:
    """Fork a jailed child for one program; wait for its verdict or kill its process group on timeout."""
    start = time.monotonic()
    timeout = float(req.get("timeout", 5))
    workdir = tempfile.mkdtemp(prefix="run-", dir=base)
    if os.geteuid() == 0:
        os.chown(workdir, NOBODY, NOBODY)
    nonce = os.urandom(16).hex()
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(rfd)
            run_child(req, workdir, wfd, nonce)
        finally:
            os._exit(70)
    os.close(wfd)
    data, timed_out = b"", False
    deadline = start + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([rfd], [], [], left)
        if not ready:
            continue
        chunk = os.read(rfd, 65536)
        if not chunk:
            break
        if len(data) < 1 << 16:
            data += chunk
    try:  # the child's whole process group, whatever it left running
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _, status = os.waitpid(pid, 0)
    os.close(rfd)
    shutil.rmtree(workdir, ignore_errors=True)
    seconds = round(time.monotonic() - start, 4)
    verdict = None
    for line in reversed(data.decode(errors="replace").splitlines()):
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if isinstance(v, dict) and v.get("nonce") == nonce:
            verdict = v
            break
    if verdict is not None:
        return {"outcome": verdict["outcome"], "detail": verdict["detail"], "seconds": seconds}
    if timed_out:
        return {"outcome": "timeout", "detail": f"wall time limit {timeout:g}s", "seconds": seconds}
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        outcome, detail = SIGNAL_OUTCOMES.get(sig, ("crashed", f"killed by signal {sig}"))
        return {"outcome": outcome, "detail": detail, "seconds": seconds}
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    return {"outcome": "crashed", "detail": f"exited with status {code} before the tests finished", "seconds": seconds}


def main() -> None:
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    network = isolate_network()
    base = tempfile.mkdtemp(prefix="selfimprove-sandbox-")
    os.chmod(base, 0o711)
    print(json.dumps({"ready": True, "network": network, "uid": NOBODY if os.geteuid() == 0 else os.geteuid()}), flush=True)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                result = run_one(json.loads(line), base)
            except Exception as e:  # a broken request must not take the zygote down
                result = {"outcome": "crashed", "detail": f"sandbox error: {type(e).__name__}: {e}", "seconds": 0.0}
            sys.stdout.write(json.dumps(result) + "\n")
            sys.stdout.flush()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
