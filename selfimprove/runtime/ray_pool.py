"""A pool of Ray actors (`shard_worker.ShardWorker`) that runs a stage's missing shards, several at once.

The driver hands each idle actor a shard and writes the rows it returns as that shard's file, the same file the
in-process loop writes, so resume is unchanged: a finished shard is never redone. When an actor dies (its process
or node is lost), Ray reports `RayActorError`; the pool starts a new actor and gives it the lost shard, up to
`ray.max_retries` times per shard. An error raised by the work itself (bad input, a model that will not load) is
not retried: it is raised here as it was raised there."""

from __future__ import annotations

import logging
import os
from collections import Counter, deque
from typing import Callable

from ..config.ray import RayConfig
from ..errors import ConfigError, SelfImproveError, StageError
from ..optional import require
from .shard_worker import ContextSpec, ShardWorker

log = logging.getLogger("selfimprove.ray")


def import_ray():
    require("ray", "ray")
    import ray

    return ray


class WorkerPool:
    """`cfg.num_workers` actors with `cfg.num_cpus` / `num_gpus` / `resources` each; Ray is started (local
    cluster) or joined (`address`) on first use and shut down by `close()` only if this pool started it."""

    def __init__(self, cfg: RayConfig, spec: ContextSpec, warn: Callable[[str], None] = log.warning):
        ray = import_ray()
        self.cfg, self.spec, self.warn = cfg, spec, warn
        self.started_ray = False
        self.workers: list = []
        if ray.is_initialized():
            if cfg.address is not None:
                warn(f"ray.address {cfg.address!r} is not used: this process is already connected to a Ray cluster")
        else:
            kwargs = {"address": cfg.address, "include_dashboard": False, "logging_level": logging.WARNING}
            try:
                ray.init(**kwargs)
            except ConnectionError as e:
                raise ConfigError(f"ray.address: cannot reach the Ray cluster at {cfg.address!r} ({e}); start it with `ray start --head` "
                                  "(then `address: auto` on its nodes), or leave ray.address unset for a local cluster. Ray 2.60 clusters "
                                  "check a token (~/.ray/auth_token, RAY_AUTH_MODE): the error lines above say whether it was refused") from e
            self.started_ray = True
        try:
            total = ray.cluster_resources()
            self.num_gpus = cfg.num_gpus if cfg.num_gpus is not None else gpus_per_worker(spec.backend, total.get("GPU", 0))
            check_resources(cfg, self.num_gpus, total, self.started_ray and started_a_cluster(ray, cfg), warn)
            options = {"num_cpus": cfg.num_cpus, "num_gpus": self.num_gpus, "max_restarts": 0, "max_task_retries": 0}
            if cfg.resources:
                options["resources"] = dict(cfg.resources)
            if cfg.runtime_env:
                options["runtime_env"] = cfg.runtime_env
            self._actor = ray.remote(ShardWorker).options(**options)
            self.info: dict = {}  # actor id -> {"pid", "host"} (None until the actor answered)
            self.busy: dict = {}  # actor id -> shard index it is working on
            self.retries = 0
            for _ in range(cfg.num_workers):
                self.workers.append(self._spawn())
            self.ready()
        except BaseException:
            self.close()
            raise

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
            # an error (or Ctrl-C) ends the stage: the shards still running are abandoned with their actors (a running
            # call cannot be cancelled), which new actors replace, so closing the pool waits for nothing
            for _, _, w in inflight.values():
                self._replace(w)
            self.busy.clear()

    def _replace(self, dead):
        """A new actor in the dead one's place; it is not waited for (the shard queue moves on with the others)."""
        ray = import_ray()
        try:
            ray.kill(dead, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.info.pop(dead._actor_id.hex(), None)
        fresh = self._spawn()
        self.workers[self.workers.index(dead)] = fresh
        return fresh

    def release(self, timeout: float = 120) -> None:
        """Free every actor's model (its generator's close(): a vLLM engine shuts its process down) but keep the actors."""
        ray = import_ray()
        ray.wait([w.release.remote() for w in self.workers], num_returns=len(self.workers), timeout=timeout)

    def close(self) -> None:
        """Free the actors' models, then end the actors (their processes, so all the GPU memory they held), and Ray if
        this pool started it."""
        ray = import_ray()
        if self.workers:
            try:
                self.release()
            except Exception as e:  # noqa: BLE001 - a dead actor has nothing to free
                log.debug("release: %s", e)
        for w in self.workers:
            try:
                ray.kill(w, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        self.workers = []
        if self.started_ray:
            ray.shutdown()
            self.started_ray = False


def started_a_cluster(ray, cfg: RayConfig) -> bool:
    """Whether `ray.init()` started a new cluster in this process rather than joining one: `address`, RAY_ADDRESS, or,
    with neither, a cluster `ray start` left running on this node, which Ray joins before it starts one."""
    try:
        return bool(ray._private.worker._global_node.head)  # Ray's own record (private: may move between releases)
    except AttributeError:
        return cfg.address is None and not os.environ.get("RAY_ADDRESS")


def check_resources(cfg: RayConfig, num_gpus: float, total: dict, own_cluster: bool, warn: Callable[[str], None]) -> None:
    """A pool the cluster can never hold would wait forever: fail now when this job started the (local) cluster, which
    never grows; warn on a joined cluster, which may autoscale."""
    n = cfg.num_workers
    need = {"CPU": cfg.num_cpus * n, "GPU": num_gpus * n, **{k: v * n for k, v in cfg.resources.items()}}
    short = {k: (v, total.get(k, 0)) for k, v in need.items() if v > total.get(k, 0) + 1e-9}
    if not short:
        return
    what = ", ".join(f"{k}: {v:g} needed, {have:g} in the cluster" for k, (v, have) in short.items())
    message = (f"ray: {n} workers x (num_cpus {cfg.num_cpus:g}, num_gpus {num_gpus:g}{', resources ' + str(cfg.resources) if cfg.resources else ''}) "
               f"do not fit: {what}. Lower ray.num_workers or the per-worker resources")
    if own_cluster:
        raise ConfigError(message)
    warn(message + " (waiting for the cluster to grow)")


def gpus_per_worker(backend: dict, cluster_gpus: float) -> float:
    """GPUs one actor needs for `backend` when `ray.num_gpus` is not set: none for a remote server or a CPU device or a
    cluster without GPUs (Ray hides every GPU from an actor that asks for 0), else vLLM's tensor_parallel_size or 1."""
    if backend.get("name") == "openai" or backend.get("device") == "cpu" or not cluster_gpus:
        return 0
    return backend.get("tensor_parallel_size", 1) if backend.get("name") == "vllm" else 1
