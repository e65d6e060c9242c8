"""Preference pairs by votes (ScPO): most-voted vs least-voted (or unanswered), the tau filter, vote-margin weights,
the yield counts (why a prompt gave no pair), and the label audit that never feeds training."""

import pytest

from selfimprove.builders.judge_pairs import JudgePairs
from selfimprove.builders.vote_pairs import VotePairs
from selfimprove.config import TaskConfig
from selfimprove.prompts import PromptLibrary
from selfimprove.scoring import make_scorer
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
                      "pseudo_label_accuracy": round(2 / 3, 4), "pair_order_accuracy": 1.0, "pairs_split_by_gold": 2}
    a, b, g = rows
    assert g["chosen"][0]["content"] == "reply 7" and g["rejected"][0]["content"] == "reply 9" and g["weight"] == (5 - 1) / 8
    assert a["chosen"] == [{"role": "assistant", "content": "reply 5"}] and a["rejected"][0]["content"] == "reply 7"
    assert a["weight"] == a["margin"] == (5 - 1) / 8 and a["rejected_votes"] == 1  # the least-voted answer, not the unanswered one
    assert b["rejected"][0]["content"] == "reply 9" and b["weight"] == pytest.approx((5 - 1) / 8)
    assert a["label_correct"] is True and b["label_correct"] is False  # the majority "3" is wrong on b (gold 4)
    assert a["prompt"] == [{"role": "user", "content": "question a"}]


def test_scpo_pairs_the_most_voted_answer_with_the_least_voted_one():
    """The issue's table: 5 votes A, 2 B, 1 cut off (no answer). ScPO's pair is A vs B with w = (5 - 2)/8 = 0.375;
    `unanswered_as_rejected: true` keeps the earlier rule, A vs the cut-off sample with w = 5/8."""
    task = make_task(TaskConfig(name="arithmetic"), PromptLibrary())
    answers = [("12", "stop")] * 5 + [("13", "stop")] * 2 + [("14", "length")]
    samples = [{"prompt_id": "p", "sample_id": f"p/{j}", "completion": f"reply {a} {fr} {j}", "answer": a, "finish_reason": fr,
                "model_ref": "m"} for j, (a, fr) in enumerate(answers)]
    res = make_scorer("majority_vote", task, {"count_unfinished": False}).score({}, samples)
    for col, values in res.columns.items():
        for s, v in zip(samples, values):
            s[col] = v
    prompts = {"p": {"messages": [{"role": "user", "content": "12?"}]}}
    (row,), counts = VotePairs({"tau": 0.5}).build(samples, prompts)
    assert row["rejected"][0]["content"].startswith("reply 13") and row["weight"] == pytest.approx(0.375) and counts["pairs"] == 1
    (old,), _ = VotePairs({"tau": 0.5, "unanswered_as_rejected": True}).build(samples, prompts)
    assert old["rejected"][0]["content"].startswith("reply 14 length") and old["weight"] == pytest.approx(0.625)


def test_vote_pairs_options(scored):
    samples, prompts = scored
    rows, counts = VotePairs({"tau": 0.7}).build(samples, prompts)
    assert counts["pairs"] == 0 and counts["below_tau"] == 5
    rows, _ = VotePairs({"tau": 0.5, "pairs_per_prompt": 3, "weight": "constant"}).build(samples, prompts)
    a = [r for r in rows if r["prompt_id"] == "a"]
    assert len(a) == 3 and {r["rejected"][0]["content"] for r in a} == {"reply 7", "reply 6"} and all(r["weight"] == 1.0 for r in rows)
    assert len({r["chosen_id"] for r in a}) == 3


def test_unfinished_samples_do_not_vote():
    """With count_unfinished off, a sample cut by max_tokens has no answer: it is a rejected candidate, not a voter,
    and a tie at the top gives no pair even when unanswered samples exist."""
    task = make_task(TaskConfig(name="arithmetic"), PromptLibrary())
    answers = {"a": [("5", "stop"), ("5", "stop"), ("7", "length"), ("7", "length"), ("7", "length"), ("5", "length")],
               "b": [("3", "stop"), ("4", "stop"), ("9", "length")]}
    samples = [{"prompt_id": pid, "sample_id": f"{pid}/{j}", "completion": f"reply {a} {fr}", "answer": a, "finish_reason": fr,
                "model_ref": "m"} for pid, ans in answers.items() for j, (a, fr) in enumerate(ans)]
    scorer = make_scorer("majority_vote", task, {"count_unfinished": False})
    assert "finish_reason" in scorer.columns().reads and "finish_reason" not in make_scorer("majority_vote", task).columns().reads
    res = scorer.score({}, samples)
    for col, values in res.columns.items():
        for s, v in zip(samples, values):
            s[col] = v
    assert [s["vote_count"] for s in samples[:6]] == [2, 2, 0, 0, 0, 0] and samples[0]["top_share"] == 2 / 6
    prompts = {pid: {"messages": [{"role": "user", "content": pid}]} for pid in answers}
    rows, counts = VotePairs({"tau": 0.3, "unanswered_as_rejected": True}).build(samples, prompts)
    assert counts["tie"] == 1 and counts["pairs"] == 1  # b: 3 and 4 tie at the top although 9 was cut off
    assert rows[0]["chosen"][0]["content"] == "reply 5 stop" and rows[0]["rejected"][0]["content"].endswith("length")
    _, counts = VotePairs({"tau": 0.3}).build(samples, prompts)
    assert counts["all_agree"] == 1 and counts["pairs"] == 0  # a: every answered sample says 5; ScPO pairs answers only


