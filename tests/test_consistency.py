"""Vote clustering by equivalence (not by string) and the majority-vote scorer."""

from selfimprove.config import ScorerConfig, TaskConfig
from selfimprove.prompts import PromptLibrary
from selfimprove.scoring import make_scorers
from selfimprove.scoring.consistency import cluster_answers
from selfimprove.tasks import make_task
from selfimprove.tasks.equivalence import shared_equivalence


def test_cluster_by_equivalence():
    ids = cluster_answers(["0.5", "\\frac{1}{2}", "1/2", "2", None, "2.0", "3"], shared_equivalence().same)
    assert ids[0] == ids[1] == ids[2]
    assert ids[3] == ids[5] != ids[0]
    assert ids[4] is None
    assert ids[6] not in (ids[0], ids[3])


def test_cluster_numbers_with_commas():
    ids = cluster_answers(["1,000", "1000", "1000.0", "999"], shared_equivalence().same)
    assert ids[0] == ids[1] == ids[2] != ids[3]


def _scored(answers_by_prompt):
    task = make_task(TaskConfig(name="gsm8k"), PromptLibrary())
    gold, vote = make_scorers([ScorerConfig(name="gold"), ScorerConfig(name="majority_vote")], task)
    samples, prompts = [], {}
    for pid, (ref, answers) in answers_by_prompt.items():
        prompts[pid] = {"prompt_id": pid, "reference": ref}
        for j, a in enumerate(answers):
            samples.append({"prompt_id": pid, "sample_id": f"{pid}/s{j:04d}", "completion": str(a), "answer": a})
    return samples, gold.score(prompts, samples), vote.score(prompts, samples)


def test_majority_vote_scorer():
    samples, gold, vote = _scored({"p": ("12", ["12", "12.0", "13", None]), "q": ("5", ["4", "5", "6", "7"])})
    assert gold.columns["correct"] == [True, True, False, False, False, True, False, False]
    assert vote.columns["vote_count"][:4] == [2, 2, 1, 0]
    assert vote.columns["vote_share"][:4] == [0.5, 0.5, 0.25, 0.0]
    assert vote.columns["is_majority"][:4] == [True, True, False, False]
    # all-distinct answers: the first cluster wins the tie
    assert vote.columns["is_majority"][4:] == [True, False, False, False]


def test_gold_without_reference_is_an_error_not_a_zero():
    task = make_task(TaskConfig(name="gsm8k"), PromptLibrary())
    (gold,) = make_scorers([ScorerConfig(name="gold")], task)
    res = gold.score({"p": {"reference": None}}, [{"prompt_id": "p", "answer": "3"}])
    assert res.columns["correct"] == [None]
    assert "no reference" in res.errors[0]


def test_vote_margin_runner_up_and_abstain():
    task = make_task(TaskConfig(name="gsm8k"), PromptLibrary())
    (vote,) = make_scorers([ScorerConfig(name="majority_vote", options={"abstain_below": 0.5})], task)
    answers = {"p": ["12", "12.0", "1,2", "13", "13", "\\frac{24}{2}", None, "9"], "q": ["1", "2", "3", "4"]}
    samples = [{"prompt_id": pid, "answer": a} for pid, xs in answers.items() for a in xs]
    cols = vote.score({}, samples).columns
    # p: {12, 12.0, 1,2 (a thousands comma), \frac{24}{2}} = 4 votes, 13 = 2 votes, 9 = 1, no answer = 0
    p = slice(0, 8)
    assert cols["top_share"][p] == [4 / 8] * 8
    assert cols["runner_up_share"][p] == [2 / 8] * 8
    assert cols["vote_margin"][p] == [(4 - 2) / 8] * 8
    assert cols["majority_answer"][0] == "12" and cols["abstain"][0] is False
    q = slice(8, 12)
    assert cols["vote_margin"][q] == [0.0] * 4 and cols["abstain"][q] == [True] * 4
