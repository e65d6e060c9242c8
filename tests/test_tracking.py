"""Trackers: a pipeline with `report_to: [tensorboard]` writes every stage's numbers per iteration (eval accuracy,
select yields, train loss) and TRL's per-step training logs as TensorBoard events; a missing tracker package or
an unknown tracker fails before any model loads; the tracker setting does not change a stage's fingerprint."""

import textwrap

import pytest

from selfimprove.config import load_pipeline
from selfimprove.errors import ConfigError
from selfimprove.runtime.tracking import check_trackers, flatten


def scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = {}
    for events in sorted(folder.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events.parent))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def test_pipeline_numbers_and_trl_steps_reach_tensorboard(tmp_path, tiny_model_path):
    pytest.importorskip("tensorboard")
    from selfimprove.pipeline.loop import run_pipeline

    p = tmp_path / "tb.yaml"
    p.write_text(textwrap.dedent(f"""
        name: tb
        run_dir: {tmp_path / 'runs'}
        model: {tiny_model_path}
        iterations: 1
        report_to: [tensorboard]
        task: {{name: arithmetic, options: {{digits: 1}}}}
        data:
          train: {{size: 4, seed: 1}}
          eval: {{size: 4, seed: 2}}
        backend: {{batch_size: 16}}
        generate: {{n: 2, temperature: 1.0, max_tokens: 8, shard_size: 4}}
        select: {{correct_only: false, require_finished: false, max_per_prompt: 2}}
        train: {{epochs: 1, batch_size: 4, lora: {{r: 4, alpha: 8}}}}
        eval: {{greedy: true, n: 2, max_tokens: 8, bootstrap: 20}}
    """))
    cfg = load_pipeline(p)
    assert cfg.train.report_to == ["tensorboard"]  # TRL's step logs follow the pipeline's trackers
    summary = run_pipeline(cfg)
    root = tmp_path / "runs" / "tb"
    ours = scalars(root / "tensorboard")
    acc = [it["metrics"]["accuracy"] for it in summary["iterations"]]
    assert ours["eval/accuracy"] == [(0, pytest.approx(acc[0])), (1, pytest.approx(acc[1]))]
    assert {"eval/accuracy_ci/low", "select/kept", "generate/samples", "train/train_loss", "train/steps"} <= set(ours)
    assert ours["select/kept"] == [(1, 8.0)]
    trl = scalars(root / "iter_1" / "train" / "trainer")
    assert "train/loss" in trl and len(trl["train/loss"]) == summary["iterations"][1]["stages"]["train"]["train"]["steps"]
    # the trackers are not part of what a stage computes: switching them off reruns nothing
    again = load_pipeline(p, ["report_to=[]"])
    summary = run_pipeline(again)
    assert all(s["skipped_this_run"] for it in summary["iterations"] for s in it["stages"].values())


def test_tracker_errors_and_flatten(monkeypatch):
    import importlib.util

    with pytest.raises(ConfigError, match="unknown tracker 'comet'"):
        check_trackers(["comet"])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # as where mlflow is not installed
    with pytest.raises(ConfigError, match=r"train.report_to: mlflow needs the mlflow package, which is not installed: pip install mlflow"):
        check_trackers(["mlflow"], "train.report_to")
    assert flatten({"a": {"b": 1, "c": float("nan")}, "d_ci": [0.1, 0.2], "e": [1, 2, 3]}) == {"a/b": 1.0, "d_ci/low": 0.1, "d_ci/high": 0.2}
