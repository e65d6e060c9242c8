"""Every model a job holds, in one place with one release: the generator (one at a time), the scorers bound to the
job's models (a reward model loads one of its own), and the Ray actor pool whose workers hold models of their own.

It is also the model access bound scorers use (`scoring.judge_base.ModelAccess`): generators, the run's request
cache, `iteration_model` for judges named `iter_<k>`, and `finetune` for a scorer that trains a model (ds_weight).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Callable

from ..errors import BackendError
from ..generation import Generator, make_generator
from ..models import ModelRef, model_ref
from ..request_cache import RequestCache
from ..store import RunStore, StageDir, stable_hash

log = logging.getLogger("selfimprove")


class HeldModels:
    """The models of one job (`store`: its run folder; `base`: the base model reference; `backend`: the backend
    generators are built with unless a stage names another). `release()` frees all of them, here and on Ray workers."""

    def __init__(self, store: RunStore, base: str, backend, task, status: Callable[[str], object]):
        self.store, self.base, self.backend, self.task, self._status = store, base, backend, task, status
        self._generator: tuple[str, Generator, str] | None = None  # (model + backend key, generator, backend key)
        self._suspended = False  # the generator was handed to training (Generator.suspend) and still holds its engine
        self._scorers: dict[str, list] = {}
        self._request_cache: RequestCache | None = None
        self.pool = None  # the Ray actor pool (runtime.ray_pool.WorkerPool) once shard work started it (runtime.runner.workers)

    # -- model references -----------------------------------------------------------------
    def base_model(self) -> ModelRef:
        return model_ref(self.base)

    def iteration_model(self, k: int) -> ModelRef:
        if k == 0:
            return self.base_model()
        sd = StageDir(self.store.root / f"iter_{k}" / "train", "train", {})
        return ModelRef(f"iter_{k}", self.store.model_dir(k), sd.fingerprint)

    # -- the generator --------------------------------------------------------------------
    def generator(self, model: ModelRef, backend=None) -> Generator:
        """The backend for `model` (the run's backend unless another is given), reused while the same
        model is asked for: one model in memory at a time, so a judge that is the policy costs nothing. With vLLM's
        `enable_lora`, an iteration trained as a LoRA adapter on the base model is that adapter on the base engine."""
        backend = backend or self.backend
        adapter = self.served_adapter(model, backend)
        if adapter is not None:
            k, path = adapter
            return self.generator(self.base_model(), backend).adapter_view(model.ref, k, path)
        backend_key = stable_hash(backend.model_dump())
        key = stable_hash([model.fingerprint, backend_key])
        if self._generator and self._generator[0] == key and not self._suspended:
            return self._generator[1]
        if self._generator and self._suspended and self._generator[2] == backend_key:
            try:  # the engine training was handed: this model goes onto it (vllm_hand_off), no new engine
                with self._status(f"loading {model.ref} onto the running engine"):
                    what = self._generator[1].resume(model.path)
                log.info("%s: %s", model.ref, what)
                self._generator, self._suspended = (key, self._generator[1], backend_key), False
                return self._generator[1]
            except ValueError as e:  # a layout that cannot load in place
                log.info("%s; starting a new engine", e)
            except BackendError as e:  # waking or loading failed: the engine is closed
                log.warning("%s; starting a new engine", e)
        self.release_generator()
        with self._status(f"loading {model.ref} ({backend.name})"):
            gen = make_generator(backend, model.path)
        self._generator = (key, gen, backend_key)
        return gen

    @property
    def holds_generator(self) -> bool:
        return self._generator is not None

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
            self._generator, self._suspended = None, False

    # -- scorers bound to these models ----------------------------------------------------------
    def bound_scorers(self, configs: list, policy: ModelRef, where: str = "score") -> list:
        """The scorers `configs` name, bound to these models (judging `policy`); built once until the next release,
        so the shards of a sharded stage reuse them (a reward model loads once per stage, not per shard)."""
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

    @property
    def finetune(self):
        """What a scorer that trains a model of its own calls (ds_weight's valid-set model): LoRA SFT."""
        from ..training.sft import train_sft

        return train_sft

    # -- the one release ------------------------------------------------------------------
    def release(self, hand_off: bool = False) -> None:
        """Free every model: the generator, every bound scorer's own model, and the Ray workers (whose processes end,
        taking their GPU memory with them), so training gets the accelerator; the next stage loads what it needs.
        `hand_off` (training is next): the generator's engine may instead sleep or stay (`backend.hand_off`), and the
        next model asked of the same backend is loaded onto it."""
        if hand_off and self._generator:
            if self._generator[1].suspend():
                self._suspended = True
            else:
                self._generator, self._suspended = None, False
        else:
            self.release_generator()
        scorers, self._scorers = self._scorers, {}
        for group in scorers.values():
            for scorer in group:
                scorer.close()
        if self.pool is not None:
            self.pool.close()
            self.pool = None
