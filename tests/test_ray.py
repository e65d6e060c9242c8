"""Shards on a real local Ray cluster (2 workers): a killed worker's shard is retried and every sample is made exactly
once, and the rows equal a run without Ray (same shard seeds; one torch thread on both sides, so even the float
reductions match); the loop, eval and judge jobs on Ray; resource and install errors before any model loads."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import threading
import time

import pytest

from selfimprove.config import SplitConfig, TaskConfig, TransformersBackendConfig, load_pipeline
from selfimprove.config.ray import RayConfig
from selfimprove.generation import SamplingParams
from selfimprove.models import DEFAULT_MODEL
from selfimprove.prompts import PromptLibrary
from selfimprove.runtime.context import RunContext
from selfimprove.runtime.generate_shards import generate_sharded
from selfimprove.store import read_table
from selfimprove.tasks import make_task

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module (2 CPUs: 2 workers of 1 CPU each); pools join it and leave it running."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture
def one_thread():
    """The driver computes with one torch thread, as each 1-CPU worker does: float sums then agree to the bit."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def context(root, ray_cfg=None, model=DEFAULT_MODEL):
    prompts = PromptLibrary()
    task = make_task(TaskConfig(name="arithmetic"), prompts)
    return RunContext(root, task, prompts, model=model, backend=TransformersBackendConfig(batch_size=8), ray=ray_cfg), task


def test_a_cluster_this_process_started_is_its_own(cluster):
    from selfimprove.runtime.ray_pool import started_a_cluster

    assert started_a_cluster(ray, RayConfig())


def test_killed_worker_shard_is_retried_and_rows_equal_a_run_without_ray(cluster, one_thread, tmp_path):
    """SmolLM2 on 2 Ray workers, 4 shards; one worker is SIGKILLed while it works on a shard. The stage still
    finishes, every sample exists exactly once, and the rows are the rows of the same stage run here without Ray."""
    params = SamplingParams(n=2, temperature=0.7, max_tokens=24, seed=5)

    def run(root, ray_cfg, on_start=None):
        ctx, task = context(root, ray_cfg)
        prompt_rows = task.load(SplitConfig(size=8, seed=3), "data")
        sd = ctx.store.stage(1, "generate", {"test": 1}, {})
        sd.begin()
        if on_start:
            on_start(ctx, sd)
        try:
            return generate_sharded(ctx, sd, prompt_rows, ctx.models.base_model(), params, 2, 1, "generate"), ctx
        finally:
            pool = ctx.models.pool
            ctx.close()
            ctx.models.pool = pool  # kept for the assertions (closed)

    killed: list[int] = []

    def kill_one_busy_worker(ctx, sd):
        def killer():
            deadline = time.time() + 300
            while time.time() < deadline:
                pool = ctx.models.pool
                if pool is not None and sd.has_shard(0) and pool.pids(busy_only=True):
                    pid = pool.pids(busy_only=True)[0]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                    return
                time.sleep(0.05)

        threading.Thread(target=killer, daemon=True).start()

    on_ray, ctx = run(tmp_path / "ray", RayConfig(num_workers=2, max_retries=2), kill_one_busy_worker)
    assert killed, "no worker was killed mid-stage"
    assert ctx.models.pool.retries >= 1  # the lost shard went to a new worker
    assert killed[0] not in ctx.models.pool.pids()
    ids = [r["sample_id"] for r in on_ray]
    assert len(ids) == 8 * 2 and len(set(ids)) == len(ids)
    assert len({r["prompt_id"] for r in on_ray}) == 8
    assert len(list((tmp_path / "ray" / "iter_1" / "generate" / "shards").glob("shard_*.parquet"))) == 4

    without, _ = run(tmp_path / "local", None)
    assert on_ray == without


def test_pipeline_on_ray_writes_the_rows_a_run_without_ray_writes(cluster, one_thread, pipeline_yaml, monkeypatch):
    """generate -> score (a self-judging scorer too) -> select -> train -> eval with `ray:`: the workers end before
    training (their models free the accelerator) and new ones evaluate; every table equals the run without Ray's."""
    from selfimprove.pipeline.loop import run_pipeline

    path, runs = pipeline_yaml
    ran = spy_on_pool(monkeypatch)
    scorers = "[{name: gold}, {name: majority_vote}, {name: pointwise_judge, options: {mode: logprobs}}]"
    with_ray = run_pipeline(load_pipeline(path, ["name=onray", f"score={scorers}", "ray={num_workers: 2}"]))
    # every shard ran on the workers: generate 6 prompts / 3 and score 2 shards, plus the evals' shards
    assert ran["ScoreWork"] == 2 and ran["GenerateWork"] > 2, ran
    without = run_pipeline(load_pipeline(path, ["name=local", f"score={scorers}"]))
    assert with_ray["iterations"][-1]["metrics"]["accuracy"] == without["iterations"][-1]["metrics"]["accuracy"]
    for table in ("iter_0/eval", "iter_1/generate", "iter_1/score", "iter_1/select", "iter_1/eval"):
        a, b = read_table(runs / "onray" / table / "table.parquet"), read_table(runs / "local" / table / "table.parquet")
        assert a and a == b, table
    assert all(r["judge_score"] is not None for r in read_table(runs / "onray" / "iter_1" / "score" / "table.parquet"))
    # the score stage ran in shards of whole prompts on the workers
    assert len(list((runs / "onray" / "iter_1" / "score" / "shards").glob("shard_*.parquet"))) == 2


