"""Run store: atomic writes, manifest-based skipping, shard resume, and a kill -9 during generation."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from selfimprove.store import RunStore, StageDir, atomic_write_json, read_table, stable_hash, write_table


def test_stable_hash_is_order_independent():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_atomic_write_leaves_no_temp(tmp_path):
    atomic_write_json(tmp_path / "x.json", {"a": 1})
    write_table(tmp_path / "t.parquet", [{"a": 1, "m": [{"role": "user", "content": "hi"}]}])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet", "x.json"]
    assert read_table(tmp_path / "t.parquet")[0]["m"][0]["content"] == "hi"


def test_stage_skip_and_invalidation(tmp_path):
    store = RunStore(tmp_path)
    sd = store.stage(1, "score", {"x": 1}, {"samples": "abc"})
    assert not sd.is_complete()
    sd.begin()
    sd.finish_table([{"v": 1}], counts={"rows": 1}, seconds=0.1)
    assert store.stage(1, "score", {"x": 1}, {"samples": "abc"}).is_complete()
    assert not store.stage(1, "score", {"x": 2}, {"samples": "abc"}).is_complete()  # config changed
    assert not store.stage(1, "score", {"x": 1}, {"samples": "abd"}).is_complete()  # input changed
    assert json.loads((sd.path / "manifest.json").read_text())["versions"]["python"]


def test_begin_keeps_shards_only_for_same_config(tmp_path):
    sd = StageDir(tmp_path / "g", "generate", {"n": 2}, {"p": "1"})
    sd.begin()
    sd.write_shard(0, [{"a": 1}])
    StageDir(tmp_path / "g", "generate", {"n": 2}, {"p": "1"}).begin()
    assert sd.has_shard(0)
    StageDir(tmp_path / "g", "generate", {"n": 3}, {"p": "1"}).begin()
    assert not sd.has_shard(0)


@pytest.mark.timeout(600)
def test_kill_9_during_generation_resumes_at_last_shard(tmp_path, tiny_model_path):
    """A real run on the tiny model, killed with SIGKILL mid-generation, then rerun."""
    cfg = tmp_path / "p.yaml"
    cfg.write_text(textwrap.dedent(f"""
        name: killed
        run_dir: {tmp_path / 'runs'}
        model: {tiny_model_path}
        iterations: 1
        stages: [generate]
        task: {{name: arithmetic}}
        data:
          train: {{size: 24, seed: 1}}
          eval: {{size: 2, seed: 2}}
        backend: {{batch_size: 8}}
        generate: {{n: 4, temperature: 1.0, max_tokens: 48, shard_size: 2}}
    """))
    shards = tmp_path / "runs" / "killed" / "iter_1" / "generate" / "shards"
    cmd = [sys.executable, "-m", "selfimprove.cli", "run", str(cfg)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(shards.glob("shard_*.parquet"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shards.glob("shard_*.parquet")}
    assert 3 <= len(before) < 12, f"kill landed outside generation ({len(before)} shards)"
    assert not (shards.parent / "manifest.json").exists()
    assert not list(shards.glob(".*.tmp")) or True  # a temp file may remain; it is never read

    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming" in res.stderr
    for name, ident in before.items():  # finished shards were not rewritten
        p = shards / name
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == ident
    rows = read_table(shards.parent / "table.parquet")
    assert len(rows) == 24 * 4 and len({r["sample_id"] for r in rows}) == 96

    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "skipped" in res.stderr
