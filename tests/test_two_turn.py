"""Two-turn GRPO (`train.turns`, SCoRe) on TRL's rollout_func: the completion TRL trains on is attempt + instruction +
revision with the instruction masked out of the loss, each reward scores both turns and combines them by SCoRe's
formula, and the KL is weighted per turn (zero for a policy equal to its reference)."""

import pytest
import torch

from selfimprove.config import ConfigError, GRPOTrainConfig, TaskConfig
from selfimprove.prompts import PromptLibrary
from selfimprove.scoring.self_check import self_verification_rates
from selfimprove.tasks import make_task
from selfimprove.training import two_turn
from selfimprove.training.grpo import GRPOTrainer
from selfimprove.training.two_turn import PerTokenBeta, TurnReward, TwoTurnRollout, turn_monitors, turn_reward


@pytest.fixture(scope="module")
def task():
    return make_task(TaskConfig(name="arithmetic"), PromptLibrary())


def test_scores_shaping_bonus_changes_the_reward_as_its_formula_says():
    """SCoRe stage II, alpha 10: wrong -> right earns 1 + alpha, right -> wrong 1 - alpha; stage I (revision only)
    ignores the attempt; an unscored turn counts 0 beside a scored one, and two unscored give no reward."""
    assert turn_reward(0.0, 1.0, 1, 1, 10) == 11.0 and turn_reward(1.0, 0.0, 1, 1, 10) == -9.0
    assert turn_reward(1.0, 1.0, 1, 1, 10) == 2.0 and turn_reward(0.0, 0.0, 1, 1, 10) == 0.0
    assert turn_reward(1.0, 0.0, 0, 1, 0) == 0.0 and turn_reward(0.0, 1.0, 0, 1, 0) == 1.0
    assert turn_reward(None, 1.0, 1, 1, 10) == 11.0 and turn_reward(None, None, 1, 1, 10) is None
    m = turn_monitors([0.0, 1.0, 1.0, 0.0, None], [1.0, 0.0, 1.0, 0.0, 1.0])
    assert m == {"turn1_reward": 0.5, "turn2_reward": 0.5, "turn_delta": 0.0, "i_to_c": 0.25, "c_to_i": 0.25}
    v = self_verification_rates(["correct", "wrong", "wrong", None], [1.0, 1.0, 0.0, 0.0])
    assert v == {"revised": 0.5, "verify_unparsed": 0.25, "verify_tpr": 0.5, "verify_tnr": 0.5}
    assert self_verification_rates(None, [1.0]) == {}


def test_a_turn_reward_scores_the_attempt_and_the_revision_and_logs_the_turns():
    calls, logged = [], {}

    def inner(prompts, completions, completion_ids=None, log_metric=None, **columns):
        calls.append((list(completions), log_metric is not None))
        return [1.0 if c == "right" else 0.0 for c in completions]

    inner.__name__ = inner.__doc__ = "gold:correct"
    reward = TurnReward(inner, first=1, second=1, shaping=10, monitor=True)
    out = reward(["p"] * 3, ["whole"] * 3, None, attempt=["wrong", "right", "right"], revision=["right", "wrong", "right"],
                 attempt_ids=[[1]] * 3, revision_ids=[[2]] * 3, log_metric=logged.__setitem__, prompt_id=["a", "a", "a"])
    assert out == [11.0, -9.0, 2.0]
    assert calls == [(["wrong", "right", "right"], False), (["right", "wrong", "right"], True)]  # the audit sees final answers
    assert logged["i_to_c"] == pytest.approx(1 / 3) and logged["c_to_i"] == pytest.approx(1 / 3) and reward.__name__ == "gold:correct"


def test_per_token_beta_weights_each_turns_kl():
    kl = torch.tensor([[0.5, 0.5, 0.0, 0.25], [1.0, 0.0, 2.0, 0.0]])
    t1 = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    t2 = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    rec = {}
    beta = PerTokenBeta(0.1 * t1 + 0.01 * t2, (t1, t2), rec.__setitem__)
    assert beta != 0.0 and torch.allclose(beta * kl, 0.1 * t1 * kl + 0.01 * t2 * kl)
    assert rec["kl_turn1"] == pytest.approx(2.0 / 3) and rec["kl_turn2"] == pytest.approx(2.25 / 3)


