"""Sandbox zygote: a long-lived, standard-library-only process that forks two processes per program.

Started by `selfimprove.sandbox.pool` as `python -I -B _zygote.py [--filesystem auto|jail|mirror|host] [--hide PATH]...`.
Per program the pool writes one line {"program", "timeout", "memory_mb", "max_procs", "max_file_mb",
"type_strict"}; the zygote forks the jailed child (`_child.py`) and answers {"forked": true}; only then
does the pool send the trusted part {"tests", "prelude", "entry", "candidates"}, and the zygote forks
the judge (`_judge.py`), which runs the tests and writes the verdict into a pipe only it holds. The
zygote answers one line {"outcome", "detail", "seconds"}.

Isolation of the child: its own pid namespace (it is process 1 there, behind a reaper; when it ends or the
reaper is killed at the deadline, everything it started ends too, and it cannot see or signal any other
process), its own root (`_fs.py`: system directories and the interpreter read-only, an empty /tmp, no home,
no run folders, no datasets), resource limits (address space, CPU time, file size, open files, no core
dumps, processes), an unprivileged uid of this zygote's own when it runs as root (else no capabilities
left in the zygote's user namespace), no new privileges, an empty environment, the zygote's network
namespace with no interfaces up, and an audit hook in front of it all (process creation, signals,
sockets, ctypes, writes outside the working directory).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # siblings: _wire, _child, _judge, _fs

import ctypes  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import _child  # noqa: E402
import _fs  # noqa: E402
import _judge  # noqa: E402
import _wire  # noqa: E402

del sys.path[0]

CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWPID = 0x10000000, 0x40000000, 0x20000000
PR_SET_DUMPABLE = 4
UID_BASE = 1_500_000_000  # + the zygote's pid: a uid no account and no other zygote has
PRELOAD = ("typing", "math", "collections", "itertools", "functools", "re", "string", "heapq", "bisect", "hashlib", "fractions",
           "statistics", "operator", "decimal", "random", "copy", "dataclasses", "json", "threading", "datetime", "base64")
SIGNAL_OUTCOMES = {signal.SIGXCPU: ("timeout", "CPU time limit"), signal.SIGXFSZ: ("crashed", "file size limit exceeded"),
                   signal.SIGSEGV: ("crashed", "segmentation fault"), signal.SIGKILL: ("memory", "killed (out of memory?)")}
if hasattr(sys, "set_int_max_str_digits"):  # big integers cross as JSON numbers, both ways
    sys.set_int_max_str_digits(0)


def isolate_network(libc) -> str:
    """Move this process (and so every child) into a network namespace with no interfaces up."""
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


def fork(target) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            target()
        finally:
            os._exit(70)
    return pid


def can_unshare_pid(libc) -> bool:
    """Whether a child can get a pid namespace of its own here (tried in a throwaway process)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.unshare(CLONE_NEWPID) == 0 else 1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def reaper(libc, pid_ns: bool, start_child) -> None:
    """Process between the zygote and the child: gives the child a pid namespace and mirrors how it ended."""
    if not pid_ns:
        start_child()
    libc.unshare(CLONE_NEWPID)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # held until the handler below is in place
    pid = os.fork()
    if pid == 0:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        start_child()
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(3, 1 << 16)  # the pipes are the child's: their ends must close when it ends
    # asked to stop (SIGTERM): kill the child, process 1 of its namespace; reaping it means every process the
    # program started is gone too, so nothing of this run still counts against the next one's process limit
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 70)


def wait_verdict(vfd: int, deadline: float):
    """The judge's verdict line, or None when the deadline passes or the judge ends without one."""
    reader = _wire.Reader(vfd, limit=1 << 16)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, True
        if not select.select([vfd], [], [], left)[0]:
            continue
        try:
            return reader.read(), False
        except ValueError:
            return None, False


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stop_child(pid: int, pid_ns: bool) -> None:
    """End the program's processes and reap them all before the next program starts."""
    if not pid_ns:
        kill_group(pid)
        os.waitpid(pid, 0)
        return
    try:
        os.kill(pid, signal.SIGTERM)  # the reaper kills its child and waits for the namespace to empty
    except ProcessLookupError:
        pass
    until = time.monotonic() + 5
    while os.waitpid(pid, os.WNOHANG)[0] == 0:
        if time.monotonic() > until:
            kill_group(pid)
            os.waitpid(pid, 0)
            return
        time.sleep(0.0005)


