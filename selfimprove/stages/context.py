"""What every stage needs: the config, the run store, the task, progress display and a generator cache."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..config import PipelineConfig
from ..generation import Generator, make_generator
from ..models import resolve_model
from ..prompts import PromptLibrary
from ..store import RunStore, StageDir, stable_hash
from ..tasks import Task
from .request_cache import RequestCache

log = logging.getLogger("selfimprove")


@dataclass
class StageReport:
    """One stage's line in the summary: what it did, how long it took (this run or when it ran)."""

    iteration: int | None
    stage: str
    skipped: bool
    seconds: float
    counts: dict
    extra: dict = field(default_factory=dict)


@dataclass
class ModelRef:
    """A model as the loop sees it: its reference (lineage), resolved path and fingerprint."""

    ref: str
    path: Path | str
    fingerprint: str


class RunContext:
    def __init__(self, cfg: PipelineConfig, task: Task, prompts: PromptLibrary, console: Console | None = None, root: Path | None = None):
        """`cfg` is a pipeline config, or any config with `model`, `backend`, `eval` (an eval suite); `root` overrides the run folder."""
        self.cfg = cfg
        self.task = task
        self.prompts = prompts
        self.store = RunStore(root if root is not None else Path(cfg.run_dir) / cfg.name)
        self.console = console or Console(stderr=True)
        self.reports: list[StageReport] = []
        self.warnings: list[str] = []
        self._generator: tuple[str, Generator] | None = None
        self._progress: Progress | None = None
        self._request_cache: RequestCache | None = None

    # -- models ---------------------------------------------------------------------------
    def base_model(self) -> ModelRef:
        path = resolve_model(self.cfg.model)
        return ModelRef(self.cfg.model, path, model_fingerprint(self.cfg.model, path))

    def iteration_model(self, k: int) -> ModelRef:
        if k == 0:
            return self.base_model()
        stage = self.store.root / f"iter_{k}" / "train"
        sd = StageDir(stage, "train", {})
        return ModelRef(f"iter_{k}", self.store.model_dir(k), sd.fingerprint)

    def generator(self, model: ModelRef, backend=None) -> Generator:
        """The backend for `model` (the run's backend unless another is given), reused while the same
        model is asked for: one model in memory at a time, so a judge that is the policy costs nothing."""
        backend = backend or self.cfg.backend
        key = stable_hash([model.fingerprint, backend.model_dump()])
        if self._generator and self._generator[0] == key:
            return self._generator[1]
        self.release_generator()
        with self.console.status(f"loading {model.ref} ({backend.name})"):
            gen = make_generator(backend, model.path)
        self._generator = (key, gen)
        return gen

    def release_generator(self) -> None:
        if self._generator:
            self._generator[1].close()
            self._generator = None

    @property
    def request_cache(self) -> RequestCache:
        """Model requests of scorers (judges, P(True), log-likelihood), cached in the run folder."""
        if self._request_cache is None:
            self._request_cache = RequestCache(self.store.root / "request_cache.sqlite")
        return self._request_cache

    # -- progress -------------------------------------------------------------------------
    @contextmanager
    def progress(self, description: str, total: int | None) -> Iterator:
        """A rich progress bar; yields `advance(k)` / `update(done, total)` callables."""
        prog = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            disable=not self.console.is_terminal and not _force_bars(),
        )
        with prog:
            tid = prog.add_task(description, total=total)

            class _Handle:
                def advance(self, k: int = 1) -> None:
                    prog.advance(tid, k)

                def update(self, done: int, total: int | None = None) -> None:
                    prog.update(tid, completed=done, total=total)

            yield _Handle()

    def warn(self, message: str) -> None:
        """A problem the run goes on with but the user must see: logged as a warning on the `selfimprove` logger
        (the console; a stage's log.txt while it runs) and kept in `warnings`."""
        self.warnings.append(message)
        log.warning(message)

    def record(self, report: StageReport) -> None:
        self.reports.append(report)
        where = "data" if report.iteration is None else f"iter {report.iteration}"
        verb = "skipped (done before)" if report.skipped else f"done in {report.seconds:.1f}s"
        self.console.print(f"[dim]{where}[/dim] {report.stage}: {verb} {_short_counts(report.counts)}")


def _force_bars() -> bool:
    import os

    return os.environ.get("SELFIMPROVE_PROGRESS", "") == "1"


def _short_counts(counts: dict) -> str:
    keys = [k for k in ("rows", "prompts", "samples", "kept", "steps", "num_problems") if k in counts]
    return " ".join(f"{k}={counts[k]}" for k in keys)


def model_fingerprint(ref: str, path: Path | str) -> str:
    """Identify a base model cheaply: builtin name, a local folder's file names/sizes/mtimes, or the hub id."""
    p = Path(path)
    if ref.startswith("builtin:") or not p.exists():
        return ref
    h = [ref]
    for f in sorted(q for q in p.rglob("*") if q.is_file()):
        st = f.stat()
        h.append(f"{f.relative_to(p)}:{st.st_size}:{int(st.st_mtime)}")
    return stable_hash(h)


class Timer:
    def __init__(self):
        self.t0 = time.time()

    @property
    def seconds(self) -> float:
        return time.time() - self.t0


__all__ = ["ModelRef", "RunContext", "StageReport", "Timer"]
