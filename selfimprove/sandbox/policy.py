"""The system calls a sandboxed program (and the judge) may not make, compiled to a seccomp BPF program by libseccomp.

The pool builds the filter here, in the trusted process, with libseccomp (through `pyseccomp`, a ctypes binding of
the system's `libseccomp.so.2`), and hands the raw BPF program to the standard-library-only zygote, which installs
it in each jailed child after `no_new_privs` (`_kernel.install_seccomp`). The default is to allow; what is denied
is kernel state that outlives a run or reaches outside it (keyrings, SysV and POSIX IPC, probes of the page cache),
changes to the process's own confinement (namespaces, mounts, chroot), other processes' memory (ptrace,
process_vm_*), kernel attack surface (bpf, perf_event_open, userfaultfd, io_uring), sockets other than Unix-domain
ones (no network, even without a network namespace), and creating processes or running programs (a program is
Python code: it never needs fork or exec; threads stay allowed). A denied call ends the whole program at once
(SECCOMP_RET_KILL_PROCESS, it cannot be caught), and the sandbox scores it `blocked`. `clone3` answers ENOSYS
instead, so that the C library creates threads with `clone`, whose flags the filter can read.
"""

from __future__ import annotations

import errno
import functools
import os
import tempfile

KEYRING = ("add_key", "request_key", "keyctl")
SYSV_IPC = ("shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl", "msgget", "msgsnd", "msgrcv", "msgctl",
            "ipc")
POSIX_MQUEUE = ("mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify", "mq_getsetattr")
CONFINEMENT = ("unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
               "open_tree", "mount_setattr")
OTHER_PROCESSES = ("ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp", "pidfd_getfd")
KERNEL_SURFACE = ("bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "kexec_load",
                  "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct", "quotactl",
                  "syslog", "lookup_dcookie", "open_by_handle_at", "name_to_handle_at", "fanotify_init", "settimeofday", "clock_settime",
                  "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "iopl", "ioperm", "vhangup")
PROCESS_CREATION = ("fork", "vfork", "execve", "execveat")  # and clone without CLONE_THREAD (a rule on its flags)
# which file pages are in the page cache is state every run shares: probes of it end the program (and preadv2/pwritev2
# with RWF_NOWAIT, a rule on their flags); the hints that evict or load pages answer EPERM
PAGE_CACHE_PROBES = ("mincore", "cachestat")
PAGE_CACHE_HINTS = ("fadvise64", "fadvise64_64", "readahead")
DENIED = {"keyring": KEYRING, "sysv_ipc": SYSV_IPC, "posix_mqueue": POSIX_MQUEUE, "confinement": CONFINEMENT,
          "other_processes": OTHER_PROCESSES, "kernel_surface": KERNEL_SURFACE, "process_creation": PROCESS_CREATION,
          "page_cache": PAGE_CACHE_PROBES}
CLONE_THREAD = 0x00010000
RWF_NOWAIT = 0x00000008
AF_UNIX = 1
INSTALL_HINT = ("install the system's libseccomp (Debian/Ubuntu: apt install libseccomp2; Fedora/RHEL: dnf install libseccomp; "
                "Alpine: apk add libseccomp) and the `pyseccomp` package (a dependency of selfimprove)")


class SeccompUnavailable(RuntimeError):
    """libseccomp (or its Python binding) is missing: the message says what to install."""


@functools.lru_cache(maxsize=1)
def compiled_filter() -> tuple[bytes, dict]:
    """(BPF program, summary) for this machine's architecture; built once per process.

    The summary names the architecture, the action, and per group the calls denied here (names this architecture
    does not have, such as `fork` on aarch64 or `ipc` on x86_64, are listed under `absent`)."""
    try:
        import pyseccomp as sc
    except (ImportError, RuntimeError, OSError) as e:  # pyseccomp raises RuntimeError when libseccomp.so is not found
        raise SeccompUnavailable(f"no seccomp filter: {e}; {INSTALL_HINT}") from None
    f = sc.SyscallFilter(defaction=sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)  # 32-bit or x32 system calls on a 64-bit kernel: never
    try:
        f.set_attr(sc.Attr.CTL_OPTIMIZE, 2)  # a binary search over the call numbers (libseccomp 2.5+), not a linear list
    except OSError:
        pass
    denied: dict[str, list[str]] = {}
    absent: list[str] = []
    for group, names in DENIED.items():
        for name in names:
            nr = sc.resolve_syscall(sc.Arch.NATIVE, name)
            if nr < 0:
                absent.append(name)
                continue
            f.add_rule(sc.KILL_PROCESS, nr)
            denied.setdefault(group, []).append(name)
    # processes: clone() without CLONE_THREAD makes a process (threads set it); clone3's flags live in memory the
    # filter cannot read, so it answers ENOSYS and the C library falls back to clone()
    flags_arg = 1 if os.uname().machine.startswith("s390") else 0  # s390's clone takes the stack first
    f.add_rule(sc.KILL_PROCESS, "clone", sc.Arg(flags_arg, sc.MASKED_EQ, CLONE_THREAD, 0))
    denied["process_creation"].append("clone without CLONE_THREAD")
    if sc.resolve_syscall(sc.Arch.NATIVE, "clone3") >= 0:
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for name in ("preadv2", "pwritev2"):  # (fd, iov, iovcnt, pos_l, pos_h, flags)
        if sc.resolve_syscall(sc.Arch.NATIVE, name) >= 0:
            f.add_rule(sc.KILL_PROCESS, name, sc.Arg(5, sc.MASKED_EQ, RWF_NOWAIT, RWF_NOWAIT))
            denied["page_cache"].append(f"{name} with RWF_NOWAIT")
    for name in PAGE_CACHE_HINTS:
        if sc.resolve_syscall(sc.Arch.NATIVE, name) >= 0:
            f.add_rule(sc.ERRNO(errno.EPERM), name)
            denied.setdefault("page_cache_hints (EPERM)", []).append(name)
    # no network even where the sandbox got no network namespace: sockets other than Unix-domain ones end the program
    f.add_rule(sc.KILL_PROCESS, "socket", sc.Arg(0, sc.NE, AF_UNIX))
    denied.setdefault("network", []).append("socket other than AF_UNIX")
    with tempfile.TemporaryFile() as tmp:
        f.export_bpf(tmp)
        tmp.seek(0)
        bpf = tmp.read()
    if not bpf or len(bpf) % 8:
        raise SeccompUnavailable(f"libseccomp exported a malformed BPF program ({len(bpf)} bytes)")
    summary = {"action": "kill the program (scored blocked)", "architecture": os.uname().machine, "denied": denied,
               "absent": absent, "clone3": "ENOSYS (threads use clone)", "instructions": len(bpf) // 8}
    return bpf, summary