def child_status(pid: int, until: float):
    """(outcome, detail) from how the child ended by itself (reaped); None when it still runs at `until`."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() >= until:
            return None
        time.sleep(0.001)
    if os.WIFSIGNALED(status):
        return SIGNAL_OUTCOMES.get(os.WTERMSIG(status), ("crashed", f"killed by signal {os.WTERMSIG(status)}"))
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    return "crashed", f"exited with status {code} before the tests finished"


def remove_tree(path: str) -> None:
    """Delete what a program left on the host filesystem (non-jail modes); never raises, however deep the tree."""
    limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(limit, 50_000))
        shutil.rmtree(path, ignore_errors=True)
    except BaseException:
        pass
    finally:
        sys.setrecursionlimit(limit)


class Zygote:
    """The state one zygote keeps between programs: its libc, jail layout, the children's uid, pid namespaces."""

    def __init__(self, libc, layout: "_fs.Layout", uid: int | None, pid_ns: bool, base: str):
        self.libc, self.layout, self.uid, self.pid_ns, self.base = libc, layout, uid, pid_ns, base

    def run_one(self, req: dict, read_trusted) -> dict:
        """Fork the jailed child, read the trusted part, fork the judge; wait for the verdict or the deadline."""
        start = time.monotonic()
        timeout = float(req.get("timeout", 5))
        inner = tempfile.mkdtemp(prefix="run-", dir=self.layout.outside(self.layout.work))
        workdir = inner if self.layout.root is None else inner[len(self.layout.root):]
        scratch = self.layout.scratch(inner)  # jail: fresh tmpfs mounts, dropped whole afterwards
        if self.uid is not None:
            os.chown(inner, self.uid, self.uid)
        judgedir = tempfile.mkdtemp(prefix="judge-", dir=self.base)
        to_judge_r, to_judge_w = os.pipe()
        to_child_r, to_child_w = os.pipe()

        def child_main():
            os.close(to_judge_r)
            os.close(to_child_w)
            _child.run_child(req, self.layout, workdir, self.uid, to_child_r, to_judge_w)

        child = fork(lambda: reaper(self.libc, self.pid_ns, child_main))
        try:
            trusted = read_trusted()  # sent only now: the child's memory never held the tests
        except EOFError:
            stop_child(child, self.pid_ns)
            raise
        verdict_r, verdict_w = os.pipe()

        def judge_main():
            os.setsid()
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            for fd in (to_judge_w, to_child_r, verdict_r):
                os.close(fd)
            self.libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace or /proc/<pid>/mem from the same uid
            os.chdir(judgedir)
            mem = (int(req.get("memory_mb", 1024)) + 1024) << 20
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            _judge.run_judge({**req, **trusted}, to_judge_r, to_child_w, verdict_w)

        judge = fork(judge_main)
        for fd in (to_judge_r, to_judge_w, to_child_r, to_child_w, verdict_w):
            os.close(fd)
        verdict, timed_out = wait_verdict(verdict_r, start + timeout)
        os.close(verdict_r)
        ended = None
        if verdict is not None and verdict.get("ended"):
            ended = child_status(child, min(start + timeout, time.monotonic() + 0.5))  # how the child ended by itself
        kill_group(judge)
        if ended is None:
            stop_child(child, self.pid_ns)
        os.waitpid(judge, 0)
        seconds = round(time.monotonic() - start, 4)
        if ended is not None:
            result = {"outcome": ended[0], "detail": ended[1]}
        elif verdict is not None and verdict.get("outcome") in _wire.OUTCOMES:
            result = {"outcome": verdict["outcome"], "detail": str(verdict.get("detail", ""))[:300]}
        elif timed_out:
            result = {"outcome": "timeout", "detail": f"wall time limit {timeout:g}s"}
        else:
            result = {"outcome": "crashed", "detail": "the sandbox's judge ended without a verdict"}
        self.layout.drop(scratch)
        remove_tree(inner)
        remove_tree(judgedir)
        return dict(result, seconds=seconds)


def option(name: str, default=None, many: bool = False):
    values = [sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == name]
    return values if many else (values[-1] if values else default)


def main() -> None:
    for name in PRELOAD:
        try:
            __import__(name)
        except ImportError:
            pass
    libc = ctypes.CDLL(None, use_errno=True)
    network = isolate_network(libc)
    uid = UID_BASE + os.getpid() if os.geteuid() == 0 else None
    base = tempfile.mkdtemp(prefix="selfimprove-sandbox-")
    os.chmod(base, 0o711)
    try:
        layout = _fs.setup(libc, option("--filesystem", "auto"), uid, option("--hide", many=True), base)
    except _fs.SandboxSetupError as e:
        print(json.dumps({"ready": False, "error": str(e)}), flush=True)
        shutil.rmtree(base, ignore_errors=True)
        return
    pid_ns = can_unshare_pid(libc)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    zygote = Zygote(libc, layout, uid, pid_ns, base)
    print(json.dumps({"ready": True, "network": network, "uid": uid if uid is not None else os.geteuid(), "pid_namespace": pid_ns,
                      "filesystem": layout.info}), flush=True)
    stdin = _wire.Reader(0, limit=256 << 20)
    out = sys.stdout

    def reply(msg: dict) -> None:
        out.write(json.dumps(msg) + "\n")
        out.flush()

    def read_trusted() -> dict:
        reply({"forked": True})
        msg = stdin.read()
        if msg is None:
            raise EOFError
        return msg

    try:
        while True:
            try:
                req = stdin.read()
            except ValueError as e:
                reply({"outcome": "crashed", "detail": f"sandbox error: {e}", "seconds": 0.0})
                continue
            if req is None:
                break
            try:
                result = zygote.run_one(req, read_trusted)
            except EOFError:
                break
            except Exception as e:  # a broken request must not take the zygote down
                result = {"outcome": "crashed", "detail": f"sandbox error: {type(e).__name__}: {e}", "seconds": 0.0}
            reply(result)
    finally:
        layout.close()
        remove_tree(base)


if __name__ == "__main__":
    main()
