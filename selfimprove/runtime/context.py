"""What every stage shares while a job runs: the run store, the task, the console and progress bars, the
base model, and one generator at a time. Stage settings are not here: each stage gets its own config section."""

from __future__ import annotations

import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..generation import Generator, make_generator
from ..models import ModelRef, model_ref
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
    reference, `backend` the backend config generators are built with unless a stage names another."""

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
        self._generator: tuple[str, Generator] | None = None
        self._request_cache: RequestCache | None = None
        self.trackers = None  # runtime.tracking.Trackers, when the job reports to any
        self.ray = implicit_ray(backend, ray)  # config.ray.RayConfig: shard work runs on a pool of Ray actors
        self._scorers: dict[str, list] = {}  # bound_scorers
        self._pool = None  # the Ray actor pool (runtime.ray_pool.WorkerPool) once shard work started it (pipeline.runner.workers)

    # -- models ---------------------------------------------------------------------------
    def base_model(self) -> ModelRef:
        return model_ref(self.model)

    def iteration_model(self, k: int) -> ModelRef:
        if k == 0:
            return self.base_model()
        stage = self.store.root / f"iter_{k}" / "train"
        sd = StageDir(stage, "train", {})
        return ModelRef(f"iter_{k}", self.store.model_dir(k), sd.fingerprint)

    def generator(self, model: ModelRef, backend=None) -> Generator:
        """The backend for `model` (the run's backend unless another is given), reused while the same
        model is asked for: one model in memory at a time, so a judge that is the policy costs nothing. With vLLM's
        `enable_lora`, an iteration trained as a LoRA adapter on the base model is that adapter on the base engine."""
        backend = backend or self.backend
        adapter = self.served_adapter(model, backend)
        if adapter is not None:
            k, path = adapter
            return self.generator(self.base_model(), backend).adapter_view(model.ref, k, path)
        key = stable_hash([model.fingerprint, backend.model_dump()])
        if self._generator and self._generator[0] == key:
            return self._generator[1]
        self.release_generator()
        with self.console.status(f"loading {model.ref} ({backend.name})"):
            gen = make_generator(backend, model.path)
        self._generator = (key, gen)
        return gen

    def served_adapter(self, model: ModelRef, backend) -> tuple[int, Path] | None:
        """(k, adapter folder) when `model` is iter_<k> of this run, trained as LoRA on the base model, and `backend`
        serves adapters (vLLM `enable_lora`); None otherwise (the merged model loads instead)."""
        m = re.fullmatch(r"iter_(\d+)", model.ref)
        if not (m and getattr(backend, "enable_lora", False)):
            return None
        k = int(m.group(1))
        train = self.store.root / model.ref / "train"
        started_from = ((StageDir(train, "train", {}).manifest() or {}).get("inputs") or {}).get("model")
        if (train / "adapter" / "adapter_config.json").is_file() and started_from == self.base_model().fingerprint:
            return k, (train / "adapter").resolve()
        log.info("%s: not served as a LoRA adapter (%s); loading its merged model", model.ref,
                 "no adapter" if not (train / "adapter").is_dir() else "its adapter was trained on another iteration's model")
        return None

    def release_generator(self) -> None:
        if self._generator:
            self._generator[1].close()
            self._generator = None

    # -- Ray ------------------------------------------------------------------------------
    def spec(self) -> ContextSpec:
        """This context as plain values, for a Ray worker to rebuild."""
        import os

        return ContextSpec(str(self.store.root.resolve()), self.task.cfg.model_dump(), self.prompts.extra_dir, self.model,
                           self.backend.model_dump(), os.getcwd())

    def release_models(self) -> None:
        """Free every model this job holds, here and on its Ray workers (whose processes end, taking all their GPU
        memory with them), so training gets the accelerator; the next shard work starts fresh workers."""
        self.release_generator()
        if self._pool is not None:
            self._pool.close()
            self._scorers: dict[str, list] = {}  # bound_scorers
        self._pool = None  # the Ray actor pool (runtime.ray_pool.WorkerPool) once shard work started it (pipeline.runner.workers)

    def close(self) -> None:
        """The job is over: free models, end the Ray workers (and Ray, if this job started it)."""
        self.release_models()

    def bound_scorers(self, configs: list, policy: ModelRef, where: str = "score") -> list:
        """The scorers `configs` name, bound to this context's models (judging `policy`); built once per job, so a shard
        of a sharded stage reuses them (a reward model loads once)."""
        from ..scoring import make_scorers
        from ..scoring.judge_base import bind_scorers

        key = stable_hash([[c.model_dump() if hasattr(c, "model_dump") else c for c in configs], policy.fingerprint, where])
        if key not in self._scorers:
            scorers = make_scorers(configs, self.task, where)
            bind_scorers(scorers, self, policy)
            self._scorers[key] = scorers
        return self._scorers[key]

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


__all__ = ["ModelRef", "RunContext", "StageReport", "Timer"]