def judged(scores: dict, correct: dict | None = None):
    """Samples with judge scores (None = unparsable) and completions whose length is their index + 1."""
    samples = []
    for pid, row in scores.items():
        for j, sc in enumerate(row):
            samples.append({"prompt_id": pid, "sample_id": f"{pid}/{j}", "completion": "x" * (j + 1) if not isinstance(sc, tuple) else sc[1],
                            "model_ref": "m", "judge_score": sc[0] if isinstance(sc, tuple) else sc, "judge_var": 0.0,
                            "correct": (correct or {}).get(f"{pid}/{j}")})
    prompts = {pid: {"messages": [{"role": "user", "content": pid}]} for pid in scores}
    return samples, prompts


def test_judge_pairs_best_vs_worst_and_length_control():
    samples, prompts = judged({"a": [3.0, 5.0, 1.0, 5.0], "b": [2.0, 2.0], "c": [None, 4.0, None], "d": [4.0, 4.5]},
                              correct={"a/1": True, "a/2": False, "d/0": True, "d/1": False})
    rows, counts = JudgePairs().build(samples, prompts)
    assert counts == {"prompts_in": 4, "prompts_with_pairs": 2, "unscored": 1, "all_tie": 1, "gap_too_small": 0, "pairs": 2,
                      "pseudo_label_accuracy": 0.5, "pair_order_accuracy": 0.5, "pairs_split_by_gold": 2}
    a, d = rows
    assert (a["chosen_id"], a["rejected_id"], a["margin"], a["weight"]) == ("a/1", "a/2", 4.0, 1.0)  # first of the tied 5s
    assert (d["chosen_id"], d["rejected_id"]) == ("d/1", "d/0") and d["label_correct"] is False  # the judge preferred the wrong one
    rows, counts = JudgePairs({"min_gap": 0.5, "weight": "score_gap"}).build(samples, prompts)
    assert counts["gap_too_small"] == 1 and [r["weight"] for r in rows] == [4.0]
    # length control (rho 0.4): top band [3.4, 5] -> shortest there, bottom band [1, 2.6] -> longest there
    samples, prompts = judged({"a": [(5.0, "long correct answer"), (4.0, "short"), (1.0, "x"), (2.0, "a much longer wrong answer")]})
    rows, _ = JudgePairs({"rho": 0.4}).build(samples, prompts)
    assert rows[0]["chosen"][0]["content"] == "short" and rows[0]["rejected"][0]["content"] == "a much longer wrong answer"
    rows, _ = JudgePairs({"rho": 0.0}).build(samples, prompts)
    assert rows[0]["chosen"][0]["content"] == "long correct answer" and rows[0]["rejected"][0]["content"] == "x"
    assert JudgePairs({"score_column": "p_true"}).columns().reads[-1] == "p_true" and "judge_var" in JudgePairs().columns().optional


def test_judge_pairs_at_the_papers_resolution_drop_near_ties():
    """Expected scores 3.001 vs 3.0 are a tie at the resolution of a mean of three integer judgments (1/3) and give no
    pair; 3.4 vs 3.0 round to 3.333 vs 3.0 and pair. Without a resolution, 1e-3 differences pair (the old behaviour)."""
    samples, prompts = judged({"near": [3.001, 3.0, 3.0004], "apart": [3.0, 3.4]})
    rows, counts = JudgePairs({"resolution": 0.3333}).build(samples, prompts)
    assert counts["all_tie"] == 1 and [r["prompt_id"] for r in rows] == ["apart"]
    assert rows[0]["chosen_id"] == "apart/1" and rows[0]["margin"] == pytest.approx(0.3333, abs=1e-6)
    rows, counts = JudgePairs({}).build(samples, prompts)
    assert counts["pairs"] == 2
    rows, counts = JudgePairs({"resolution": 1}).build(samples, prompts)
    assert counts["pairs"] == 0 and counts["all_tie"] == 2  # integer scores: 3 vs 3 both times


