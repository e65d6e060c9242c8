"""A pool of sandbox zygotes (one per CPU): runs untrusted programs with their tests, in parallel.

Each zygote is a separate `python -I -B` process with an empty environment; it forks one jailed
child per program (see `_zygote.py` for the isolation). A zygote that dies is restarted and the
program it was running is recorded as `crashed`, so no program can stop the run.
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

ZYGOTE = Path(__file__).with_name("_zygote.py")
OUTCOMES = ("passed", "failed", "timeout", "memory", "syntax_error", "crashed", "blocked")


@dataclass(frozen=True)
class SandboxLimits:
    """Per-program limits: wall seconds (CPU seconds = wall + 1), address space, processes, file size."""

    timeout: float = 5.0
    memory_mb: int = 1024
    max_procs: int = 16
    max_file_mb: int = 16


@dataclass(frozen=True)
class Program:
    """Untrusted `program`, trusted `tests` (asserts, may define check()), and the `entry` line that calls them."""

    program: str
    tests: str
    entry: str = ""


@dataclass
class Outcome:
    outcome: str
    detail: str
    seconds: float

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


class _Zygote:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-B", str(ZYGOTE)],
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
            self.close()
            raise RuntimeError(f"sandbox zygote failed to start ({sys.executable} {ZYGOTE}): {hello!r}") from None

    def run(self, req: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise EOFError("sandbox zygote died")
        return json.loads(line)

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

    def __init__(self, workers: int | None = None, limits: SandboxLimits = SandboxLimits()):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.limits = limits
        self._zygotes: list[_Zygote] = []
        self._lock = threading.Lock()

    def isolation(self) -> dict:
        """What this machine's zygotes could apply (network namespace kind, uid programs run as)."""
        z = self._take()
        try:
            return dict(z.info, audit_hook=True, rlimits=asdict(self.limits))
        finally:
            self._give(z)

    def _take(self) -> _Zygote:
        with self._lock:
            if self._zygotes:
                return self._zygotes.pop()
        return _Zygote()

    def _give(self, z: _Zygote) -> None:
        with self._lock:
            self._zygotes.append(z)

    def run(self, program: Program, limits: SandboxLimits | None = None) -> Outcome:
        lim = limits or self.limits
        req = {**asdict(program), **asdict(lim)}
        z = self._take()
        try:
            res = z.run(req)
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
