"""A pool of sandbox zygotes (one per CPU): runs untrusted programs with their tests, in parallel.

Each zygote is a separate `python -I -B` process with an empty environment; per program it forks a
jailed child that runs the program and a judge that runs the tests and decides (see `_zygote.py`).
The child reads only the program's frame and the judge only the tests' frame, so neither the program's
process nor the zygote (whose memory every later child inherits) ever holds the tests; the judge sends
its verdict's detail here on a channel of its own. A zygote that dies, or says it stops, is replaced
and the program it was running is recorded as `crashed`, so no program can stop the run.
"""

from __future__ import annotations

import builtins
import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

from . import _wire, policy
from ._wire import FILESYSTEMS, OUTCOMES

ZYGOTE = Path(__file__).with_name("_zygote.py")
LAYERS = ("seccomp", "audit_hook")  # what `Sandbox(disable=...)` may switch off, to test the other layers alone


class SandboxError(RuntimeError):
    """The sandbox cannot run programs correctly on this machine; the message says why."""


@dataclass(frozen=True)
class SandboxLimits:
    """Per-program limits: wall seconds (CPU seconds = wall + 1), address space, processes, file size."""

    timeout: float = 5.0
    memory_mb: int = 1024
    max_procs: int = 16
    max_file_mb: int = 16


@dataclass(frozen=True)
class Program:
    """Untrusted `program`; trusted `tests` (asserts, may define check()) and the `entry` line that calls them.

    The tests run in the judge's process and see the program's functions as remote calls. `prelude` is trusted
    code run before the tests (e.g. HumanEval's prompt, whose helpers the tests call): its definitions win over
    the program's, except `candidates`, the names the tests must take from the program (the entry point).
    `type_strict`: results must be built-in values; an object of a type the program defined is `forged_type`.
    """

    program: str
    tests: str
    entry: str = ""
    prelude: str = ""
    candidates: tuple[str, ...] = ()
    type_strict: bool = True

    def __post_init__(self):
        shadowing = [c for c in self.candidates if hasattr(builtins, c)]
        if shadowing:  # the tests would call the trusted built-in and credit a program that never defined it
            raise ValueError(f"entry point {shadowing[0]!r} is the name of a Python built-in; the tests must call the program's own function")


@dataclass
class Outcome:
    outcome: str
    detail: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