def test_correctness_pairs():
    from selfimprove.builders.correctness_pairs import CorrectnessPairs

    verdicts = {"a": [True, False, False], "b": [True, True], "c": [False], "d": [None, None]}
    samples = [{"prompt_id": pid, "sample_id": f"{pid}/{j}", "completion": f"{pid}{j}", "model_ref": "m", "correct": v}
               for pid, vs in verdicts.items() for j, v in enumerate(vs)]
    prompts = {pid: {"messages": [{"role": "user", "content": pid}]} for pid in verdicts}
    rows, counts = CorrectnessPairs({"pairs_per_prompt": 3}).build(samples, prompts)
    assert counts == {"prompts_in": 4, "prompts_with_pairs": 1, "all_correct": 1, "none_correct": 1, "unverified": 1, "pairs": 2,
                      "pseudo_label_accuracy": 1.0, "pair_order_accuracy": 1.0, "pairs_split_by_gold": 2}
    assert [(r["chosen_id"], r["rejected_id"]) for r in rows] == [("a/0", "a/1"), ("a/0", "a/2")]


def test_correction_trajectories():
    from selfimprove.builders.trajectories import CorrectionTrajectories

    first = [("a/s0", True), ("a/s1", False), ("b/s0", None)]
    second = [("a/s0/t2s00", "a/s0", True), ("a/s0/t2s01", "a/s0", False), ("a/s1/t2s00", "a/s1", True), ("a/s1/t2s01", "a/s1", False),
              ("b/s0/t2s00", "b/s0", True), ("c/s0/t2s00", "c/s0", True)]
    samples = [{"prompt_id": sid[0], "sample_id": sid, "turn": 1, "completion": f"first {sid}", "model_ref": "m", "correct": ok,
                "parent_id": None, "revise_instruction": None} for sid, ok in first]
    samples += [{"prompt_id": sid[0], "sample_id": sid, "turn": 2, "completion": f"second {sid}", "model_ref": "m", "correct": ok,
                 "parent_id": parent, "revise_instruction": "Check it."} for sid, parent, ok in second]
    prompts = {p: {"messages": [{"role": "user", "content": f"question {p}"}]} for p in "abc"}
    rows, counts = CorrectionTrajectories().build(samples, prompts)
    assert counts == {"wrong_to_right": 1, "right_to_right": 1, "right_to_wrong": 1, "wrong_to_wrong": 1, "unverified": 1, "no_first_turn": 1,
                      "rows": 2}
    assert [(r["sample_id"], r["trajectory"]) for r in rows] == [("a/s0/t2s00", "right_to_right"), ("a/s1/t2s00", "wrong_to_right")]
    assert rows[1]["prompt"] == [{"role": "user", "content": "question a"}, {"role": "assistant", "content": "first a/s1"},
                                 {"role": "user", "content": "Check it."}]
    assert rows[1]["completion"] == [{"role": "assistant", "content": "second a/s1/t2s00"}] and rows[1]["parent_id"] == "a/s1"
    rows, _ = CorrectionTrajectories({"keep": ["wrong_to_right"], "signal": "correct", "max_per_prompt": 1}).build(samples, prompts)
    assert [r["trajectory"] for r in rows] == ["wrong_to_right"]


def test_vote_pairs_never_mix_a_prompts_turns():
    """With generate.revise, a prompt's first attempts and its revisions vote apart (majority_vote groups them by
    turn), and a pair's two sides come from one turn: the grouping is the same, turn-aware one everywhere."""
    task = make_task(TaskConfig(name="arithmetic"), PromptLibrary())
    first = ["4", "4", "4", "5"]       # turn 1: 4 wins, 5 loses
    revised = ["5", "5", "5", "4"]     # turn 2: 5 wins, 4 loses
    samples = [{"prompt_id": "p", "sample_id": f"p/{t}/{j}", "turn": t, "completion": f"turn {t} says {a}", "answer": a, "model_ref": "m",
                "parent_id": f"p/1/{j}" if t == 2 else None, "revise_instruction": "Check again." if t == 2 else None}
               for t, answers in ((1, first), (2, revised)) for j, a in enumerate(answers)]
    res = make_scorer("majority_vote", task).score({}, samples)
    for col, values in res.columns.items():
        for s, v in zip(samples, values):
            s[col] = v
    assert [s["vote_share"] for s in samples] == [0.75, 0.75, 0.75, 0.25] * 2
    rows, counts = VotePairs({"tau": 0.5}).build(samples, {"p": {"messages": [{"role": "user", "content": "q"}]}})
    assert counts["prompts_in"] == 2 and len(rows) == 2
    for r in rows:
        chosen, rejected = r["chosen"][0]["content"], r["rejected"][0]["content"]
        assert chosen[:6] == rejected[:6], (chosen, rejected)  # both sides from one turn
    revision = next(r for r in rows if r["chosen"][0]["content"].startswith("turn 2"))
    # the revision pair's prompt is the conversation it answered: problem, first attempt, instruction
    assert [m["role"] for m in revision["prompt"]] == ["user", "assistant", "user"] and revision["prompt"][-1]["content"] == "Check again."


