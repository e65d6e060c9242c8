"""The program's processes: the reaper that gives it a pid namespace of its own, and ending and reaping them.

The zygote forks a reaper per run; the reaper unshares the namespaces and forks the jailed child as process 1 there,
so killing the reaper's child ends everything the program started. How the reaper ended mirrors how the child ended
(`ended_by` maps it onto an outcome).
"""

import os
import signal
import time

import _child

CLONE_NEWPID = 0x20000000
SIGNAL_OUTCOMES = {signal.SIGXCPU: ("timeout", "CPU time limit"), signal.SIGXFSZ: ("crashed", "file size limit exceeded"),
                   signal.SIGSEGV: ("crashed", "segmentation fault"), signal.SIGKILL: ("memory", "killed (out of memory?)"),
                   signal.SIGSYS: ("blocked", "blocked: a system call the sandbox denies (seccomp)")}


def fork(target) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            target()
        finally:
            os._exit(70)
    return pid


def can_unshare(libc, flags: int) -> bool:
    """Whether a child can get these namespaces of its own here (tried in a throwaway process)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.unshare(flags) == 0 else 1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def reaper(libc, namespaces: int, start_child) -> None:
    """Process between the zygote and the child: gives the child a pid namespace (and an IPC namespace) of its own,
    and mirrors how it ended."""
    if not namespaces & CLONE_NEWPID:
        if namespaces and libc.unshare(namespaces) != 0:
            os._exit(71)
        start_child()
    if libc.unshare(namespaces) != 0:
        os._exit(71)
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
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those two keep their default action and cannot be set
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 70)


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stop_child(pid: int, pid_ns: bool):
    """End the program's processes and reap them all before the next program starts. The reaper's wait status when
    it had already ended by itself (how the program ended), else None."""
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        return status
    if not pid_ns:
        kill_group(pid)
        os.waitpid(pid, 0)
        return None
    try:
        os.kill(pid, signal.SIGTERM)  # the reaper kills its child and waits for the namespace to empty
    except ProcessLookupError:
        pass
    until = time.monotonic() + 5
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:  # the reaper mirrors how the child ended: SIGKILL from its stop, or what ended it just before (SIGSYS)
            return status if os.WIFSIGNALED(status) and os.WTERMSIG(status) != signal.SIGKILL else None
        if time.monotonic() > until:
            kill_group(pid)
            os.waitpid(pid, 0)
            return None
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
    return ended_by(status)


def ended_by(status: int) -> tuple[str, str]:
    """(outcome, detail) of a reaper's wait status: how the program ended by itself."""
    if os.WIFSIGNALED(status):
        return SIGNAL_OUTCOMES.get(os.WTERMSIG(status), ("crashed", f"killed by signal {os.WTERMSIG(status)}"))
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
    if code == _child.BLOCKED_EXIT:
        return "blocked", "blocked: an operation the sandbox's audit hook refuses"
    return "crashed", f"exited with status {code} before the tests finished"