def test_two_turn_rollouts_on_the_tiny_model(tiny_model_path, tmp_path, task, monkeypatch):
    """The completion is the attempt's ids, the instruction (the chat template's close of the turn, the instruction as
    the user's turn, the generation prompt; env_mask 0) and the revision's ids; the turn masks the loss sees cover
    the two turns' tokens; the per-turn KL is zero at the first step (policy = reference) and logged per turn."""
    rollouts, betas = [], []
    call, init = TwoTurnRollout.__call__, PerTokenBeta.__init__

    def spy(self, prompts, trainer):
        out = call(self, prompts, trainer)
        rollouts.append((out, trainer.processing_class))
        return out

    def spy_init(self, weights, masks, record):
        betas.append((weights.clone(), masks[0].clone(), masks[1].clone()))
        init(self, weights, masks, record)

    monkeypatch.setattr(TwoTurnRollout, "__call__", spy)
    monkeypatch.setattr(PerTokenBeta, "__init__", spy_init)
    cfg = GRPOTrainConfig(rewards=[{"scorer": "gold"}], num_generations=4, batch_size=8, max_completion_length=8, max_steps=2, device="cpu",
                          lora={"r": 4, "alpha": 8, "dropout": 0.0}, turns={"first": 1, "shaping": 2, "kl": [0.5, 0.0]})
    rows = [{"prompt_id": f"p{i}", "messages": task.messages(f"What is {i} + {i}?"), "reference": str(2 * i)} for i in range(4)]
    stats = GRPOTrainer(cfg).attach(task).train(tiny_model_path, rows, tmp_path)
    instruction = task.prompts.render("self_correct")
    assert len(rollouts) == 2 and len(betas) == 2
    for (out, tok), (weights, t1, t2) in zip(rollouts, betas):
        firsts, seconds = [], []
        for ids, a, b, mask in zip(out["completion_ids"], out["attempt_ids"], out["revision_ids"], out["env_mask"]):
            m = ids[len(a):len(ids) - len(b)]
            assert ids[:len(a)] == a and ids[len(ids) - len(b):] == b and len(m) > 0
            assert mask == [1] * len(a) + [0] * len(m) + [1] * len(b)
            text = tok.decode(m)
            assert instruction in text and text.endswith("<|im_start|>assistant\n") and text.count("<|im_start|>user") == 1
            firsts.append(len(a))
            seconds.append(len(b))
        assert sorted(t1.sum(1).tolist()) == sorted(firsts) and sorted(t2.sum(1).tolist()) == sorted(seconds)
        assert torch.equal(weights, 0.5 * t1)
    steps = stats["per_step"]
    assert steps[0]["kl_turn1"] == pytest.approx(0.0, abs=1e-6) and "kl_turn2" in steps[0]
    assert {"turn1_reward", "turn2_reward", "turn_delta", "i_to_c", "c_to_i"} <= set(steps[0])


def test_turns_fail_before_any_model_loads(task):
    with pytest.raises(ConfigError, match="train.turns.template: no template 'nope'"):
        GRPOTrainer(GRPOTrainConfig(rewards=[{"scorer": "gold"}], batch_size=8, turns={"template": "nope"})).check(task)
    with pytest.raises(ValueError, match="dr_grpo"):
        GRPOTrainConfig(rewards=[{"scorer": "gold"}], batch_size=8, loss_type="dr_grpo", turns={})
    with pytest.raises(ValueError, match="do not combine"):
        GRPOTrainConfig(rewards=[{"scorer": "majority_vote"}], num_generations=4, trained_per_group=2, batch_size=8, turns={})
    assert GRPOTrainConfig(rewards=[{"scorer": "gold"}], batch_size=8, beta=0.05, turns={}).kl_per_turn() == (0.05, 0.05)
    assert two_turn.MARK not in task.prompts.render("self_correct")


