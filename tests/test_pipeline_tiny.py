"""The whole loop on the tiny model: every stage's real code (generation, scoring, TRL+PEFT training,
merging, eval, report), manifest skipping on rerun, and reruns limited to what a config change touches."""

import json

import pytest
from typer.testing import CliRunner

from selfimprove.cli import app
from selfimprove.config import load_pipeline
from selfimprove.errors import StageError
from selfimprove.pipeline.loop import run_pipeline
from selfimprove.prompts import PromptLibrary
from selfimprove.store import load_dataset_table, read_table


@pytest.fixture
def pipeline(tiny_pipeline):
    return tiny_pipeline()


def test_full_loop_then_rerun_does_nothing(pipeline, tmp_path):
    cfg = load_pipeline(pipeline)
    summary = run_pipeline(cfg)
    root = tmp_path / "runs" / "tiny"
    assert [it["iteration"] for it in summary["iterations"]] == [0, 1, 2]
    for it in summary["iterations"]:
        m = it["metrics"]
        assert 0 <= m["accuracy"] <= 1 and len(m["accuracy_ci"]) == 2 and "pass@2" in m and "maj@2" in m
    it1 = summary["iterations"][1]["stages"]
    n_prompts = summary["data"]["train_prompts"]["counts"]["prompts"]
    assert n_prompts == 6  # drawn around the eval problems: exactly data.train.size
    assert summary["heldout"]["train_rows_dropped"] == 0 and summary["heldout"]["eval_problems"] == 0
    assert it1["generate"]["counts"]["samples"] == 3 * n_prompts
    assert it1["select"]["counts"]["kept"] == 2 * n_prompts
    assert it1["train"]["train"]["steps"] == -(-2 * n_prompts // 4)
    # lineage: iteration 2 sampled from iter_1's merged model
    samples = read_table(root / "iter_2" / "generate" / "table.parquet")
    assert {s["model_ref"] for s in samples} == {"iter_1"}
    assert (root / "iter_2" / "train" / "model" / "model.safetensors").exists()
    assert (root / "iter_2" / "train" / "adapter" / "adapter_config.json").exists()
    assert load_dataset_table(root / "iter_1" / "score").num_rows == 3 * n_prompts
    for name in ("report.html", "summary.json", "accuracy.png"):
        assert (root / name).exists()
    html = (root / "report.html").read_text()
    assert "Held-out metrics per iteration" in html and "data:image/png;base64" in html

    again = run_pipeline(cfg)
    flags = [s.get("skipped_this_run") for it in again["iterations"] for s in it["stages"].values()]
    assert flags and all(flags)
    assert again["iterations"][2]["metrics"] == summary["iterations"][2]["metrics"]


def test_config_change_reruns_only_downstream(pipeline, tmp_path):
    run_pipeline(load_pipeline(pipeline, ["iterations=1"]))
    again = run_pipeline(load_pipeline(pipeline, ["iterations=1", "train.learning_rate=0.001"]))
    st = again["iterations"][1]["stages"]
    assert st["generate"]["skipped_this_run"] and st["score"]["skipped_this_run"] and st["select"]["skipped_this_run"]
    assert not st["train"]["skipped_this_run"] and not st["eval"]["skipped_this_run"]
    assert again["iterations"][0]["stages"]["eval"]["skipped_this_run"]


def test_fewer_iterations_reports_only_those(pipeline, tmp_path):
    run_pipeline(load_pipeline(pipeline, ["iterations=1"]))
    assert (tmp_path / "runs" / "tiny" / "iter_1").exists()
    summary = run_pipeline(load_pipeline(pipeline, ["iterations=0"]))
    assert [it["iteration"] for it in summary["iterations"]] == [0]


def test_cli_run_and_report(pipeline, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(pipeline), "--set", "iterations=0"])
    assert res.exit_code == 0, res.output
    assert "held-out metrics" in res.output
    root = tmp_path / "runs" / "tiny"
    (root / "report.html").unlink()
    res = runner.invoke(app, ["report", str(root)])
    assert res.exit_code == 0 and (root / "report.html").exists()
    assert json.loads((root / "summary.json").read_text())["iterations"][0]["iteration"] == 0


