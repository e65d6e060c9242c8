"""Preference pairs by votes (ScPO): most-voted vs least-voted (or unanswered), the tau filter, vote-margin weights,
the yield counts (why a prompt gave no pair), and the label audit that never feeds training."""

import pytest

from selfimprove.config import TaskConfig
from selfimprove.prompts import PromptLibrary
from selfimprove.scoring import make_scorer
from selfimprove.selection.pairs import VotePairs
from selfimprove.tasks import make_task


@pytest.fixture(scope="module")
def scored():
    task = make_task(TaskConfig(name="arithmetic"), PromptLibrary())
    answers = {"a": ["5", "5", "5", "7", None, "5", "6", "5"],   # top 5/8, an unanswered sample
               "b": ["3", "3", "4", "4", "9", "3", "3", "3"],    # top 5/8, least-voted 9 (1/8)
               "c": ["1", "2", "3", "4", "5", "6", "7", "8"],    # top 1/8: below tau
               "d": ["2"] * 8,                                   # all agree
               "e": [None] * 8,                                  # nothing to vote on
               "f": ["1", "2", "2", "2", "1", "1", "2", "1"],    # 4-4 tie at the top: no majority, no pair
               "g": ["9", "8", "7", "7", "7", "7", "7", "8"]}    # the top answer first appears third
    samples = [{"prompt_id": pid, "sample_id": f"{pid}/{j}", "completion": f"reply {a}", "answer": a, "model_ref": "m",
                "correct": a == {"a": "5", "b": "4", "g": "7"}.get(pid)}
               for pid, ans in answers.items() for j, a in enumerate(ans)]
    res = make_scorer("majority_vote", task).score({}, samples)
    for col, values in res.columns.items():
        for s, v in zip(samples, values):
            s[col] = v
    prompts = {pid: {"messages": [{"role": "user", "content": f"question {pid}"}]} for pid in answers}
    return samples, prompts


def test_vote_pairs(scored):
    samples, prompts = scored
    rows, counts = VotePairs({"tau": 0.5}).build(samples, prompts)
    assert counts == {"prompts_in": 7, "prompts_with_pairs": 3, "all_agree": 1, "below_tau": 1, "tie": 1, "no_answer": 1, "pairs": 3,
                      "pseudo_label_accuracy": round(2 / 3, 4)}
    a, b, g = rows
    assert g["chosen"][0]["content"] == "reply 7" and g["rejected"][0]["content"] == "reply 9" and g["weight"] == (5 - 1) / 8
    assert a["chosen"] == [{"role": "assistant", "content": "reply 5"}] and a["rejected"][0]["content"] == "reply None"
    assert a["weight"] == a["margin"] == 5 / 8 and a["rejected_votes"] == 0  # unanswered: V- = 0
    assert b["rejected"][0]["content"] == "reply 9" and b["weight"] == pytest.approx((5 - 1) / 8)
    assert a["label_correct"] is True and b["label_correct"] is False  # the majority "3" is wrong on b (gold 4)
    assert a["prompt"] == [{"role": "user", "content": "question a"}]


def test_vote_pairs_options(scored):
    samples, prompts = scored
    rows, counts = VotePairs({"tau": 0.7}).build(samples, prompts)
    assert counts["pairs"] == 0 and counts["below_tau"] == 5
    rows, _ = VotePairs({"tau": 0.5, "pairs_per_prompt": 3, "weight": "constant", "unanswered_as_rejected": False}).build(samples, prompts)
    a = [r for r in rows if r["prompt_id"] == "a"]
    assert len(a) == 3 and {r["rejected"][0]["content"] for r in a} == {"reply 7", "reply 6"} and all(r["weight"] == 1.0 for r in rows)
    assert len({r["chosen_id"] for r in a}) == 3
