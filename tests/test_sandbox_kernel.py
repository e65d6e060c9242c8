"""The sandbox's kernel boundary: the seccomp filter, per-run IPC namespaces and cgroups, and no state surviving a run.

Most tests switch the audit hook off (`Sandbox(disable=["audit_hook"])`): they meet the kernel as a program that got
past the hook would. The no-state test also switches the seccomp filter off, to show what the namespaces and the
jail keep apart on their own; it runs as root and, where the machine allows, as an unprivileged user.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from selfimprove.sandbox import Program, Sandbox, SandboxLimits

pyseccomp = pytest.importorskip("pyseccomp")

ROOT = os.geteuid() == 0
SANDBOX_DIR = Path(__file__).resolve().parents[1] / "selfimprove" / "sandbox"
OK = "def f():\n    return 1\n"
TESTS = "assert f() == 1"


def nr(name: str) -> int:
    return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)


def syscall_program(name: str, *args: str) -> str:
    return (f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall({nr(name)}, {', '.join(args) or '0'})\n" + OK)


@pytest.fixture(scope="module")
def kernel_only():
    with Sandbox(workers=2, limits=SandboxLimits(timeout=5.0), disable=["audit_hook"]) as sb:
        yield sb


def test_isolation_report_names_every_layer():
    with Sandbox(workers=1) as sb:
        info = sb.isolation()
    assert info["pid_namespace"] and info["ipc_namespace"], info
    assert info["seccomp"]["applied"] and info["audit_hook"] is True
    denied = info["seccomp"]["denied"]
    for group in ("keyring", "sysv_ipc", "posix_mqueue", "confinement", "other_processes", "kernel_surface", "process_creation"):
        assert denied[group], group
    assert {"keyctl", "shmget", "mq_open", "unshare", "ptrace", "bpf", "io_uring_setup", "perf_event_open", "userfaultfd",
            "process_vm_readv", "execve"} <= {n for names in denied.values() for n in names}
    assert info["cgroup"]["applied"] or info["cgroup"]["reason"]  # where none applies, the report says why
    if ROOT:
        assert info["uid"] != 0 and info["judge_uid"] not in (0, info["uid"])


@pytest.mark.parametrize("name, args", [
    ("keyctl", ("0", "ctypes.c_long(-4)")), ("add_key", ("b'user'", "b'k'", "b'v'", "1", "ctypes.c_long(-4)")),
    ("shmget", ("0x5E1F11", "4096", "0o1666")), ("msgget", ("0x5E1F12", "0o1666")), ("semget", ("0x5E1F13", "1", "0o1666")),
    ("mq_open", ("b'si-probe'", "0o102", "0o666", "0")), ("unshare", ("0x10000000",)), ("setns", ("0", "0")),
    ("mount", ("b'none'", "b'/tmp'", "b'tmpfs'", "0", "0")), ("chroot", ("b'/tmp'",)), ("ptrace", ("0", "1")),
    ("process_vm_readv", ("1", "0", "0", "0", "0", "0")), ("bpf", ("0", "0", "0")), ("perf_event_open", ("0", "0", "-1", "-1", "0")),
    ("userfaultfd", ("0",)), ("io_uring_setup", ("1", "0")), ("execve", ("b'/bin/true'", "0", "0")),
])
def test_denied_system_calls_end_the_program_as_blocked(kernel_only, name, args):
    res = kernel_only.run(Program(syscall_program(name, *args), TESTS))
    assert res.outcome == "blocked" and "seccomp" in res.detail, (name, res)


def test_processes_are_denied_and_threads_are_not(kernel_only):
    for body in ("import os\nos.fork()\n", "import subprocess\nsubprocess.run(['true'])\n", "import os\nos.system('true')\n",
                 "import multiprocessing\nmultiprocessing.Process(target=print).start()\n"):
        res = kernel_only.run(Program(body + OK, TESTS))
        assert res.outcome == "blocked", (body, res)
    threads = ("import threading\nout = []\nts = [threading.Thread(target=out.append, args=(i,)) for i in range(8)]\n"
               "[t.start() for t in ts]\n[t.join() for t in ts]\ndef f():\n    return sorted(out)\n")
    assert kernel_only.run(Program(threads, "assert f() == list(range(8))")).outcome == "passed"


def test_a_denied_call_after_the_tests_still_counts(kernel_only):
    # a thread waits until the tests have run, then calls keyctl: the verdict was `passed`, the run is `blocked`
    body = ("import ctypes, threading, time\nlibc = ctypes.CDLL(None)\n"
            f"threading.Thread(target=lambda: (time.sleep(0.3), libc.syscall({nr('keyctl')}, 0))).start()\n" + OK)
    res = kernel_only.run(Program(body, TESTS + "\nimport time\ntime.sleep(0.6)"))
    assert res.outcome == "blocked", res


def test_the_processes_of_a_run_share_one_memory_limit():
    with Sandbox(workers=1, limits=SandboxLimits(timeout=8.0, memory_mb=1024), disable=["audit_hook", "seccomp"]) as sb:
        if not sb.isolation()["cgroup"]["applied"]:
            pytest.skip(f"no cgroup here: {sb.isolation()['cgroup']['reason']}")
        # four processes of 600 MB each: every one under the per-process limit, together far over the run's
        body = ("import os, time\nfor _ in range(4):\n    if os.fork() == 0:\n        x = bytearray(600 << 20)\n"
                "        for i in range(0, len(x), 4096):\n            x[i] = 1\n        time.sleep(2)\n        os._exit(0)\n"
                "time.sleep(2.5)\n" + OK)
        res = sb.run(Program(body, TESTS))
    assert res.outcome == "memory" and "cgroup" in res.detail, res


def _host_ipc_keys() -> set[str]:
    if shutil.which("ipcs") is None:
        pytest.skip("ipcs not installed")
    out = subprocess.run(["ipcs"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("0x")}


def test_ipc_objects_die_with_the_run():
    before = _host_ipc_keys()
    with Sandbox(workers=1, disable=["audit_hook", "seccomp"]) as sb:
        body = ("import ctypes\nlibc = ctypes.CDLL(None)\nassert libc.shmget(0x5E1F21, 64 << 20, 0o1666) >= 0\n"
                "assert libc.msgget(0x5E1F22, 0o1666) >= 0\nassert libc.semget(0x5E1F23, 1, 0o1666) >= 0\n" + OK)
        assert sb.run(Program(body, TESTS)).outcome == "passed"
    assert _host_ipc_keys() - before == set()


# ---- no state survives a run ------------------------------------------------------------------------------------

MARK = "si-" + secrets.token_hex(6)
PRELUDE = (f"import ctypes, os, socket\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.shmat.restype = ctypes.c_void_p\n"
           f"libc.shmat.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)\nlibc.syscall.restype = ctypes.c_long\n"
           f"KEY = 0x5E1F{secrets.randbelow(1 << 16):04X}\nM = {MARK!r}\nv = None\n")
JAIL_PATHS = "['/si-probe', '/selfimprove-work/si-probe', '/selfimprove-work/run/../si-probe', '/etc/si-probe', '/usr/si-probe', '/dev/si-probe']"
# channel: (code run 1 uses to leave M behind, code run 2 uses to find it in `v`)
CHANNELS = {
    "sysv_shm": ("a = libc.shmat(libc.shmget(KEY, 4096, 0o1666), None, 0)\nctypes.memmove(a, M.encode(), len(M))",
                 "i = libc.shmget(KEY, 0, 0)\nif i >= 0:\n    v = ctypes.string_at(libc.shmat(i, None, 0), len(M)).decode()"),
    "sysv_msg": ("q = libc.msgget(KEY, 0o1666)\nassert libc.msgsnd(q, (1).to_bytes(8, 'little') + M.encode(), len(M), 0) == 0",
                 "q = libc.msgget(KEY, 0)\nbuf = ctypes.create_string_buffer(80)\n"
                 "n = libc.msgrcv(q, buf, 64, 0, 0o4000) if q >= 0 else -1\nif n > 0:\n    v = buf.raw[8:8 + n].decode()"),
    "sysv_sem": ("s = libc.semget(KEY, 1, 0o1666)\nassert libc.semctl(s, 0, 16, 42) == 0",
                 "s = libc.semget(KEY, 1, 0)\nif s >= 0 and libc.semctl(s, 0, 12) == 42:\n    v = M"),
    "posix_mqueue": ("assert libc.mq_open(b'/' + M.encode(), os.O_CREAT | os.O_RDWR, 0o666, None) >= 0",
                     "if libc.mq_open(b'/' + M.encode(), os.O_RDONLY) >= 0:\n    v = M"),
    "keyring": (f"assert libc.syscall({nr('add_key')}, b'user', M.encode(), M.encode(), len(M), ctypes.c_long(-4)) > 0",
                f"k = libc.syscall({nr('keyctl')}, 10, ctypes.c_long(-4), b'user', M.encode(), 0)\nif k > 0:\n    v = M"),
    "tmp_file": ("open('/tmp/si-probe', 'w').write(M)", "if os.path.exists('/tmp/si-probe'):\n    v = open('/tmp/si-probe').read()"),
    "working_dir": ("open('si-probe', 'w').write(M)\nos.makedirs('d/e')\nopen('d/e/f', 'w').write(M)",
                    "if os.path.exists('si-probe'):\n    v = open('si-probe').read()"),
    "dev_shm": ("os.makedirs('/dev/shm', exist_ok=True)\nopen('/dev/shm/si-probe', 'w').write(M)",
                "if os.path.exists('/dev/shm/si-probe'):\n    v = open('/dev/shm/si-probe').read()"),
    "jail_files": (f"for p in {JAIL_PATHS}:\n    try:\n        open(p, 'w').write(M)\n    except OSError:\n        pass",
                   f"for p in {JAIL_PATHS}:\n    if os.path.exists(p):\n        v = open(p).read()"),
    "environment": ("os.environ['SI_PROBE'] = M\nos.putenv('SI_PROBE', M)", "v = os.environ.get('SI_PROBE') or os.getenv('SI_PROBE')"),
    "interpreter": ("import sys, builtins\nsys.modules['si_probe'] = M\nbuiltins.si_probe = M",
                    "import sys, builtins\nv = sys.modules.get('si_probe') or getattr(builtins, 'si_probe', None)"),
    "lingering_process": ("if os.fork() == 0:\n    s = socket.socket(socket.AF_UNIX)\n    s.bind(b'\\0' + M.encode())\n    s.listen(1)\n"
                          "    while True:\n        c, _ = s.accept()\n        c.sendall(M.encode())\n        c.close()",
                          "try:\n    s = socket.socket(socket.AF_UNIX)\n    s.settimeout(1)\n    s.connect(b'\\0' + M.encode())\n"
                          "    v = s.recv(64).decode()\nexcept OSError:\n    pass"),
}
WRITABLE = {"sysv_shm", "sysv_msg", "sysv_sem", "posix_mqueue", "keyring", "tmp_file", "working_dir", "environment", "interpreter",
            "lingering_process"}
SECCOMP_ONLY = {"keyring"}  # the uid's keyring is the same kernel object in every run of a zygote: only the filter denies it


def _readable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in [path, *path.parents]) and bool(os.stat(path).st_mode & stat.S_IROTH)


@pytest.fixture(scope="module")
def unprivileged_python(tmp_path_factory):
    """A wrapper running the system's Python as nobody (65534), so the zygote starts unprivileged."""
    setpriv, python = shutil.which("setpriv"), "/usr/bin/python3"
    if not ROOT or setpriv is None or not os.path.exists(python):
        pytest.skip("needs root, setpriv and /usr/bin/python3 to start a zygote as an unprivileged user")
    if not _readable_by_others(SANDBOX_DIR):
        pytest.skip(f"{SANDBOX_DIR} is not readable by other users")
    wrapper = tmp_path_factory.mktemp("nobody") / "python"
    wrapper.write_text(f"#!/bin/sh\nexec {setpriv} --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all "
                       f"--bounding-set=-all {python} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.mark.parametrize("user", ["root", "unprivileged"])
@pytest.mark.parametrize("layers", ["all", "namespaces only"])
def test_no_state_survives_a_run(user, layers, request):
    """Run 1 leaves a marker in one channel, run 2 (same zygote, same uid) looks for it: never found."""
    if user == "root" and not ROOT:
        pytest.skip("not running as root")
    python = request.getfixturevalue("unprivileged_python") if user == "unprivileged" else None
    disable = ["audit_hook", "seccomp"] if layers == "namespaces only" else []
    with Sandbox(workers=1, python=python, disable=disable) as sb:
        info = sb.isolation()
        if info["filesystem"]["mode"] != "jail":
            pytest.skip("runs are kept apart on the filesystem only in the jail")
        assert info["ipc_namespace"], info
        for channel, (write, read) in CHANNELS.items():
            if layers == "namespaces only" and channel in SECCOMP_ONLY:
                continue
            wrote = sb.run(Program(PRELUDE + write + "\n" + OK, TESTS))
            found = sb.run(Program(PRELUDE + read + "\ndef f():\n    return v\n", f"assert f() == {MARK!r}"))
            if layers == "namespaces only" and channel in WRITABLE:
                assert wrote.outcome == "passed", (channel, wrote)  # the marker was left: the channel is real
            assert found.outcome != "passed", (user, layers, channel, found)
            assert found.outcome in ("failed", "blocked"), (channel, found)


def _memory_of(pid: int) -> bytes:
    """Every readable private mapping of a process (root reads another process's memory even when it is undumpable)."""
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if "r" not in fields[1] or (len(fields) > 5 and fields[5].startswith("[v")):
                continue
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
            except OSError:
                pass
    return b"".join(chunks)


@pytest.mark.skipif(not ROOT, reason="reading another process's memory needs root")
def test_the_zygote_never_holds_a_program_a_test_or_a_verdict():
    """What every later child inherits by fork: the zygote's memory. After runs whose program, tests and failing
    assert carry secrets, none of them is anywhere in it (freed memory included)."""
    token = secrets.token_hex(8)
    program = f"SOLUTION_TEXT = 'program-{token}'\ndef f(x):\n    return x\n"
    tests = f"assert f('tests-{token}') == 'tests-{token}'\nassert f(1) == 'expected-{token}'\n"
    with Sandbox(workers=1) as sb:
        for _ in range(3):
            res = sb.run(Program(program, tests))
            assert res.outcome == "failed" and f"expected-{token}" in res.detail, res  # the detail reaches the pool
        memory = _memory_of(sb._zygotes[0].proc.pid)
    assert b"selfimprove-sandbox-" in memory  # the scan reads the zygote's heap
    for secret in (f"program-{token}", f"tests-{token}", f"expected-{token}"):
        assert secret.encode() not in memory, secret


def test_no_network_even_without_a_network_namespace(kernel_only):
    for family in ("AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"):
        res = kernel_only.run(Program(f"import socket\nsocket.socket(socket.{family}, socket.SOCK_DGRAM)\n" + OK, TESTS))
        assert res.outcome == "blocked" and "seccomp" in res.detail, (family, res)
    unix = "import socket\na, b = socket.socketpair()\na.sendall(b'x')\ndef f():\n    return len(b.recv(1))\n"  # asyncio's self-pipe
    assert kernel_only.run(Program(unix, TESTS)).outcome == "passed"


def test_limits_can_change_between_runs():
    big = "x = bytearray(700 << 20)\nfor i in range(0, len(x), 4096):\n    x[i] = 1\n" + OK
    with Sandbox(workers=1) as sb:
        assert sb.run(Program(OK, TESTS), SandboxLimits(memory_mb=128)).outcome == "passed"
        assert sb.run(Program(big, TESTS), SandboxLimits(memory_mb=1500, timeout=10)).outcome == "passed"
        assert sb.run(Program(big, TESTS), SandboxLimits(memory_mb=300, timeout=10)).outcome == "memory"


def _processes_of(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == uid:
                pids.append(int(entry))
        except OSError:
            pass
    return pids


@pytest.mark.skipif(not ROOT, reason="the programs' own uid is what finds their processes from outside")
def test_a_program_killed_from_outside_is_reported_by_its_signal():
    """SIGKILL from outside (the OOM killer, a hard limit): the reaper mirrors it (it used to exit with status 70)."""
    import threading
    import time

    with Sandbox(workers=1, disable=["audit_hook"]) as sb:
        uid = sb.isolation()["uid"]

        def kill_later():
            time.sleep(0.5)
            for pid in _processes_of(uid):
                os.kill(pid, 9)

        killer = threading.Thread(target=kill_later)
        killer.start()
        res = sb.run(Program("import time\ndef f():\n    time.sleep(3)\n    return 1\n", TESTS))
        killer.join()
    assert res.outcome == "memory" and res.detail == "killed (out of memory?)", res


def test_an_import_path_shows_only_its_packages_in_the_jail(tmp_path):
    """An editable install puts the project folder on sys.path (a .pth file): the jail shows its packages, not its
    run folders (whose tables hold other samples' completions and failing asserts), its README or its tests."""
    import subprocess
    import sys
    import sysconfig

    project = tmp_path / "project"
    (project / "mypkg").mkdir(parents=True)
    (project / "mypkg" / "__init__.py").write_text("VALUE = 7\n")
    (project / "runs" / "iter_1").mkdir(parents=True)
    (project / "runs" / "iter_1" / "table.txt").write_text("a sibling's passing completion\n")
    (project / "README.md").write_text("x")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    (site / "_editable_project.pth").write_text(str(project) + "\n")
    body = (f"import os, mypkg\nseen = [p for p in ({str(project / 'runs')!r}, {str(project / 'README.md')!r}) if os.path.exists(p)]\n"
            "def f():\n    return [mypkg.VALUE, seen]\n")
    with Sandbox(workers=1, python=str(venv / "bin" / "python")) as sb:
        if sb.isolation()["filesystem"]["mode"] != "jail":
            pytest.skip("only the jail chooses what is visible")
        res = sb.run(Program(body, "assert f() == [7, []]"))
    assert res.outcome == "passed", res


@pytest.mark.skipif(not ROOT, reason="mirror mode is for a root zygote")
def test_mirror_mode_refuses_to_show_a_file_it_was_asked_to_hide():
    import tempfile

    from selfimprove.sandbox import SandboxError

    folder = Path(tempfile.mkdtemp(dir="/tmp"))  # a path other users can reach (pytest's tmp_path is private)
    folder.chmod(0o755)
    solutions = folder / "solutions.jsonl"
    solutions.write_text("canonical solutions\n")
    solutions.chmod(0o644)
    with pytest.raises(SandboxError, match="mirror cannot hide .*solutions.jsonl"):
        Sandbox(workers=1, filesystem="mirror", hide=[solutions]).isolation()
    solutions.chmod(0o600)  # unreadable to the programs' uid: nothing to refuse
    with Sandbox(workers=1, filesystem="mirror", hide=[solutions]) as sb:
        res = sb.run(Program(f"def f():\n    return open({str(solutions)!r}).read()\n", TESTS))
    shutil.rmtree(folder)
    assert res.outcome == "failed" and "PermissionError" in res.detail, res


def test_an_interpreter_under_tmp_still_gives_each_run_its_own_tmp():
    """A virtualenv made in /tmp (as CI makes its fresh one): its packages are mounted again on each run's /tmp, a file
    to hide there stays covered, and what a run writes to /tmp is gone for the next."""
    import subprocess
    import sys
    import sysconfig
    import tempfile

    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        base.chmod(0o755)
        venv = base / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
        (site / "mymod.py").write_text("VALUE = 7\n")
        (site / "answers.txt").write_text("the expected outputs\n")
        write = "import mymod, os\nopen('/tmp/left', 'w').write('x')\nseen = open(mymod.__file__.replace('mymod.py', 'answers.txt')).read()\n"
        with Sandbox(workers=1, python=str(venv / "bin" / "python"), hide=[site / "answers.txt"]) as sb:
            if sb.isolation()["filesystem"]["mode"] != "jail":
                pytest.skip("only the jail gives each run its own /tmp")
            first = sb.run(Program(write + "def f():\n    return [mymod.VALUE, seen]\n", "assert f() == [7, '']"))
            second = sb.run(Program("import os\ndef f():\n    return os.path.exists('/tmp/left')\n", "assert f() is False"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert first.outcome == "passed", first
    assert second.outcome == "passed", second