def test_too_few_rows_is_a_clear_error(pipeline):
    cfg = load_pipeline(pipeline, ["iterations=1", "select.correct_only=true", "train.min_rows=1000"])
    with pytest.raises(StageError, match="train.min_rows"):
        run_pipeline(cfg)


def test_self_judging_scorers_in_the_loop(pipeline, tmp_path):
    """Judges whose `judge` is the policy score the samples inside the loop; their numbers reach the report."""
    scorers = ('[{name: gold}, {name: majority_vote, options: {abstain_below: 0.5}}, {name: pointwise_judge, options: {mode: logprobs}}, '
               '{name: pairwise_judge, options: {mode: logprobs}}, {name: p_true}, {name: self_loglik}]')
    cfg = load_pipeline(pipeline, ["iterations=1", f"score={scorers}", "stages=[generate, score, select, train]"])
    summary = run_pipeline(cfg)
    rows = read_table(tmp_path / "runs" / "tiny" / "iter_1" / "score" / "table.parquet")
    for col in ("judge_score", "pair_win_rate", "p_true", "loglik_mean", "vote_margin", "abstain"):
        assert all(r[col] is not None for r in rows), col
    judge = next(it for it in summary["iterations"] if it["iteration"] == 1)["stages"]["score"]["judge"]
    assert judge["scores"]["judge_score"]["n"] == len(rows) and "flip_rate" in judge["position_bias"]
    assert "p_true" in judge["agreement_with_gold"]
    html = (tmp_path / "runs" / "tiny" / "report.html").read_text()
    assert "<h2>Judges</h2>" in html and "agreement with gold" in html
    for col in ("judge_score", "pair_win_rate", "p_true", "loglik_mean"):  # every declared score column reaches the report
        assert col in judge["scores"] and f"{col} " in html, col


def test_restart_from_base_on_accumulated_data(pipeline, tmp_path):
    """`train.init: base` + `accumulate_data`: iteration 2 samples from iter_1's merged model but trains the base model
    on the rows of both iterations (the default continues from the last model on this iteration's rows)."""
    summary = run_pipeline(load_pipeline(pipeline, ["train.init=base", "train.accumulate_data=true", "stages=[generate, score, select, train]"]))
    root = tmp_path / "runs" / "tiny"
    by_k = {it["iteration"]: it["stages"] for it in summary["iterations"]}
    it1, it2 = by_k[1], by_k[2]
    assert it2["select"]["counts"]["rows"] == it1["select"]["counts"]["rows"] + it2["select"]["counts"]["rows_this_iteration"]
    assert it2["train"]["train"]["rows"] == it2["select"]["counts"]["rows"]
    manifest = json.loads((root / "iter_2" / "train" / "manifest.json").read_text())
    assert manifest["start_model"] != "iter_1" and {s["model_ref"] for s in read_table(root / "iter_2" / "generate" / "table.parquet")} == {"iter_1"}
    default = json.loads((tmp_path / "runs" / "tiny" / "iter_1" / "train" / "manifest.json").read_text())
    assert default["start_model"] == manifest["start_model"]  # both started from the base model


def test_revision_turn_and_correction_trajectories(pipeline, tmp_path):
    """`generate.revise` samples a second turn per sample (its own vote groups, its own resumable shards); the
    correction_trajectories builder trains the revision turn on [problem, first attempt, instruction]."""
    cfg = load_pipeline(pipeline, ["iterations=1", "generate.revise={n: 2, max_tokens: 6}", "select.max_per_prompt=null",
                                   "select.builder={name: correction_trajectories, options: {keep: [wrong_to_wrong, wrong_to_right]}}",
                                   "stages=[generate, score, select, train]"])
    summary = run_pipeline(cfg)
    root = tmp_path / "runs" / "tiny" / "iter_1"
    samples = read_table(root / "score" / "table.parquet")
    first = [s for s in samples if s["turn"] == 1]
    second = [s for s in samples if s["turn"] == 2]
    assert len(first) == 18 and len(second) == 2 * len(first)
    by_id = {s["sample_id"]: s for s in first}
    assert all(s["parent_id"] in by_id and s["prompt_id"] == by_id[s["parent_id"]]["prompt_id"] for s in second)
    assert all(s["num_tokens"] <= 6 for s in second) and {s["revise_instruction"] for s in second} == {PromptLibrary().render("self_correct")}
    # a prompt's revisions vote among themselves: k = 3 first attempts x 2 revisions, never mixed with turn 1
    assert all(s["vote_share"] == pytest.approx(s["vote_count"] / 6) for s in second)
    assert all(s["vote_share"] == pytest.approx(s["vote_count"] / 3) for s in first)
    it1 = {it["iteration"]: it for it in summary["iterations"]}[1]["stages"]
    counts = it1["select"]["counts"]
    assert counts["rows"] == counts["wrong_to_wrong"] + counts["wrong_to_right"] > 0
    rows = read_table(root / "select" / "table.parquet")
    r = rows[0]
    assert [m["role"] for m in r["prompt"]][-3:] == ["user", "assistant", "user"] and r["prompt"][-2]["content"] == by_id[r["parent_id"]]["completion"]
    assert it1["train"]["train"]["rows"] == len(rows)
    assert it1["generate"]["counts"]["revisions"]["samples"] == len(second)


