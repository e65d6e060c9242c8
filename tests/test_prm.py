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

