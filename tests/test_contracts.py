"""Column contracts: the chain generate -> score -> select -> train is checked before any model loads, and a
missing column names the step that reads it and the scorer that would write it."""

import textwrap

import pytest

from selfimprove.builders import SFTRows
from selfimprove.columns import DeclaresColumns
from selfimprove.config import ConfigError, load_pipeline
from selfimprove.pipeline.contracts import check_chain
from selfimprove.pipeline.loop import prepare

BASE = """
name: t
model: builtin:smollm2-135m-instruct
task: {name: arithmetic, options: {digits: 1}}
data:
  train: {size: 4, seed: 1}
  eval: {size: 4, seed: 2}
"""


def cfg(tmp_path, extra="", overrides=()):
    p = tmp_path / "p.yaml"
    p.write_text(textwrap.dedent(BASE + extra))
    return load_pipeline(p, list(overrides))


def test_quickstart_chain_passes_and_lists_columns(tmp_path, no_model_loads):
    ctx, _ = prepare(cfg(tmp_path))
    assert ctx.task.name == "arithmetic"


def test_no_gold_scorer_but_correct_only_fails_up_front(tmp_path, no_model_loads):
    with pytest.raises(ConfigError) as e:
        prepare(cfg(tmp_path, "score: [{name: majority_vote}]\n"))
    msg = str(e.value)
    assert msg.startswith("select.correct_only reads `correct` (written by gold)") and "turn select.correct_only off" in msg


def test_vote_share_filter_without_majority_vote(tmp_path, no_model_loads):
    with pytest.raises(ConfigError, match=r"select\.min_vote_share reads `vote_share` \(written by majority_vote\)"):
        prepare(cfg(tmp_path, "score: [{name: gold}]\nselect: {min_vote_share: 0.5}\n"))


def test_meta_judge_needs_pointwise_judge_before_it(tmp_path, no_model_loads):
    with pytest.raises(ConfigError) as e:
        prepare(cfg(tmp_path, "score: [{name: gold}, {name: meta_judge}]\n"))
    assert "score[1] (meta_judge) reads `judge_raw` (written by pointwise_judge)" in str(e.value)
    # in the right order it passes
    prepare(cfg(tmp_path, "score: [{name: gold}, {name: pointwise_judge, options: {n: 2}}, {name: meta_judge}]\n"))


def test_weighted_rows_need_a_trainer_that_takes_weights(tmp_path, no_model_loads):
    # sft takes weights: a weight column that a scorer writes passes
    prepare(cfg(tmp_path, "select: {builder: {name: sft, options: {weight_column: vote_share}}}\n"))
    # the builder's weight column must exist
    with pytest.raises(ConfigError, match=r"select\.builder \(sft\) reads `judge_score`"):
        prepare(cfg(tmp_path, "select: {builder: {name: sft, options: {weight_column: judge_score}}}\n"))

    class Unweighted(DeclaresColumns):
        name = "unweighted"
        reads = ("prompt", "completion")
        supports_weights = False
        stages = ("generate", "score", "select", "train")

    class Votes(DeclaresColumns):
        name = "votes"
        reads = ("answer",)
        writes = ("vote_share",)

    with pytest.raises(ConfigError, match="gives rows weights, but train.method unweighted trains every row with weight 1"):
        check_chain([Votes()], ["generate", "score", "select", "train"], {}, SFTRows({"weight_column": "vote_share"}), Unweighted())


def test_trainer_reading_columns_the_builder_does_not_write():
    class Pairs(DeclaresColumns):
        name = "needs_pairs"
        reads = ("chosen", "rejected")
        supports_weights = False
        stages = ("generate", "score", "select", "train")

    with pytest.raises(ConfigError, match=r"train\.method needs_pairs reads \['chosen', 'rejected'\], which select\.builder sft does not write"):
        check_chain([], ["generate", "score", "select", "train"], {}, SFTRows(), Pairs())


def test_stages_left_out_are_not_checked(tmp_path, no_model_loads):
    prepare(cfg(tmp_path, "score: [{name: majority_vote}]\nstages: [generate, score, eval]\n"))


def test_stages_follow_the_training_method(tmp_path, no_model_loads):
    with pytest.raises(ConfigError, match="stages: train needs select"):
        prepare(cfg(tmp_path, "stages: [generate, score, train, eval]\n"))


def test_select_builder_drops_rows_without_a_weight():
    rows, counts = SFTRows({"weight_column": "judge_score"}).build(
        [{"prompt_id": "p", "sample_id": f"p/{i}", "completion": "c", "model_ref": "m", "judge_score": v} for i, v in enumerate([4.0, None])],
        {"p": {"messages": [{"role": "user", "content": "q"}]}})
    assert [r["weight"] for r in rows] == [4.0] and counts == {"rows": 1, "dropped_without_weight": 1}


PROMPT_TRAINER = '''
import shutil
from selfimprove.training.base import Trainer

class CopyTrainer(Trainer):
    """A method that trains on the prompt table (as GRPO will: it generates inside training); here it copies the model."""
    name = "copy"
    reads = ("prompt_id", "messages")
    stages = ("train",)

    def train(self, model_path, rows, out_dir, progress=None):
        shutil.copytree(model_path, out_dir / "model")
        return {"steps": 0, "train_seconds": 0.0, "prompts": len(rows)}

class NeedsChosen(CopyTrainer):
    reads = ("chosen",)
'''


def test_a_method_without_select_trains_on_the_prompts(tmp_path, tiny_model_path, monkeypatch):
    """The loop builds its stage list from the method: a train-only method gets the prompt table."""
    from selfimprove.pipeline.loop import run_pipeline

    (tmp_path / "prompt_trainer.py").write_text(PROMPT_TRAINER)
    monkeypatch.syspath_prepend(str(tmp_path))
    extra = f"run_dir: {tmp_path / 'runs'}\nmodel: {tiny_model_path}\nbackend: {{batch_size: 8}}\neval: {{greedy: true, max_tokens: 4, bootstrap: 20}}\n"
    with pytest.raises(ConfigError, match="stages: generate is not a stage of train.method prompt_trainer:CopyTrainer"):
        prepare(cfg(tmp_path, extra, ["train.method=prompt_trainer:CopyTrainer", "stages=[generate, score, select, train, eval]"]))
    with pytest.raises(ConfigError, match=r"trains on the prompt table .* reads \['chosen'\]"):
        prepare(cfg(tmp_path, extra, ["train.method=prompt_trainer:NeedsChosen", "stages=[train, eval]"]))
    # without `stages:` an iteration runs the method's own stages, then eval
    summary = run_pipeline(cfg(tmp_path, extra, ["train.method=prompt_trainer:CopyTrainer"]))
    it1 = summary["iterations"][1]
    assert it1["iteration"] == 1 and sorted(it1["stages"]) == ["eval", "train"] and "accuracy" in it1["metrics"]
    manifest = (tmp_path / "runs" / "t" / "iter_1" / "train" / "manifest.json").read_text()
    assert '"prompts": 4' in manifest