class _Zygote:
    def __init__(self, python: str, filesystem: str, hide: tuple[str, ...], bpf: bytes, audit_hook: bool):
        extra = (["--seccomp", bpf.hex()] if bpf else []) + ([] if audit_hook else ["--no-audit-hook"])
        # the judges' channel for their verdicts' details: not the zygote's stdout, so no judge can write an outcome
        self._details, details_w = os.pipe()
        os.set_blocking(self._details, False)
        self._pending = b""
        self.runs = 0
        try:
            self.proc = subprocess.Popen(
                [python, "-I", "-B", str(ZYGOTE), "--filesystem", filesystem, *(a for h in hide for a in ("--hide", str(h))), *extra,
                 "--details-fd", str(details_w)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                cwd="/",
                start_new_session=True,
                pass_fds=(details_w,),
            )
        finally:
            os.close(details_w)
        hello = self.proc.stdout.readline()
        try:
            self.info = json.loads(hello)
        except ValueError:
            self.info = {"ready": False, "error": f"no greeting ({hello!r})"}
        if not self.info.get("ready"):
            self.close()
            raise SandboxError(f"the sandbox cannot start ({python} {ZYGOTE}): {self.info.get('error')}")
        self.info.pop("ready")
        self.closing = False

    def run(self, control: dict, program: str, trusted: dict) -> dict:
        """Three frames at once: control data (the zygote reads it), the program (the jailed child reads it), the trusted
        part (the judge reads it, once the child has taken its frame). The zygote itself never holds the program, the
        tests or the verdict's detail, which the judge sends on a channel of its own, tagged with the run's number."""
        self.runs += 1
        try:
            self.proc.stdin.write(_wire.frame(dict(control, run=self.runs)) + _wire.frame({"program": program}) + _wire.frame(trusted))
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = b""
        if not line:
            raise EOFError("sandbox zygote died")
        msg = json.loads(line)
        self.closing = bool(msg.pop("closing", False))  # the zygote exits after this answer
        if msg.pop("judge_detail", False):
            msg["detail"] = self._detail(self.runs)
        return msg

    def _detail(self, run: int) -> str:
        """This run's detail from the judges' channel (an earlier run's, left by a judge stopped after writing it, is
        skipped)."""
        try:
            while chunk := os.read(self._details, 1 << 16):
                self._pending += chunk
        except BlockingIOError:
            pass
        found = ""
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("run") == run:
                found = str(msg.get("detail", ""))[:300]
        return found

    def close(self) -> None:
        """End of input lets the zygote delete its folder and exit; kill it if it does not. Then remove its cgroups
        (left behind when it was killed, or when cgroup v2 would not take it back into the cgroup it came from)."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        try:
            os.close(self._details)
        except OSError:
            pass
        for d in (self.info.get("cgroup") or {}).get("under", []):
            for path in (d + "/run", d):
                try:
                    os.rmdir(path)
                except OSError:
                    pass


class Sandbox:
    """Run programs in jailed processes; `run_many` keeps every CPU busy and reports progress."""

    def __init__(self, workers: int | None = None, limits: SandboxLimits = SandboxLimits(), *, python: str | None = None,
                 filesystem: str = "auto", hide: Iterable[str | os.PathLike] = (), disable: Iterable[str] = ()):
        """`filesystem`: what programs see (`_fs.py`: auto, jail, mirror, host); `hide`: files or folders covered by
        empty ones in the jail, e.g. the benchmark file whose canonical solutions a program could otherwise read.
        `disable`: layers to switch off (`seccomp`, `audit_hook`), only to test the others alone, as a program that
        got past those would meet them; never for scoring."""
        if filesystem not in FILESYSTEMS:
            raise ValueError(f"filesystem must be one of {FILESYSTEMS}")
        self.disable = frozenset(disable)
        if self.disable - set(LAYERS):
            raise ValueError(f"disable: unknown layers {sorted(self.disable - set(LAYERS))} (known: {list(LAYERS)})")
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.limits = limits
        self.python = python or sys.executable
        self.filesystem = filesystem
        self.hide = tuple(str(h) for h in hide)
        self._zygotes: list[_Zygote] = []
        self._lock = threading.Lock()
        self._bpf, self._seccomp = b"", {"applied": False, "reason": "disabled (Sandbox(disable=['seccomp']))"}
        if "seccomp" not in self.disable:
            try:
                self._bpf, summary = policy.compiled_filter()
            except policy.SeccompUnavailable as e:
                raise SandboxError(f"the sandbox cannot filter system calls on this machine: {e}") from None
            self._seccomp = dict(summary, applied=True)

    def isolation(self) -> dict:
        """What this machine's zygotes apply: network namespace kind, the uids programs and judges run as (one per
        zygote as root), pid and IPC namespaces per program, the cgroup per run (or why none), the seccomp filter
        (what it denies), the filesystem (jail root and what it shows and hides), the judge in a separate process,
        the audit hook and the limits."""
        z = self._take()
        try:
            return dict(z.info, seccomp=self._seccomp, judge="separate process", rlimits=asdict(self.limits))
        finally:
            self._give(z)

    def _take(self) -> _Zygote:
        with self._lock:
            if self._zygotes:
                return self._zygotes.pop()
        return _Zygote(self.python, self.filesystem, self.hide, self._bpf, "audit_hook" not in self.disable)

    def _give(self, z: _Zygote) -> None:
        with self._lock:
            self._zygotes.append(z)

    def run(self, program: Program, limits: SandboxLimits | None = None) -> Outcome:
        lim = limits or self.limits
        control = {"type_strict": program.type_strict, **asdict(lim)}
        trusted = {"tests": program.tests, "entry": program.entry, "prelude": program.prelude, "candidates": list(program.candidates)}
        z = self._take()
        try:
            res = z.run(control, program.program, trusted)
        except EOFError:
            z.close()
            return Outcome("crashed", "the sandbox process died while running this program (restarted)", 0.0)
        if z.closing:
            z.close()  # it ended after answering: a new one starts for the next program
        else:
            self._give(z)
        return Outcome(res["outcome"], str(res.get("detail", "")), res["seconds"])

    def run_many(self, programs: Iterable[Program], progress: Callable[[int], None] | None = None) -> list[Outcome]:
        items = list(programs)
        results: list[Outcome | None] = [None] * len(items)
        todo: queue.Queue = queue.Queue()
        for i in range(len(items)):
            todo.put(i)

        def worker():
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                results[i] = self.run(items[i])
                if progress:
                    progress(1)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(self.workers, len(items)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results  # type: ignore[return-value]

    def close(self) -> None:
        with self._lock:
            zs, self._zygotes = self._zygotes, []
        for z in zs:
            z.close()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def outcome_counts(outcomes: Iterable[Outcome]) -> dict[str, int]:
    counts = {k: 0 for k in OUTCOMES}
    for o in outcomes:
        counts[o.outcome] = counts.get(o.outcome, 0) + 1
    return counts
