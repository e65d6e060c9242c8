"""Scorers as plain library objects and as TRL reward functions: no run context, TRL's calling convention
(conversational prompts/completions, dataset columns as keyword lists, trainer_state/log_* keywords), whole
groups seen by a majority vote, None where no reward exists."""

import math

import pytest

from selfimprove.config import TaskConfig
from selfimprove.generation.base import Generator, GeneratorInfo
from selfimprove.prompts import PromptLibrary
from selfimprove.scoring import make_scorer
from selfimprove.scoring.base import Scorer, ScoreResult
from selfimprove.scoring.rewards import as_reward_func
from selfimprove.tasks import make_task


@pytest.fixture(scope="module")
def task():
    return make_task(TaskConfig(name="arithmetic"), PromptLibrary())


def trl_call(fn, answers_per_prompt: dict, references: dict | None = None, **extra):
    """Call `fn` as GRPOTrainer._calculate_rewards does: one entry per completion, a prompt's copies consecutive."""
    prompts, completions, cols = [], [], {"prompt_id": [], "reference": []}
    for pid, answers in answers_per_prompt.items():
        for a in answers:
            prompts.append([{"role": "user", "content": f"question {pid}"}])
            completions.append([{"role": "assistant", "content": f"The answer is {a}."}])
            cols["prompt_id"].append(pid)
            cols["reference"].append((references or {}).get(pid, ""))
    return fn(prompts=prompts, completions=completions, completion_ids=None, trainer_state=object(), log_extra=lambda *a: None,
              log_metric=lambda *a: None, **cols, **extra)


def test_gold_verifier_reward(task):
    reward = as_reward_func(make_scorer("gold", task), "correct")
    assert reward.__name__ == "gold:correct"
    got = trl_call(reward, {"p1": ["12", "13"], "p2": ["7", "7.0"]}, {"p1": "12", "p2": "7"})
    assert got == [1.0, 0.0, 1.0, 1.0]
    # no reference: no reward (None, which TRL turns into NaN and leaves out), not a 0
    assert trl_call(reward, {"p3": ["5"]}) == [None]


def test_majority_vote_reward_sees_whole_groups(task):
    reward = as_reward_func(make_scorer("majority_vote", task), "is_majority")  # TTRL's pseudo-label reward
    got = trl_call(reward, {"a": ["3", "3", "4", "3"], "b": ["9", "8", "8", "x"]})
    assert got == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    share = as_reward_func(make_scorer("majority_vote", task), "vote_share")
    assert trl_call(share, {"a": ["3", "3", "4", "3"]}) == [0.75, 0.75, 0.25, 0.75]


def test_reward_function_receives_every_sample_of_a_group(task):
    seen = []

    class Recorder(Scorer):
        name = "recorder"
        writes = ("n_in_group",)

        def score(self, prompts, samples, progress=None):
            seen.append([s["sample_id"] for s in samples])
            sizes = {}
            for s in samples:
                sizes[s["prompt_id"]] = sizes.get(s["prompt_id"], 0) + 1
            return ScoreResult({"n_in_group": [sizes[s["prompt_id"]] for s in samples]}, [None] * len(samples))

    got = trl_call(as_reward_func(Recorder(task)), {"a": ["1"] * 4, "b": ["2"] * 4})
    assert got == [4.0] * 8 and len(seen) == 1 and len(seen[0]) == 8 and len(set(seen[0])) == 8


def test_unknown_column_is_refused(task):
    with pytest.raises(ValueError, match="writes \\['correct'\\], not 'vote_share'"):
        as_reward_func(make_scorer("gold", task), "vote_share")


class ScriptedLogprobs(Generator):
    """A backend stand-in that answers next-token log-probs: True is likely when the shown answer is 4."""

    info = GeneratorInfo("scripted", "m")

    def __init__(self):
        self.calls = 0

    def generate(self, requests, params, progress=None):
        raise AssertionError("p_true asks for log-probs only")

    def next_token_logprobs(self, requests, candidates, prefix=""):
        self.calls += len(requests)
        out = []
        for r in requests:
            likely = r.messages[-1]["content"].split("Proposed answer:")[1].split("\n")[0].strip() == "4"
            out.append({"True": math.log(0.9 if likely else 0.2), "False": math.log(0.1 if likely else 0.8)})
        return out


def test_model_scorer_as_library_object_and_reward(task):
    gen = ScriptedLogprobs()
    scorer = make_scorer("p_true", task).use(gen, fingerprint="scripted")
    reward = as_reward_func(scorer, "p_true")
    got = trl_call(reward, {"q": ["4", "5"]})
    assert [round(v, 3) for v in got] == [0.9, 0.2]
    trl_call(reward, {"q": ["4", "5"]})
    assert gen.calls == 2  # the second call was answered from the request cache


def test_unbound_model_scorer_says_how_to_bind(task):
    reward = as_reward_func(make_scorer("p_true", task), "p_true")
    with pytest.raises(RuntimeError, match="use\\(generator\\)"):
        trl_call(reward, {"q": ["4"]})


