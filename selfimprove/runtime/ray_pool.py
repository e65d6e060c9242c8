"""A pool of Ray actors (`shard_worker.ShardWorker`) that runs a stage's missing shards, several at once.

The driver hands each idle actor a shard and writes the rows it returns as that shard's file, the same file the
in-process loop writes, so resume is unchanged: a finished shard is never redone. When an actor dies (its process
or node is lost), Ray reports `RayActorError`; the pool starts a new actor and gives it the lost shard, up to
`ray.max_retries` times per shard. An error raised by the work itself (bad input, a model that will not load) is
not retried: it is raised here as it was raised there."""

from __future__ import annotations

import logging
from collections import Counter, deque
from typing import Callable

from ..config.ray import RayConfig
from ..errors import ConfigError, SelfImproveError, StageError
from .shard_worker import ContextSpec, ShardWorker

log = logging.getLogger("selfimprove.ray")


def import_ray():
    try:
        import ray
    except ImportError as e:
        raise ConfigError("ray: this job runs on Ray but the ray package is not installed: pip install 'selfimprove[ray]'") from e
    return ray


class WorkerPool:
    """`cfg.num_workers` actors with `cfg.num_cpus` / `num_gpus` / `resources` each; Ray is started (local
    cluster) or joined (`address`) on first use and shut down by `close()` only if this pool started it."""

    def __init__(self, cfg: RayConfig, spec: ContextSpec, warn: Callable[[str], None] = log.warning):
        ray = import_ray()
        self.cfg, self.spec, self.warn = cfg, spec, warn
        self.started_ray = False
        if not ray.is_initialized():
            kwargs = {"address": cfg.address, "include_dashboard": False, "logging_level": logging.WARNING}
            try:
                ray.init(**kwargs)
            except ConnectionError as e:
                raise ConfigError(f"ray.address: cannot reach the Ray cluster at {cfg.address!r} ({e}); start it with `ray start --head` "
                                  "or leave ray.address unset for a local cluster") from e
            self.started_ray = True
        self._check_resources(ray)
        options = {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus, "max_restarts": 0, "max_task_retries": 0}
        if cfg.resources:
            options["resources"] = dict(cfg.resources)
        if cfg.runtime_env:
            options["runtime_env"] = cfg.runtime_env
        self._actor = ray.remote(ShardWorker).options(**options)
        self.workers: list = []
        self.info: dict = {}  # actor id -> {"pid", "host"}
        self.busy: dict = {}  # actor id -> shard index it is working on
        self.retries = 0
        for _ in range(cfg.num_workers):
            self.workers.append(self._spawn())
        self.ready()

    def _check_resources(self, ray) -> None:
        """A pool the cluster can never hold would wait forever: fail now, naming the setting."""
        total = ray.cluster_resources()
        need = {"CPU": self.cfg.num_cpus * self.cfg.num_workers, "GPU": self.cfg.num_gpus * self.cfg.num_workers,
                **{k: v * self.cfg.num_workers for k, v in self.cfg.resources.items()}}
        short = {k: (v, total.get(k, 0)) for k, v in need.items() if v > total.get(k, 0) + 1e-9}
        if not short:
            return
        what = ", ".join(f"{k}: {v:g} needed, {have:g} in the cluster" for k, (v, have) in short.items())
        message = (f"ray: {self.cfg.num_workers} workers x (num_cpus {self.cfg.num_cpus:g}, num_gpus {self.cfg.num_gpus:g}"
                   f"{', resources ' + str(self.cfg.resources) if self.cfg.resources else ''}) do not fit: {what}. "
                   "Lower ray.num_workers or the per-worker resources")
        if self.cfg.address is None:  # a local cluster never grows
            raise ConfigError(message)
        self.warn(message + " (waiting for the cluster to grow)")

    def _spawn(self):
        actor = self._actor.remote(self.spec, max(1, int(self.cfg.num_cpus)) if self.cfg.num_cpus else None)
        self.info[actor._actor_id.hex()] = {"pid": None, "host": None}
        return actor

    def ready(self) -> None:
        """Wait until every actor runs (raising its start-up error), and learn its process id and host."""
        ray = import_ray()
        todo = [w for w in self.workers if self.info[w._actor_id.hex()]["pid"] is None]
        for w, info in zip(todo, ray.get([w.info.remote() for w in todo])):
            self.info[w._actor_id.hex()] = info

    def pids(self, busy_only: bool = False) -> list[int]:
        return [self.info[w._actor_id.hex()]["pid"] for w in self.workers if not busy_only or w._actor_id.hex() in self.busy]

    def run(self, work, pending: list[tuple[int, list]], on_done: Callable[[int, list[dict], dict], None]) -> None:
        """Every `(index, items)` of `pending` through `work` on the actors; `on_done(index, rows, stats)` as each returns."""
        ray = import_ray()
        from ray.exceptions import RayActorError, RayTaskError

        queue = deque(pending)
        idle = list(self.workers)
        inflight: dict = {}
        attempts: Counter = Counter()
        try:
            while queue or inflight:
                while queue and idle:
                    w = idle.pop(0)
                    index, items = queue.popleft()
                    inflight[w.run.remote(work, index, items)] = (index, items, w)
                    self.busy[w._actor_id.hex()] = index
                (ref,), _ = ray.wait(list(inflight), num_returns=1)
                index, items, w = inflight.pop(ref)
                self.busy.pop(w._actor_id.hex(), None)
                try:
                    rows, stats = ray.get(ref)
                except RayActorError as e:
                    attempts[index] += 1
                    self.retries += 1
                    where = self.info.get(w._actor_id.hex(), {})
                    reason = str(e).strip().splitlines()[0][:200]
                    if attempts[index] > self.cfg.max_retries:
                        raise StageError(f"shard {index}: its Ray worker was lost {attempts[index]} times (last: pid {where.get('pid')} on "
                                         f"{where.get('host')}: {reason}); raise ray.max_retries or look at the workers' logs") from e
                    self.warn(f"Ray worker (pid {where.get('pid')} on {where.get('host')}) was lost during shard {index}: {reason}; "
                              f"a new worker takes the shard (attempt {attempts[index] + 1} of {self.cfg.max_retries + 1})")
                    w = self._replace(w)
                    queue.appendleft((index, items))
                    idle.append(w)
                    continue
                except RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, SelfImproveError):
                        raise cause from None
                    raise
                on_done(index, rows, stats)
                idle.append(w)
        finally:
            for ref in inflight:
                ray.cancel(ref, force=True)
            self.busy.clear()

    def _replace(self, dead):
        ray = import_ray()
        try:
            ray.kill(dead, no_restart=True)
        except Exception:  # already gone
            pass
        self.info.pop(dead._actor_id.hex(), None)
        fresh = self._spawn()
        self.workers[self.workers.index(dead)] = fresh
        self.ready()
        return fresh

    def release(self) -> None:
        """Free every actor's model (GPU memory included) but keep the actors."""
        ray = import_ray()
        ray.get([w.release.remote() for w in self.workers])

    def close(self) -> None:
        """End the actors (their processes, so every byte of GPU memory they held), and Ray if this pool started it."""
        ray = import_ray()
        for w in self.workers:
            try:
                ray.kill(w, no_restart=True)
            except Exception:
                pass
        self.workers = []
        if self.started_ray:
            ray.shutdown()

