"""What a sandboxed process gives up before untrusted code (or the tests) run: its session, descriptors and environment,
its uid or its capabilities, new privileges, and the system calls the seccomp filter denies (`policy.py` builds it;
here it is only installed).

Standard library only (the zygote imports it as a script sibling).
"""

import ctypes
import os

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# numerical libraries start a thread per CPU on import, which the process limits would refuse
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def detach(keep: tuple[int, ...], env: dict) -> None:
    """A session of its own, stdio on /dev/null, no descriptor but `keep`, and `env` as the whole environment."""
    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    last = 3
    for fd in sorted(keep):
        os.closerange(last, fd)
        last = fd + 1
    os.closerange(last, 1 << 16)
    os.environ.clear()
    os.environ.update(env)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def drop_capabilities(libc) -> None:
    """No capabilities (a user namespace gives its creator all of them; chroot, mount or ptrace must not stay)."""
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)  # this process
    data = (ctypes.c_uint32 * 6)()
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def become(libc, uid) -> None:
    """Switch to `uid` (as root), else keep this uid and drop every capability; then no new privileges ever."""
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    else:
        drop_capabilities(libc)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")


def install_seccomp(libc, bpf: bytes) -> None:
    """Install the BPF program (after `become`: the kernel requires no_new_privs). Raises if the kernel refuses it."""
    if not bpf:
        return
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
