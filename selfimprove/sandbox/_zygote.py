"""Sandbox zygote: a long-lived, standard-library-only process that forks two processes per program.

Started by `selfimprove.sandbox.pool` as `python -I -B _zygote.py [--filesystem auto|jail|mirror|host] [--hide PATH]...
[--seccomp HEX] [--no-audit-hook]` (HEX: the BPF program `policy.py` compiled, installed in every child and judge).
Per program the pool writes three length-prefixed frames (`_wire.frame`) on the zygote's stdin at once: control
data {"timeout", "memory_mb", "max_procs", "max_file_mb", "type_strict"}, which the zygote reads; the program
{"program"}, which the jailed child (`_child.py`), forked now, reads itself; and the trusted part {"tests", "prelude",
"entry", "candidates"}, which the judge (`_judge.py`) reads itself once the child has taken its frame (each reads
exactly its own bytes). The judge runs the tests, sends its verdict's detail to the pool on a channel of its own
(`--details-fd`: {"run", "detail"}) and the outcome into a pipe only it holds; the zygote answers one line {"outcome",
"seconds", "detail" or "judge_detail": true, and "closing": true when it exits after this answer}.

So the zygote never holds a program, a test or a verdict's detail: what each child inherits from it by fork holds
nothing of another run (a later program scanning its own memory finds neither a sibling's solution nor the asserts
an earlier run failed).

Isolation of the child, per run: its own pid namespace (it is process 1 there, behind a reaper; when it ends or
the reaper is killed at the deadline, everything it started ends too, and it cannot see or signal any other
process) and its own IPC namespace (SysV and POSIX IPC objects die with the run), a memory and pids cgroup
(`_cgroup.py`: one limit over all its processes and tmpfs pages, where the machine allows), its own root (`_fs.py`:
system directories and the interpreter read-only, a fresh /tmp and working directory per run, no home, no run
folders, no datasets), resource limits (address space, CPU time, file size, open files, no core dumps,
processes), an unprivileged uid of this zygote's own when it runs as root (else no capabilities left in the
zygote's user namespace), no new privileges, a seccomp filter (`policy.py`: keyrings, IPC, namespaces and mounts,
ptrace, bpf, io_uring, process creation and exec end the program, scored `blocked`), an empty environment, the
zygote's network namespace with no interfaces up, and an audit hook in front of it all as telemetry. The judge
runs in the same jail root under a uid of its own (as root), with its own limits and the same seccomp filter.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # siblings: _wire, _child, _judge, _fs, _processes

import ctypes  # noqa: E402
import json  # noqa: E402
import select  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import _cgroup  # noqa: E402
import _child  # noqa: E402
import _fs  # noqa: E402
import _judge  # noqa: E402
import _privileges  # noqa: E402
import _wire  # noqa: E402
from _processes import CLONE_NEWPID, can_unshare, child_status, ended_by, fork, kill_group, reaper, stop_child  # noqa: E402

del sys.path[0]

CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWIPC = 0x10000000, 0x40000000, 0x08000000
PR_SET_DUMPABLE = 4
UID_BASE = 1_500_000_000  # + the zygote's pid: a uid no account and no other zygote has
JUDGE_UID_BASE = UID_BASE + (1 << 22)  # + the zygote's pid (pids stay below 2**22): the judges' uid
LOAD_SECONDS = 60  # for the child to read its program from the pool
PRELOAD = ("typing", "math", "collections", "itertools", "functools", "re", "string", "heapq", "bisect", "hashlib", "fractions",
           "statistics", "operator", "decimal", "random", "copy", "dataclasses", "json", "threading", "datetime", "base64")
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


class Zygote:
    """The state one zygote keeps between programs: libc, jail layout, uids, namespaces, cgroups, seccomp filter."""

    def __init__(self, libc, layout: "_fs.Layout", uid: int | None, judge_uid: int | None, namespaces: int,
                 cgroups: "_cgroup.RunCgroups", bpf: bytes, audit_hook: bool):
        self.libc, self.layout, self.uid, self.judge_uid = libc, layout, uid, judge_uid
        self.namespaces, self.cgroups, self.bpf = namespaces, cgroups, bpf
        self.details = int(option("--details-fd", "-1"))
        # compiled once: the library directories as the children will see them (the mirror mode's sys.path)
        self.hook = _child.hook_template(*_child.library_dirs(layout.sys_path or sys.path)) if audit_hook else None

    def run_one(self, req: dict) -> dict:
        """Fork the jailed child (it reads the program), then the judge (it reads the tests once the child has read its
        frame); wait for the verdict or the deadline. Raises StreamBroken when a frame meant for the child or the judge
        may be left unread on stdin (the zygote must then exit rather than read it)."""
        start = time.monotonic()
        timeout = float(req.get("timeout", 5))
        workdir, judgedir, made = self.layout.prepare_run(self.uid, self.judge_uid)
        try:
            groups = self.cgroups.enter(int(req.get("memory_mb", 1024)) << 20, int(req.get("max_procs", 16)))
        except OSError:
            groups = []  # a cgroup that cannot be made this once: the per-process limits still hold
        try:
            return self._run(req, start, timeout, workdir, judgedir, groups)
        finally:
            self.layout.release(made)

    def _run(self, req, start, timeout, workdir, judgedir, groups) -> dict:
        ooms = self.cgroups.oom_kills(groups)
        to_judge_r, to_judge_w = os.pipe()
        to_child_r, to_child_w = os.pipe()
        loaded_r, loaded_w = os.pipe()  # the child has read its frame: the judge may read the next
        read_r, read_w = os.pipe()  # the judge has read its frame: the zygote may read the next request
        verdict_r, verdict_w = os.pipe()
        pid_ns = bool(self.namespaces & CLONE_NEWPID)

        def child_main():
            for fd in (to_judge_r, to_child_w, loaded_r, read_r, read_w, verdict_r, verdict_w):
                os.close(fd)
            try:
                msg = _wire.read_frame(0)  # the program, read here: the zygote never holds it
            except ValueError:
                msg = None
            if not isinstance(msg, dict):
                os._exit(0)
            os.write(loaded_w, b"1")
            os.close(loaded_w)
            _child.run_child(dict(req, program=str(msg.get("program", ""))), self.layout, workdir, self.uid, to_child_r, to_judge_w,
                             self.bpf, self.hook)

        def judge_main():
            for fd in (to_judge_w, to_child_r, verdict_r, read_r, loaded_w):
                os.close(fd)
            trusted = None
            if wait_byte(loaded_r, time.monotonic() + LOAD_SECONDS):
                try:
                    trusted = _wire.read_frame(0)  # the tests, read here: the zygote never holds them
                except ValueError:
                    pass
            if not isinstance(trusted, dict):
                os._exit(0)  # no tests, no verdict: the zygote stops (what is left on stdin is unknown)
            os.write(read_w, b"1")
            out = self.details  # the pool's channel for details: the verdict's detail never passes through the zygote
            _judge.isolate(req, self.layout, judgedir, self.judge_uid, (to_judge_r, to_child_w, verdict_w, out), self.bpf)
            _judge.run_judge({**req, **trusted}, to_judge_r, to_child_w, verdict_w, out)

        child = fork(lambda: reaper(self.libc, self.namespaces, child_main))
        judge = fork(judge_main)
        for fd in (to_judge_r, to_judge_w, to_child_r, to_child_w, verdict_w, read_w, loaded_r, loaded_w):
            os.close(fd)
        verdict, timed_out = wait_verdict(verdict_r, start + timeout)
        os.close(verdict_r)
        ended = None
        if verdict is not None and verdict.get("ended"):
            ended = child_status(child, min(start + timeout, time.monotonic() + 0.5))  # how the child ended by itself
        kill_group(judge)
        if ended is None:
            status = stop_child(child, pid_ns)
            judged_blocked = verdict is not None and verdict.get("outcome") == "blocked"  # its detail names the operation
            if status is not None and ended_by(status)[0] == "blocked" and not judged_blocked:
                ended = ended_by(status)  # a denied or refused operation at any time (a thread, after the tests) counts
        os.waitpid(judge, 0)
        tests_read = wait_byte(read_r, time.monotonic())
        os.close(read_r)
        seconds = round(time.monotonic() - start, 4)
        if ended is not None:
            result = {"outcome": ended[0], "detail": ended[1]}
        elif verdict is not None and verdict.get("outcome") in _wire.OUTCOMES:
            result = {"outcome": verdict["outcome"], "judge_detail": True}
        elif timed_out:
            result = {"outcome": "timeout", "detail": f"wall time limit {timeout:g}s"}
        else:
            result = {"outcome": "crashed", "detail": "the sandbox's judge ended without a verdict"}
        if result["outcome"] not in ("blocked", "memory") and self.cgroups.oom_kills(groups) > ooms:
            # any of its processes killed for the run's memory (cgroup v1 kills one process, v2 all: the same verdict)
            result = {"outcome": "memory", "detail": "memory limit exceeded by the run's processes together (cgroup)"}
        result["seconds"] = seconds
        if not tests_read:
            raise StreamBroken("the judge did not read the tests", dict(result, closing=True))
        return result


class StreamBroken(Exception):
    """A message for the child or the judge may still be on stdin: the zygote answers (if it can) and exits."""

    def __init__(self, why: str, result: dict | None = None):
        super().__init__(why)
        self.result = result


def wait_byte(fd: int, deadline: float) -> bool:
    """Whether one byte arrives on `fd` by `deadline` (a signal from a child or judge that it read its message)."""
    while True:
        left = max(0.0, deadline - time.monotonic())
        if select.select([fd], [], [], left)[0]:
            try:
                return os.read(fd, 1) == b"1"
            except OSError:
                return False
        if left <= 0:
            return False


def probe_seccomp(libc, bpf: bytes) -> str | None:
    """Install the filter in a throwaway child (as programs will get it); the kernel's refusal, or None."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            libc.prctl(_privileges.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            _privileges.install_seccomp(libc, bpf)
            os.write(w, b"ok")
        except BaseException as e:
            os.write(w, str(e).encode()[:200])
        os._exit(0)
    os.close(w)
    out = os.read(r, 256)
    os.close(r)
    os.waitpid(pid, 0)
    return None if out == b"ok" else out.decode(errors="replace") or "the probe died"


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
    root = os.geteuid() == 0
    uid = UID_BASE + os.getpid() if root else None
    judge_uid = JUDGE_UID_BASE + os.getpid() if root else None
    bpf = bytes.fromhex(option("--seccomp", ""))
    base = tempfile.mkdtemp(prefix="selfimprove-sandbox-")
    os.chmod(base, 0o711)
    try:
        layout = _fs.setup(libc, option("--filesystem", "auto"), uid, option("--hide", many=True), base)
        seccomp_error = probe_seccomp(libc, bpf) if bpf else None
        if seccomp_error:
            raise _fs.SandboxSetupError(f"this kernel refuses the seccomp filter ({seccomp_error}); it needs seccomp filters "
                                        "(Linux 4.14+, CONFIG_SECCOMP_FILTER)")
    except _fs.SandboxSetupError as e:
        print(json.dumps({"ready": False, "error": str(e)}), flush=True)
        _fs.remove_tree(base)
        return
    namespaces = next((f for f in (CLONE_NEWPID | CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWIPC) if can_unshare(libc, f)), 0)
    cgroups = _cgroup.RunCgroups(str(os.getpid()))
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    zygote = Zygote(libc, layout, uid, judge_uid, namespaces, cgroups, bpf, "--no-audit-hook" not in sys.argv)
    print(json.dumps({"ready": True, "network": network, "uid": uid if uid is not None else os.geteuid(),
                      "judge_uid": judge_uid if judge_uid is not None else os.geteuid(),
                      "pid_namespace": bool(namespaces & CLONE_NEWPID), "ipc_namespace": bool(namespaces & CLONE_NEWIPC),
                      "cgroup": cgroups.info, "seccomp": bool(bpf), "audit_hook": zygote.hook is not None, "filesystem": layout.info}),
          flush=True)
    out = sys.stdout

    def reply(msg: dict) -> None:
        out.write(json.dumps(msg) + "\n")
        out.flush()

    try:
        while True:
            try:
                req = _wire.read_frame(0, limit=1 << 16)  # control data only: the child and the judge read their own frames
            except ValueError as e:
                reply({"outcome": "crashed", "detail": f"sandbox error: {e}", "seconds": 0.0, "closing": True})
                break  # what follows on stdin cannot be told apart from what belongs to a child
            if req is None:
                break
            try:
                reply(zygote.run_one(req))
            except StreamBroken as e:
                if e.result is not None:
                    reply(e.result)
                break
            except Exception as e:  # a broken request must not leave frames for a child unread: stop
                reply({"outcome": "crashed", "detail": f"sandbox error: {type(e).__name__}: {e}", "seconds": 0.0, "closing": True})
                break
    finally:
        layout.close()
        cgroups.close()
        _fs.remove_tree(base)


if __name__ == "__main__":
    main()