def test_meta_judge_pairs_train_the_judge_on_its_best_and_worst_judgment():
    """Meta-Rewarding's judge pairs: the judge prompt, the meta-judge's best judgment (chosen) and worst (rejected);
    dropped when both give one score or one is too long; the class cap keeps any one chosen score under its share."""
    from selfimprove.builders.meta_judge_pairs import MetaJudgePairs

    prompt = [{"role": "user", "content": "Review the response ... Score: <points>"}]

    def s(sid, raws, scores, chosen, rejected, elo=None):
        return {"prompt_id": sid.split("/")[0], "sample_id": sid, "model_ref": "m", "judge_prompt": prompt, "judge_raw": raws,
                "judge_scores": scores, "meta_chosen": chosen, "meta_rejected": rejected, "meta_elo": elo}

    samples = [s("a/0", ["Fine. Score: 4", "Bad. Score: 1", "Ok. Score: 3"], [4.0, 1.0, 3.0], 0, 1, [1100.0, 900.0, 1000.0]),
               s("b/0", ["Score: 2", "Score: 2"], [2.0, 2.0], 0, 1),                        # same score: dropped
               s("c/0", ["word " * 300 + "Score: 5", "Score: 1"], [5.0, 1.0], 0, 1),        # too long: dropped
               s("d/0", ["Score: 3"], [3.0], None, None),                                    # never meta-judged
               s("g/0", ["Yes. Score: 4", "No. Score: 1"], [4.0, 1.0], 1, 1),               # its verdicts cancelled out
               s("e/0", ["Great. Score: 4", "Meh. Score: 2"], [4.0, 2.0], 0, 1)]
    rows, counts = MetaJudgePairs().build(samples, {})
    assert [r["chosen_id"] for r in rows] == ["a/0/judgment0", "e/0/judgment0"]
    a = rows[0]
    assert a["prompt"] == prompt and a["chosen"][0]["content"] == "Fine. Score: 4" and a["rejected"][0]["content"] == "Bad. Score: 1"
    assert a["elo_gap"] == 200.0 and a["chosen_score"] == 4.0 and a["weight"] == 1.0
    assert {k: counts[k] for k in ("same_score", "too_long", "not_meta_judged", "meta_tied", "pairs")} == {
        "same_score": 1, "too_long": 1, "not_meta_judged": 1, "meta_tied": 1, "pairs": 2}
    more = samples + [s(f"f{i}/0", [f"Score: {v}", "Score: 0"], [float(v), 0.0], 0, 1) for i, v in enumerate([4, 4, 2, 3])]
    capped, counts = MetaJudgePairs({"max_class_share": 0.4}).build(more, {})
    # chosen scores 4, 4, 4, 4, 2, 3 (6 pairs); NeMo's rule, in a seeded order: a pair is taken while its score's share
    # of those taken so far is under 0.4, so the 4s keep at most 2 (the first taken, and one once 2 and 3 are in)
    fours = sum(r["chosen_score"] == 4.0 for r in capped)
    assert {2.0, 3.0} <= {r["chosen_score"] for r in capped} and 1 <= fours <= 2 and counts["class_cap"] == 4 - fours
    from selfimprove.builders.meta_judge_pairs import class_capped

    order = [{"chosen_score": v} for v in (4, 4, 2, 3, 4, 4)]
    class Fixed:  # takes the pairs in the given order
        def sample(self, xs, k):
            return list(xs)[:k]

    assert [r["chosen_score"] for r in class_capped(order, 0.4, Fixed())] == [4, 2, 3, 4]  # 4s at 0/0, 1/1, 1/3, 2/4
    one_class = [{"chosen_score": 5.0}] * 10
    assert len(class_capped(one_class, 0.4, Fixed())) == 1  # a lone class keeps one pair (the old exact cap kept none)
    unparsed = [s("g/0", ["Score: ?", "Score: 1"], [None, 1.0], 0, 1)]
    assert MetaJudgePairs().build(unparsed, {})[1]["unscored"] == 1
