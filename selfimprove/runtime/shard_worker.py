"""The Ray actor behind `ray:`: a run context of its own (so one backend instance at a time, built on first use
and kept between shards and stages) that runs the shard work the driver sends. Rows go back to the driver, which
writes each shard into the run folder, so the nodes share no files but the models they load."""

from __future__ import annotations

import os
import socket

from .context import ContextSpec


class ShardWorker:
    """One pool member. `run(work, index, items)` calls `work(ctx, index, items, advance)` (a picklable shard work
    object, e.g. `stages.generate.GenerateWork`) and returns its rows with the request-cache counts it added."""

    def __init__(self, spec: ContextSpec, threads: int | None = None):
        from .quiet import quiet_libraries

        quiet_libraries()
        if os.path.isdir(spec.cwd):
            os.chdir(spec.cwd)
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.spec = spec
        self.ctx = None

    def info(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname()}

    def run(self, work, index: int, items: list) -> tuple[list[dict], dict]:
        if self.ctx is None:
            self.ctx = self.spec.build()
        cache = self.ctx.models.request_cache
        hits, misses = cache.hits, cache.misses
        rows = work(self.ctx, index, items, lambda k=1: None)
        return rows, {"cached": cache.hits - hits, "requests": cache.misses - misses}

    def release(self) -> None:
        if self.ctx is not None:
            self.ctx.models.release_generator()