def test_models_helper_runs_a_real_backend(task, tiny_model_path):
    """A model scorer bound with the library's `Models` (no run context) on the transformers backend."""
    from selfimprove.models import model_ref
    from selfimprove.scoring.apply import score_samples
    from selfimprove.scoring.judge_base import Models, bind_scorers

    scorers = [make_scorer("gold", task), make_scorer("self_loglik", task)]
    models = Models({"batch_size": 4})
    bind_scorers(scorers, models, model_ref(str(tiny_model_path)))
    prompts = {"p": {"prompt_id": "p", "messages": [{"role": "user", "content": "2+2?"}], "question": "2+2?", "reference": "4"}}
    rows = score_samples(scorers, task, prompts, [{"prompt_id": "p", "sample_id": "p/0", "completion": "The answer is 4."}])
    models.close()
    assert rows[0]["correct"] is True and rows[0]["loglik_sum"] < 0 and rows[0]["loglik_tokens"] > 0 and rows[0]["scorer_errors"] == ""


def test_reward_values_from_numpy_and_nan():
    import numpy as np

    from selfimprove.scoring.rewards import reward_value

    assert [reward_value(v) for v in (np.bool_(True), np.float32(0.5), np.int64(2), float("nan"), [1])] == [1.0, 0.5, 2.0, None, None]


def test_models_helper_refuses_iteration_refs_outside_a_run():
    from selfimprove.config import ConfigError
    from selfimprove.scoring.judge_base import Models

    with pytest.raises(ConfigError, match="outside a run, give its folder"):
        Models().iteration_model(2)


def test_reward_functions_pickle(task):
    """TRL's asynchronous GRPO sends reward functions to another process: they must pickle (an object, not a
    closure), and the copy scores as the original. A model scorer travels unbound and says how to bind it."""
    import pickle

    reward = as_reward_func(make_scorer("majority_vote", task), "is_majority")
    copy = pickle.loads(pickle.dumps(reward))
    assert copy.__name__ == "majority_vote:is_majority"
    answers = {"p1": ["3", "3", "4"], "p2": ["1", "2", "2"]}
    assert trl_call(copy, answers) == trl_call(reward, answers) == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    judge = make_scorer("p_true", task).use(ScriptedLogprobs(), fingerprint="scripted")
    sent = pickle.loads(pickle.dumps(as_reward_func(judge, "p_true")))
    assert sent.scorer.models is None and judge.models is not None  # the original keeps its binding
    with pytest.raises(RuntimeError, match="was not bound to a model"):
        trl_call(sent, {"p1": ["3"]})


def test_a_reply_is_scored_with_its_end_of_turn_so_an_empty_one_is_not_the_likeliest(task, tiny_model_path):
    """`self_loglik` (version 2) scores log p(reply, end of turn | prompt): an empty reply costs log p(end | prompt)
    instead of scoring 0, the highest value there is (best-of-N and GRPO on it learned to say nothing)."""
    from transformers import AutoTokenizer

    from selfimprove.config import TransformersBackendConfig
    from selfimprove.generation import Request, make_generator
    from selfimprove.generation.base import end_of_turn_id

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    end = end_of_turn_id(tok)
    assert tok.convert_ids_to_tokens(end) == "<|im_end|>"
    gen = make_generator(TransformersBackendConfig(), str(tiny_model_path))
    req = [Request("p", [{"role": "user", "content": "2+2?"}])] * 2
    plain, ended = gen.score_texts(req, ["", "The answer is 4."]), gen.score_texts(req, ["", "The answer is 4."], end=True)
    as_text = gen.score_texts(req[:1], ["The answer is 4.<|im_end|>"])[0]  # the special token written out: the same ids
    gen.close()
    assert (plain[0].logprob_sum, plain[0].num_tokens) == (0.0, 0)
    assert ended[0].num_tokens == 1 and ended[0].logprob_sum < 0
    assert ended[1].num_tokens == plain[1].num_tokens + 1 and ended[1].logprob_sum < plain[1].logprob_sum
    assert ended[1].logprob_sum == pytest.approx(as_text.logprob_sum, abs=1e-4) and ended[1].num_tokens == as_text.num_tokens
    assert make_scorer("self_loglik", task).options.include_end and make_scorer("self_loglik", task).version == 2


@pytest.mark.slow
def test_the_builtin_model_does_not_find_an_empty_reply_likeliest(task, builtin_model_path):
    """On the real model, as GRPO sees it: the reward of an empty reply and of one cut off mid-sentence is below a
    finished answer's (without the end of turn, the empty reply scored 0 and won every group)."""
    from selfimprove.models import model_ref
    from selfimprove.scoring.judge_base import Models, bind_scorers

    scorer = make_scorer("self_loglik", task)
    models = Models({"batch_size": 4})
    bind_scorers([scorer], models, model_ref(str(builtin_model_path)))
    reward = as_reward_func(scorer, "loglik_sum")
    prompt = [{"role": "user", "content": "What is 23 + 45?"}]
    values = reward([prompt] * 3, ["", "23 + 45 = 68. The answer is", "23 + 45 = 68. The answer is 68."], prompt_id=["p"] * 3)
    models.close()
    assert values[2] > values[0] and values[2] > values[1], values
