"""What every stage shares while a job runs: the run store, the task, the console and progress bars, trackers, and
the models the job holds (`models`: runtime.held_models). Stage settings are not here: each stage gets its own config
section."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..optional import require
from ..prompts import PromptLibrary
from ..store import RunStore
from ..tasks import Task
from .held_models import HeldModels

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


@dataclass(frozen=True)
class ContextSpec:
    """What a worker needs to rebuild the job's run context: plain values only (it travels to other nodes)."""

    root: str
    task: dict
    prompts_dir: str | None
    model: str
    backend: dict
    cwd: str  # the driver's working directory: relative model and run paths mean the same on the worker

    def build(self):
        from ..config import TaskConfig, parse_backend
        from ..tasks import make_task

        prompts = PromptLibrary(self.prompts_dir)
        task = make_task(TaskConfig(**self.task), prompts)
        return RunContext(self.root, task, prompts, model=self.model, backend=parse_backend(self.backend), console=Console(stderr=True, quiet=True))


class RunContext:
    """One job's runtime (a pipeline run, an eval, a judge job): `root` is its folder, `model` the base model
    reference, `backend` the backend config generators are built with unless a stage names another. The models the
    job holds are `models` (runtime.held_models: one place, one release)."""

    def __init__(self, root: Path, task: Task, prompts: PromptLibrary, *, model: str, backend, console: Console | None = None,
                 ray=None):
        self.task = task
        self.prompts = prompts
        self.model = model
        self.backend = backend
        self.store = RunStore(Path(root))
        self.console = console or Console(stderr=True)
        self.reports: list[StageReport] = []
        self.warnings: list[str] = []
        self.trackers = None  # runtime.tracking.Trackers, when the job reports to any
        self.ray = implicit_ray(backend, ray)  # config.ray.RayConfig: shard work runs on a pool of Ray actors
        if self.ray is not None:  # before any model loads: the pool starts at the first shard work
            require("ray", "ray" if ray is not None else "backend.data_parallel_size")
        self.models = HeldModels(self.store, model, backend, task, self.console.status)

    def spec(self) -> ContextSpec:
        """This context as plain values, for a Ray worker to rebuild."""
        import os

        return ContextSpec(str(self.store.root.resolve()), self.task.cfg.model_dump(), self.prompts.extra_dir, self.model,
                           self.backend.model_dump(), os.getcwd())

    def close(self) -> None:
        """The job is over: free models, end the Ray workers (and Ray, if this job started it)."""
        self.models.release()

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
        if self.trackers is not None:
            self.trackers.log(report.stage, report.iteration, {**report.counts, **report.extra.get("metrics", {}),
                                                               **{k: v for k, v in report.extra.get("train", {}).items() if k != "per_step"}})


def implicit_ray(backend, ray=None):
    """The job's `ray:` section; or, for vLLM's `data_parallel_size: k` without one, k engines as a local pool of k Ray
    actors with `tensor_parallel_size` GPUs each."""
    dp = getattr(backend, "data_parallel_size", 1)
    if ray is not None and getattr(backend, "name", None) == "ray_llm":
        from ..errors import ConfigError

        raise ConfigError("backend ray_llm schedules its own engines on Ray (backend.address, backend.concurrency): leave out the `ray:` section")
    if ray is not None:
        if dp > 1 and ray.num_workers != dp:
            from ..errors import ConfigError

            raise ConfigError(f"backend.data_parallel_size is {dp} but ray.num_workers is {ray.num_workers}: each Ray worker holds one "
                              "engine, so set one of them (or both to the same number)")
        return ray
    if dp <= 1:
        return None
    from ..config.ray import RayConfig

    return RayConfig(num_workers=dp, num_cpus=1)  # GPUs per worker: tensor_parallel_size where the cluster has GPUs


def _force_bars() -> bool:
    import os

    return os.environ.get("SELFIMPROVE_PROGRESS", "") == "1"


def _short_counts(counts: dict) -> str:
    keys = [k for k in ("rows", "prompts", "samples", "kept", "steps", "num_problems") if k in counts]
    return " ".join(f"{k}={counts[k]}" for k in keys)


class Timer:
    def __init__(self):
        self.t0 = time.time()

    @property
    def seconds(self) -> float:
        return time.time() - self.t0


__all__ = ["RunContext", "StageReport", "Timer"]
