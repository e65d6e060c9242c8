"""The controller in the loop on the tiny model: the dev split is drawn apart from train and eval, evaluated after every
iteration (and the base model), the probe's label-free health is recorded, the control stage decides, summary.json
names the chosen model, a stop rule ends the run with its reason, a rerun decides the same without work; in-training
evaluation keeps the best checkpoint."""

import json

import pytest

from selfimprove.config import load_pipeline
from selfimprove.errors import ConfigError
from selfimprove.pipeline.loop import prepare, run_pipeline


@pytest.fixture
def pipeline(tiny_pipeline):
    return tiny_pipeline(eval_n=0, data_extra="dev: {size: 4, seed: 3}\n", extra="""
        control:
          probe: {size: 3, n: 3, max_tokens: 8}
    """)


def test_dev_split_is_apart_from_train_and_eval(pipeline):
    prep = prepare(load_pipeline(pipeline))
    key = prep.ctx.task.problem_key
    train, evals, dev = ({key(r) for r in rows} for rows in (prep.rows.train, prep.rows.eval, prep.rows.dev))
    assert len(dev) == 4 and len(train) == 6 and not (dev & evals) and not (dev & train) and not (train & evals)
    assert "dev -> probe -> control [keep best, rollback, 0 stop rules]" in prep.plan.describe()


def test_loop_with_dev_probe_and_control(pipeline, tmp_path):
    summary = run_pipeline(load_pipeline(pipeline))
    root = tmp_path / "runs" / "tiny"
    its = summary["iterations"]
    assert [it["iteration"] for it in its] == [0, 1, 2]
    for it in its:
        assert 0 <= it["dev"]["accuracy"] <= 1 and it["health"]["prompts"] == 3
        assert (root / f"iter_{it['iteration']}" / "dev" / "per_problem.json").exists()
    for it in its[1:]:
        d = it["decision"]
        assert d["iteration"] == it["iteration"] and d["choice"]["best"] in (0, 1, 2) and "dev.accuracy" in d["values"]
        assert "probe.answer_entropy" in d["values"] and "train.loss" in d["values"]
    assert 0 <= its[2]["decision"]["values"].get("probe.majority_drift", 0) <= 1  # none where the random model never answers
    c = summary["control"]
    devs = [it["dev"]["accuracy"] for it in its]
    assert c["chosen"]["iteration"] == devs.index(max(devs))  # the best on dev, ties to the earlier
    assert c["stopped"] is None and "never on the test set" in c["test_set"]
    assert json.loads((root / "summary.json").read_text())["control"]["chosen"] == c["chosen"]
    html = (root / "report.html").read_text()
    assert "Control: the chosen model" in html and "answer_entropy" in html

    again = run_pipeline(load_pipeline(pipeline))
    assert again["control"] == c
    assert all(s.get("skipped_this_run") for it in again["iterations"] for s in it["stages"].values())


def test_a_stop_rule_ends_the_run_with_its_reason(pipeline, tmp_path):
    summary = run_pipeline(load_pipeline(pipeline, ["control.stop_if=[{metric: probe.mean_length, above: -1}]"]))
    assert [it["iteration"] for it in summary["iterations"]] == [0, 1]
    stop = summary["control"]["stopped"]
    assert stop["metric"] == "probe.mean_length" and stop["iteration"] == 1 and "above -1" in stop["reason"]


def test_a_rule_on_the_train_set_stops_before_training(pipeline, tmp_path):
    """A rule on what training would learn from (here the judge's scores of the samples; select.* audits the same
    way) is checked after select: iteration 1 is never trained, the base model stays the chosen one, and the report
    says why."""
    judge = "score=[{name: gold}, {name: pointwise_judge, options: {mode: logprobs}}]"
    summary = run_pipeline(load_pipeline(pipeline, [judge, "control.stop_if=[{metric: judge.judge_score.mean, above: -1}]"]))
    root = tmp_path / "runs" / "tiny"
    assert (root / "iter_1" / "select" / "manifest.json").exists() and not (root / "iter_1" / "train").exists()
    c = summary["control"]
    assert c["chosen"]["iteration"] == 0 and c["stopped"]["before_training"] and "not trained" in c["stopped"]["reason"]
    assert summary["iterations"][1]["decision"]["trained"] is False and "eval" not in summary["iterations"][1]["stages"]
    assert "not trained" in (root / "report.html").read_text()


def test_rules_never_read_the_test_set_and_dev_rules_need_a_dev_split(pipeline):
    with pytest.raises(ConfigError, match="the held-out test set never chooses"):
        load_pipeline(pipeline, ["control.stop_if=[{metric: eval.accuracy, below: 0.1}]"])
    with pytest.raises(ConfigError, match="need.*a labelled dev split"):
        load_pipeline(pipeline, ["data.dev=null", "control.stop_if=[{metric: dev.accuracy, drops_by: ci}]"])
    with pytest.raises(ConfigError, match="drops_by: ci needs a dev"):
        load_pipeline(pipeline, ["control.stop_if=[{metric: probe.answer_entropy, drops_by: ci}]"])
    with pytest.raises(ConfigError, match="exactly one of below, above, drops_by"):
        load_pipeline(pipeline, ["control.stop_if=[{metric: probe.answer_entropy, below: 0.1, above: 0.5}]"])
    # choosing on a metric the dev eval does not produce would switch choosing off without a word: refused
    with pytest.raises(ConfigError, match="control.metric: 'pass@4' is not a dev metric.*the two-turn ones need eval.revise_template"):
        load_pipeline(pipeline, ["control.metric=pass@4"])
    with pytest.raises(ConfigError, match="control.metric: 'acc@t2' is not a dev metric"):
        load_pipeline(pipeline, ["control.metric=acc@t2"])
    with pytest.raises(ConfigError, match=r"control.stop_if\[0\]: drops_by: ci compares per-problem dev values: dev.pass@1"):
        load_pipeline(pipeline, ["control.stop_if=[{metric: dev.pass@1, drops_by: ci}]"])
    with pytest.raises(ConfigError, match="the dev split is scored by greedy decoding.*eval.greedy: true"):
        load_pipeline(pipeline, ["eval.greedy=false", "eval.n=2"])
    cfg = load_pipeline(pipeline, ["data.dev=null"])
    assert cfg.control.select_on == "none" and cfg.control.keep == "last" and not cfg.control.rollback
