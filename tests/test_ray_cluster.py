"""Joining a running cluster (`ray: {address: auto}`), as on a cluster's head node: `ray start --head` in processes of
its own, then `selfimprove eval` from the command line. The job's shards run there (no cluster of its own is started),
its rows equal a run without Ray, and the cluster outlives the job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfimprove.store import read_table

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).parent / "ray")


def _ray(*args: str, env: dict, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_eval_joins_a_running_cluster_and_leaves_it_running(tiny_model_path, tmp_path):
    assert not ray.is_initialized(), "another test left Ray connected in this process"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    started = _ray("start", "--head", "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats", env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        session = Path("/tmp/ray/session_latest").resolve()
        ev = [sys.executable, "-m", "selfimprove.cli", "eval", "arithmetic", "--model", str(tiny_model_path), "--set", "data.size=6",
              "--set", "eval.n=2", "--set", "eval.max_tokens=8", "--set", "eval.shard_size=2", "--json"]
        joined = subprocess.run(ev + ["-o", str(tmp_path / "joined"), "--set", "ray={address: auto, num_workers: 2}"],
                                capture_output=True, text=True, timeout=300, env=env)
        assert joined.returncode == 0, joined.stderr[-3000:]
        assert Path("/tmp/ray/session_latest").resolve() == session  # the job joined; it started no cluster of its own
        # and left the cluster running: a new driver still joins it and finds its 2 CPUs
        probe = "import ray; ray.init(address='auto', logging_level='ERROR'); print(int(ray.cluster_resources()['CPU']))"
        alive = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
        assert alive.returncode == 0 and alive.stdout.split()[-1] == "2", alive.stderr[-2000:]
        # with no address Ray joins this node's running cluster too, so a pool too big for it warns, it does not fail
        from selfimprove.config.ray import RayConfig
        from selfimprove.runtime.ray_pool import started_a_cluster

        ray.init(logging_level="ERROR")
        try:
            assert not started_a_cluster(ray, RayConfig())
        finally:
            ray.shutdown()
    finally:
        _ray("stop", "--force", env=env)
    local = subprocess.run(ev + ["-o", str(tmp_path / "local")], capture_output=True, text=True, timeout=300, env=env)
    assert local.returncode == 0, local.stderr[-3000:]
    a, b = (read_table(tmp_path / d / "results" / "table.parquet") for d in ("joined", "local"))
    assert len(a) > 0 and a == b
