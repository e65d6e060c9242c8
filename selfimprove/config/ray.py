"""The `ray:` section of a pipeline, eval suite, judge job or generate job: run the stage's shards on a pool of
Ray actors (each holding one backend instance) instead of in this process. Absent: no Ray."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import Strict


class RayConfig(Strict):
    """Where the actors run and what each one gets. The same file runs on a laptop (`address` unset: a local
    cluster is started in this process, unless one already runs there) and on a cluster (`address: auto` from a node of it)."""

    address: str | None = Field(
        None, description="None: Ray's default (ray.init()): RAY_ADDRESS, else the cluster `ray start` runs on this node, else a "
                          "new local cluster in this process; 'auto': join the cluster this node belongs to (an error if there is "
                          "none); 'ray://head:10001': Ray Client.")
    num_workers: int = Field(2, gt=0, description="Actors in the pool; each holds one backend instance (model, engine or client).")
    num_cpus: float = Field(1, ge=0, description="CPUs reserved per actor (also its torch thread count).")
    num_gpus: float | None = Field(
        None, ge=0, description="GPUs reserved per actor. None: what the backend needs when the cluster has GPUs (vLLM: "
                                "tensor_parallel_size; transformers: 1), 0 for openai, device: cpu or a cluster without GPUs. Ray hides "
                                "every GPU from an actor that asks for 0.")
    resources: dict[str, float] = Field(default_factory=dict, description="Custom Ray resources per actor, e.g. {accelerator_type:H100: 0.01}.")
    max_retries: int = Field(3, ge=0, description="Times one shard is retried after its worker was lost (a new actor replaces it).")
    runtime_env: dict[str, Any] | None = Field(None, description="Ray runtime_env for the actors (env_vars, pip, working_dir ...).")