def test_training_leaves_no_model_behind(pipeline):
    """After the train stage, no model object of the training is alive (its GPU memory can go back to the device
    before the next generator loads), and the run's generators were released."""
    import gc

    from transformers import PreTrainedModel

    from selfimprove.pipeline.loop import prepare
    from selfimprove.pipeline.plan import Iteration
    from selfimprove.pipeline.stages.data import prompts_stage

    cfg = load_pipeline(pipeline, ["iterations=1"])
    prep = prepare(cfg)
    ctx, plan = prep.ctx, prep.plan
    train_sd, _ = prompts_stage(ctx, prep.rows)
    base = ctx.models.base_model()
    it = Iteration(1, cfg.seed + 1, {"prompts": train_sd}, base, base)
    generate, score, select, train = plan.stages
    for stage in (generate, score, select):
        it.tables[stage.output] = stage.run(ctx, it)
    assert ctx.models.holds_generator  # the policy is loaded for generation
    ctx.models.release_generator()
    gc.collect()
    before = {id(o) for o in gc.get_objects() if isinstance(o, PreTrainedModel)}  # other tests' models, if any are alive
    train.run(ctx, it)
    gc.collect()
    assert not ctx.models.holds_generator
    assert [type(o).__name__ for o in gc.get_objects() if isinstance(o, PreTrainedModel) and id(o) not in before] == []


def test_a_scorer_model_does_not_outlive_its_iteration(pipeline, tmp_path, tiny_model_path):
    """A reward model scores iteration 1's samples without Ray; by the end of iteration 1's train stage it is gone,
    and iteration 2's score stage loads its own (it used to stay loaded through every train stage, one more per
    iteration)."""
    import gc

    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

    from selfimprove.pipeline.loop import prepare
    from selfimprove.pipeline.plan import Iteration
    from selfimprove.pipeline.stages.data import prompts_stage

    rm = tmp_path / "rm"
    rm_cfg = AutoConfig.from_pretrained(tiny_model_path)
    rm_cfg.num_labels = 1
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(rm_cfg).save_pretrained(rm)
    AutoTokenizer.from_pretrained(tiny_model_path).save_pretrained(rm)
    cfg = load_pipeline(pipeline, ["iterations=2", f"score=[{{name: gold}}, {{name: reward_model, options: {{model: '{rm}', batch_size: 8}}}}]"])
    prep = prepare(cfg)
    ctx = prep.ctx
    train_sd, _ = prompts_stage(ctx, prep.rows)
    gc.collect()
    before = {id(o) for o in gc.get_objects() if isinstance(o, PreTrainedModel)}  # other tests' models, if any are alive

    def alive() -> list[str]:
        gc.collect()
        return sorted(type(o).__name__ for o in gc.get_objects() if isinstance(o, PreTrainedModel) and id(o) not in before)

    current, history = ctx.models.base_model(), {}
    for k in (1, 2):
        it = Iteration(k, cfg.seed + k, {"prompts": train_sd}, current, current, history)
        for stage in prep.plan.stages:
            out = stage.run(ctx, it)
            if stage.output is not None:
                it.tables[stage.output] = out
                history.setdefault(stage.output, []).append(out)
            if stage.name == "score":
                assert "LlamaForSequenceClassification" in alive()  # the reward model scored this iteration's samples
        assert alive() == [], k  # neither the policy nor the reward model survives the train stage
        current = ctx.models.iteration_model(k)
    ctx.close()