def test_the_instruction_closes_the_attempt_once(tiny_model_path, task):
    """An attempt that ended with the end-of-turn token is not closed again; a cut-off one is closed by the template;
    either way attempt + instruction reads as the chat template renders the two-turn conversation."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    msgs, instruction = task.messages("What is 2 + 2?"), task.prompts.render("self_correct")
    end = tok.convert_tokens_to_ids("<|im_end|>")
    prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    whole = tok.apply_chat_template(msgs + [{"role": "assistant", "content": "4"}, {"role": "user", "content": instruction}],
                                    tokenize=False, add_generation_prompt=True)
    attempt = tok("4", add_special_tokens=False)["input_ids"]
    closed = two_turn.instruction_ids(tok, msgs, instruction, end)
    cut = two_turn.instruction_ids(tok, msgs, instruction, None)
    assert prompt + tok.decode(attempt + [end] + closed) == whole
    assert prompt + tok.decode(attempt + cut) == whole and cut[0] == end and closed[0] != end


def run_tiny_recipe(name: str, model, run_dir, *extra: str) -> dict:
    """A shipped two-turn recipe at the smallest settings on the tiny model, evaluating dev at every step."""
    from pathlib import Path

    from selfimprove.config import load_pipeline
    from selfimprove.pipeline.loop import run_pipeline

    path = Path(__file__).resolve().parents[1] / "pipelines" / f"{name}.yaml"
    return run_pipeline(load_pipeline(path, [
        f"model={model}", f"run_dir={run_dir}", "data.train.size=4", "data.eval.size=2", "data.dev.size=3", "eval.bootstrap=20",
        "eval.max_tokens=6", "control.probe=null", "control.eval_every_steps=1", "control.stop_if=[]", "train.max_steps=1",
        "train.num_generations=2", "train.batch_size=2", "train.max_completion_length=6", *extra]))


def test_score_recipe_runs_both_stages_with_two_turn_dev_control(tiny_model_path, tmp_path):
    """pipelines/score.yaml on the tiny model: iteration 1 is stage I, iteration 2 stage II (the schedule: r1 weight 1,
    shaping 10, weak KL on both turns); the in-training dev evaluation measures turn 1 and acc@t2 and chooses by acc@t2;
    the per-turn monitors reach the summary."""
    from selfimprove.store import read_json

    summary = run_tiny_recipe("score", tiny_model_path, tmp_path, "control.rollback=false")
    root = tmp_path / "score"
    turns = [read_json(root / f"iter_{k}" / "train" / "manifest.json")["config"]["train"]["turns"] for k in (1, 2)]
    keys = ("first", "second", "shaping", "kl")
    assert [turns[0][k] for k in keys] == [0.0, 1.0, 0.0, [0.1, 0.01]] and [turns[1][k] for k in keys] == [1.0, 1.0, 10.0, [0.01, 0.01]]
    for k in (1, 2):
        train = summary["iterations"][k]["stages"]["train"]["train"]
        assert all({"accuracy", "acc@t2", "delta", "delta_i2c"} <= set(c) for c in train["dev_curve"]) and len(train["dev_curve"]) == 2
        assert {"kl_turn1", "turn2_reward"} <= set(train["per_step"][0])
    assert summary["control"]["metric"] == "acc@t2"


def test_a_self_verify_rollout_revises_only_after_wrong(tiny_model_path, task):
    """Self-rewarding correction's RL rollout with a scripted generation: attempt, self-evaluation, and the instruction
    and revision only where the evaluation ends '[VERIFY] wrong'; the final answer is the revision or the attempt; the
    model's segments are the attempt (turn 1) and the evaluation and revision (turn 2), instructions masked."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    script = {"What is 1 + 1?": ["The answer is 3.", "[VERIFY] wrong", "The answer is 2."], "What is 2 + 2?": ["The answer is 4.", "[VERIFY] correct"]}

    class Trainer:
        processing_class, num_generations, eos_token_ids, chat_template_kwargs = tok, 2, [end], {}
        model = type("M", (), {"training": True})()

        def _tokenize_prompts(self, prompts):
            return [tok(tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True), add_special_tokens=False)["input_ids"]
                    for p in prompts], None, {}

        def _generate_single_turn(self, ids, images, fields, n):
            outs = []
            for x in ids:
                text = tok.decode(x)
                q = next(q for q in script if q in text)
                turn = text.count("<|im_start|>assistant") - 1
                outs.append(tok(script[q][turn], add_special_tokens=False)["input_ids"] + [end])
            return outs, None

    verify, fix = task.prompts.render("self_verify"), task.prompts.render("correct_after_verify")
    trainer = Trainer()
    prompts = [task.messages("What is 1 + 1?"), task.messages("What is 2 + 2?")]
    out = TwoTurnRollout(fix, verify)(prompts, trainer)
    assert out["verdict"] == ["wrong", "correct"]
    assert out["attempt"] == ["The answer is 3.", "The answer is 4."] and out["revision"] == ["The answer is 2.", "The answer is 4."]
    for ids, mask, segs in zip(out["completion_ids"], out["env_mask"], trainer._turn_segments):
        model_text = tok.decode([t for t, m in zip(ids, mask) if m])
        other = tok.decode([t for t, m in zip(ids, mask) if not m])
        assert verify in other and "[VERIFY]" in model_text and [t for _, _, t in segs][0] == 1 and set(t for _, _, t in segs[1:]) == {2}
        assert sum(e - s for s, e, _ in segs) == sum(mask)
    assert fix in tok.decode(out["completion_ids"][0]) and fix not in tok.decode(out["completion_ids"][1])
    assert len(trainer._turn_segments[0]) == 3 and len(trainer._turn_segments[1]) == 2


def test_self_verify_rl_recipe_runs_with_the_self_check_in_training_control(tiny_model_path, tmp_path):
    """pipelines/self_verify_rl.yaml on the tiny model: the three-turn rollouts train, the per-step self-check
    monitors are logged, the in-training dev evaluation checks and revises (acc@t2) and the eval reports self-verify."""
    summary = run_tiny_recipe("self_verify_rl", tiny_model_path, tmp_path, "eval.self_verify.max_tokens=6")
    train = summary["iterations"][1]["stages"]["train"]["train"]
    assert all({"accuracy", "acc@t2"} <= set(c) for c in train["dev_curve"])
    assert {"revised", "verify_unparsed", "kl_turn1"} <= set(train["per_step"][0])
    assert {"acc@t2", "verify_unparsed", "revised"} <= set(summary["iterations"][1]["metrics"])
