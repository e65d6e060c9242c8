"""The process reward model scorer (Math-Shepherd style) on the tiny model as a stand-in PRM. (Apart from
test_judge_job.py, which the oldest-versions environment runs: a PRM's forward pass is no API that moved.)"""

import pytest


def test_a_process_reward_model_scores_every_step_and_takes_the_worst(tmp_path, tiny_model_path):
    """Math-Shepherd-style PRM on the tiny model (as a stand-in PRM): one score per step, read at each step tag, and
    prm_score their minimum; a tag that is not one token is refused with the option named."""
    from selfimprove.config import TaskConfig
    from selfimprove.errors import ConfigError
    from selfimprove.prompts import PromptLibrary
    from selfimprove.scoring import make_scorer
    from selfimprove.scoring.prm import aggregate
    from selfimprove.tasks import make_task

    task = make_task(TaskConfig(name="arithmetic"), PromptLibrary())
    prm = make_scorer("prm", task, {"model": str(tiny_model_path), "step_tag": "@"})
    prompts = {"p": {"question": "12 + 30"}}
    samples = [{"prompt_id": "p", "completion": "Add the tens: 10 + 30 = 40.\nAdd the ones: 40 + 2 = 42.\n\nThe answer is 42."},
               {"prompt_id": "p", "completion": "The answer is 41."}]
    res = prm.score(prompts, samples)
    steps = res.columns["prm_steps"]
    assert [len(s) for s in steps] == [3, 1] and all(0 < v < 1 for s in steps for v in s)
    assert res.columns["prm_score"] == [min(steps[0]), steps[1][0]] and res.errors == [None, None]
    assert aggregate([0.5, 0.2], "mean") == pytest.approx(0.35) and aggregate([], "min") is None
    bad = make_scorer("prm", task, {"model": str(tiny_model_path), "step_tag": "ки two tokens"})
    with pytest.raises(ConfigError, match="step_tag"):
        bad.score(prompts, samples)



def test_bstar_score_puts_every_right_answer_above_every_wrong_one(tmp_path, tiny_model_path):
    """B-STaR's per-sample score, min-step PRM / 5 + 1[right], as `weighted_sum` over the gold and prm columns: the
    right answer ranks first whatever the PRM says; a scorer reading a column no earlier scorer writes is refused
    before any model loads, naming the scorer that would write it; a sample without a term gets no score and an error."""
    from selfimprove.config import TaskConfig
    from selfimprove.errors import ConfigError
    from selfimprove.pipeline.contracts import check_chain
    from selfimprove.prompts import PromptLibrary
    from selfimprove.scoring import make_scorer, make_scorers
    from selfimprove.scoring.apply import score_samples
    from selfimprove.selection.filters import top_k_per_prompt
    from selfimprove.tasks import make_task

    task = make_task(TaskConfig(name="arithmetic"), PromptLibrary())
    configs = [{"name": "gold"}, {"name": "prm", "options": {"model": str(tiny_model_path), "step_tag": "@"}},
               {"name": "weighted_sum", "options": {"terms": {"correct": 1.0, "prm_score": 0.2}}}]
    scorers = make_scorers(configs, task)
    check_chain(scorers, ["generate", "score"])
    prompts = {"p": {"prompt_id": "p", "question": "12 + 30", "reference": "42"}}
    samples = [{"prompt_id": "p", "sample_id": f"s{i}", "completion": c} for i, c in enumerate(
        ["The answer is 41.", "Ten plus thirty is forty.\n40 + 2 = 42.\nThe answer is 42.", "12 + 30 = 43.\nThe answer is 43."])]
    rows = score_samples(scorers, task, prompts, samples)
    assert [r["correct"] for r in rows] == [False, True, False]
    assert [r["weighted_score"] for r in rows] == pytest.approx([float(r["correct"]) + 0.2 * r["prm_score"] for r in rows])
    assert [r["sample_id"] for r in top_k_per_prompt(rows, "weighted_score", 1)] == ["s1"]
    with pytest.raises(ConfigError, match=r"score\[0\] \(weighted_sum\) reads `correct` \(written by gold\), `prm_score` \(written by prm\)"):
        check_chain(make_scorers(configs[2:], task), ["generate", "score"])
    with pytest.raises(ConfigError, match="terms"):
        make_scorer("weighted_sum", task, {"terms": {}})
    res = make_scorer("weighted_sum", task, {"terms": {"correct": 1.0}}).score(
        prompts, [{"prompt_id": "p", "correct": v} for v in (None, float("nan"), float("inf"), True, 0.5)])
    assert res.columns["weighted_score"] == [None, None, None, 1.0, 0.5] and "no finite number in correct" in res.errors[0]
    assert all(res.errors[:3]) and not any(res.errors[3:])
    with pytest.raises(ConfigError, match="finite"):
        make_scorer("weighted_sum", task, {"terms": {"correct": float("nan")}})
