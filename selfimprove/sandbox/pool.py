"""A pool of sandbox zygotes (one per CPU): runs untrusted programs with their tests, in parallel.

Each zygote is a separate `python -I -B` process with an empty environment; per program it forks a
jailed child that runs the program and a judge that runs the tests and decides (see `_zygote.py`).
The trusted part of a request (tests, prelude) is sent only after the child exists, so the program's
process never holds it. A zygote that dies is restarted and the program it was running is recorded
as `crashed`, so no program can stop the run.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

from ._wire import FILESYSTEMS, OUTCOMES

ZYGOTE = Path(__file__).with_name("_zygote.py")


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


@dataclass
class Outcome:
    outcome: str
    detail: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


class _Zygote:
    def __init__(self, python: str, filesystem: str, hide: tuple[str, ...]):
        self.proc = subprocess.Popen(
            [python, "-I", "-B", str(ZYGOTE), "--filesystem", filesystem, *(a for h in hide for a in ("--hide", str(h)))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            cwd="/",
            text=True,
            start_new_session=True,
        )
        hello = self.proc.stdout.readline()
        try:
            self.info = json.loads(hello)
        except ValueError:
            self.info = {"ready": False, "error": f"no greeting ({hello!r})"}
        if not self.info.get("ready"):
            self.close()
            raise SandboxError(f"the sandbox cannot start ({python} {ZYGOTE}): {self.info.get('error')}")
        self.info.pop("ready")

    def _send(self, msg: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise EOFError("sandbox zygote died")
        return json.loads(line)

    def run(self, untrusted: dict, trusted: dict) -> dict:
        """The untrusted part first; the trusted part once the zygote says the program's process exists."""
        ack = self._send(untrusted)
        if not ack.get("forked"):
            return ack  # the zygote refused the request (its answer is the outcome)
        return self._send(trusted)

    def close(self) -> None:
        """End of input lets the zygote delete its folder and exit; kill it if it does not."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


class Sandbox:
    """Run programs in jailed processes; `run_many` keeps every CPU busy and reports progress."""

    def __init__(self, workers: int | None = None, limits: SandboxLimits = SandboxLimits(), *, python: str | None = None,
                 filesystem: str = "auto", hide: Iterable[str | os.PathLike] = ()):
        """`filesystem`: what programs see (`_fs.py`: auto, jail, mirror, host); `hide`: files or folders covered by
        empty ones in the jail, e.g. the benchmark file whose canonical solutions a program could otherwise read."""
        if filesystem not in FILESYSTEMS:
            raise ValueError(f"filesystem must be one of {FILESYSTEMS}")
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.limits = limits
        self.python = python or sys.executable
        self.filesystem = filesystem
        self.hide = tuple(str(h) for h in hide)
        self._zygotes: list[_Zygote] = []
        self._lock = threading.Lock()

    def isolation(self) -> dict:
        """What this machine's zygotes apply: network namespace kind, uid programs run as (one per zygote as root),
        pid namespace per program, filesystem (jail root and what it shows and hides), the judge in a separate
        process, the audit hook and the limits."""
        z = self._take()
        try:
            return dict(z.info, judge="separate process", audit_hook=True, rlimits=asdict(self.limits))
        finally:
            self._give(z)

    def _take(self) -> _Zygote:
        with self._lock:
            if self._zygotes:
                return self._zygotes.pop()
        return _Zygote(self.python, self.filesystem, self.hide)

    def _give(self, z: _Zygote) -> None:
        with self._lock:
            self._zygotes.append(z)

    def run(self, program: Program, limits: SandboxLimits | None = None) -> Outcome:
        lim = limits or self.limits
        untrusted = {"program": program.program, "type_strict": program.type_strict, **asdict(lim)}
        trusted = {"tests": program.tests, "entry": program.entry, "prelude": program.prelude, "candidates": list(program.candidates)}
        z = self._take()
        try:
            res = z.run(untrusted, trusted)
        except EOFError:
            z.close()
            return Outcome("crashed", "the sandbox process died while running this program (restarted)", 0.0)
        self._give(z)
        return Outcome(res["outcome"], res["detail"], res["seconds"])

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