def test_judge_and_eval_jobs_on_ray(cluster, one_thread, tiny_model_path, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from selfimprove.cli import app

    ran = spy_on_pool(monkeypatch)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(f'{{"prompt": "What is {i} + 2?", "response": "The answer is {i + 2}.", "reference": "{i + 2}"}}\n' for i in range(6)))
    base = ["judge", "pointwise", "--input", str(rows), "--model", str(tiny_model_path), "--set", "shard_size=2",
            "--set", "scorers=[{name: pointwise_judge, options: {mode: logprobs}}, {name: p_true}]", "--json"]
    r1 = CliRunner().invoke(app, base + ["-o", str(tmp_path / "j_ray"), "--set", "ray={num_workers: 2}"])
    assert r1.exit_code == 0, r1.output
    r2 = CliRunner().invoke(app, base + ["-o", str(tmp_path / "j_local")])
    assert r2.exit_code == 0, r2.output
    a, b = read_table(tmp_path / "j_ray" / "results" / "table.parquet"), read_table(tmp_path / "j_local" / "results" / "table.parquet")
    assert len(a) == 6 and a == b
    # the workers' request counts reach the job's counts
    counts = [json.loads((tmp_path / d / "results" / "manifest.json").read_text())["counts"] for d in ("j_ray", "j_local")]
    assert counts[0]["requests"] > 0 and counts[0] == counts[1]
    assert ran == {"JudgeWork": 3}

    ev = ["eval", "arithmetic", "--model", str(tiny_model_path), "--set", "data.size=6", "--set", "eval.n=2", "--set", "eval.max_tokens=8",
          "--set", "eval.shard_size=2", "--json"]
    e1 = CliRunner().invoke(app, ev + ["-o", str(tmp_path / "e_ray"), "--set", "ray={num_workers: 2}"])
    e2 = CliRunner().invoke(app, ev + ["-o", str(tmp_path / "e_local")])
    assert e1.exit_code == 0 and e2.exit_code == 0, e1.output + e2.output
    assert read_table(tmp_path / "e_ray" / "results" / "table.parquet") == read_table(tmp_path / "e_local" / "results" / "table.parquet")
    assert ran["GenerateWork"] >= 3  # greedy: 6 prompts / 2, then the sampled ones


def test_generate_job_on_ray(cluster, one_thread, tiny_model_path, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from selfimprove.cli import app

    ran = spy_on_pool(monkeypatch)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(f'{{"prompt": "What is {i} + 4?"}}\n' for i in range(5)))
    base = ["generate", "sample", "--input", str(rows), "--model", str(tiny_model_path), "--set", "sampling.n=2", "--set", "sampling.max_tokens=6",
            "--set", "shard_size=2", "--json"]
    r1 = CliRunner().invoke(app, base + ["-o", str(tmp_path / "g_ray"), "--set", "ray={num_workers: 2}"])
    r2 = CliRunner().invoke(app, base + ["-o", str(tmp_path / "g_local")])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    a, b = (read_table(tmp_path / d / "samples" / "table.parquet") for d in ("g_ray", "g_local"))
    assert len(a) == 10 and a == b
    assert ran == {"GenerateWork": 3}


def spy_on_pool(monkeypatch) -> dict:
    """Counts the shards each kind of shard work ran on a Ray pool (a job that never used Ray counts none)."""
    from selfimprove.runtime.ray_pool import WorkerPool

    ran: dict = {}
    real = WorkerPool.run

    def run(self, work, pending, on_done):
        ran[type(work).__name__] = ran.get(type(work).__name__, 0) + len(pending)
        return real(self, work, pending, on_done)

    monkeypatch.setattr(WorkerPool, "run", run)
    return ran


def test_an_error_in_a_shard_is_raised_as_itself_while_other_shards_run(cluster, tmp_path):
    """A model the workers cannot load: the stage stops with that ModelError (exit code 3 in the CLI), not a Ray
    wrapper, and not retried (it is not a lost worker)."""
    from pathlib import Path

    from selfimprove.errors import ModelError
    from selfimprove.models import ModelRef

    ctx, task = context(tmp_path, RayConfig(num_workers=2))
    sd = ctx.store.stage(1, "generate", {"test": 2}, {})
    sd.begin()
    gone = ModelRef("gone", Path(tmp_path / "no-such-model"), "fp")
    try:
        with pytest.raises(ModelError, match="no model folder"):
            generate_sharded(ctx, sd, task.load(SplitConfig(size=4, seed=1), "data"), gone, SamplingParams(max_tokens=4), 1, 1, "g")
        assert ctx.models.pool.retries == 0
    finally:
        ctx.close()


@pytest.fixture
def pipeline_yaml(tmp_path, tiny_model_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(textwrap.dedent(f"""
        name: tiny
        run_dir: {tmp_path / 'runs'}
        model: {tiny_model_path}
        iterations: 1
        task: {{name: arithmetic, options: {{digits: 1}}}}
        data:
          train: {{size: 6, seed: 1}}
          eval: {{size: 5, seed: 2}}
        backend: {{batch_size: 16}}
        generate: {{n: 3, temperature: 1.0, max_tokens: 12, shard_size: 3}}
        select: {{correct_only: false, require_finished: false, max_per_prompt: 2}}
        train: {{epochs: 1, batch_size: 4, lora: {{r: 4, alpha: 8}}}}
        eval: {{greedy: true, n: 2, max_tokens: 8, bootstrap: 50, shard_size: 2}}
    """))
    return p, tmp_path / "runs"
