"""The `ray:` section without a cluster: pools that cannot fit fail or warn, GPUs per worker follow the backend,
vLLM's data_parallel_size becomes a pool, and a missing ray package is a clear error."""

from __future__ import annotations

import sys

import pytest

from selfimprove.config import VLLMBackendConfig, load_pipeline
from selfimprove.config.ray import RayConfig
from selfimprove.errors import ConfigError
from selfimprove.runtime.context import implicit_ray
from selfimprove.runtime.ray_pool import check_resources, gpus_per_worker, import_ray


def test_a_pool_the_cluster_cannot_hold_fails_on_its_own_cluster_and_warns_on_a_joined_one():
    warned = []
    with pytest.raises(ConfigError, match=r"ray: 3 workers .* do not fit: CPU: 3 needed, 2 in the cluster"):
        check_resources(RayConfig(num_workers=3), 0, {"CPU": 2.0}, True, warned.append)
    with pytest.raises(ConfigError, match="GPU: 2 needed, 0 in the cluster"):
        check_resources(RayConfig(num_workers=2), 1, {"CPU": 8.0}, True, warned.append)
    check_resources(RayConfig(num_workers=2), 1, {"CPU": 8.0}, False, warned.append)
    assert len(warned) == 1 and "waiting for the cluster to grow" in warned[0]
    check_resources(RayConfig(num_workers=2, resources={"tpu": 1}), 0, {"CPU": 2.0, "tpu": 2.0}, True, warned.append)  # fits


def test_gpus_per_worker_follow_the_backend():
    assert gpus_per_worker({"name": "vllm", "tensor_parallel_size": 2, "device": "auto"}, 8) == 2
    assert gpus_per_worker({"name": "transformers", "device": "auto"}, 8) == 1
    assert gpus_per_worker({"name": "transformers", "device": "cpu"}, 8) == 0
    assert gpus_per_worker({"name": "openai"}, 8) == 0
    assert gpus_per_worker({"name": "vllm", "tensor_parallel_size": 2, "device": "auto"}, 0) == 0  # a CPU cluster


def test_vllm_data_parallel_size_is_a_pool_of_engines():
    assert implicit_ray(VLLMBackendConfig()) is None
    assert implicit_ray(VLLMBackendConfig(data_parallel_size=4)).num_workers == 4
    assert implicit_ray(VLLMBackendConfig(data_parallel_size=4), RayConfig(num_workers=4, address="auto")).address == "auto"
    with pytest.raises(ConfigError, match="data_parallel_size is 4 but ray.num_workers is 2"):
        implicit_ray(VLLMBackendConfig(data_parallel_size=4), RayConfig(num_workers=2))
    with pytest.raises(ValueError, match="one of"):
        VLLMBackendConfig(max_lora_rank=12)


def test_ray_section_is_checked_like_every_other(tmp_path):
    with pytest.raises(ConfigError, match="ray.num_wrokers"):
        load_pipeline("pipelines/quickstart.yaml", ["ray={num_wrokers: 2}"])
    with pytest.raises(ConfigError, match="ray.num_workers"):
        load_pipeline("pipelines/quickstart.yaml", ["ray={num_workers: 0}"])
    assert load_pipeline("pipelines/quickstart.yaml", ["ray={address: auto}"]).ray.num_workers == 2


def test_missing_ray_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'selfimprove\[ray\]'"):
        import_ray()


def test_spreading_a_backend_out_keeps_its_stage_hashes():
    """Engines, prefix caching and adapters per batch decide how, not what: finished shards survive scaling out, and a
    vLLM backend hashes as it did before those settings existed."""
    assert VLLMBackendConfig(data_parallel_size=4, enable_prefix_caching=False, max_loras=8).identity() == VLLMBackendConfig().identity()
    assert set(VLLMBackendConfig().identity()) == {"name", "batch_size", "dtype", "device", "tensor_parallel_size", "gpu_memory_utilization",
                                                   "max_model_len", "enforce_eager", "max_lora_rank"}
    assert VLLMBackendConfig(enable_lora=True).identity()["enable_lora"] is True
