"""IWSI's DS weight on the tiny model: the valid-set model is trained once (cached) from prompts with gold answers,
each sample gets clip(L_valid / L_sample, 0, 2) and its deviation; the quantile and majority filters keep what IWSI's
K-Mixed filter keeps; a run without enough labelled prompts is refused with the option's name."""

import pytest

from selfimprove.config import SelectConfig, TaskConfig
from selfimprove.errors import ConfigError
from selfimprove.models import model_ref
from selfimprove.prompts import PromptLibrary
from selfimprove.scoring import make_scorer
from selfimprove.scoring.judge_base import Models, bind_scorers
from selfimprove.selection.filters import keep_quantile, select_samples
from selfimprove.tasks import make_task
from selfimprove.training.sft import train_sft


@pytest.fixture
def task():
    return make_task(TaskConfig(name="arithmetic"), PromptLibrary())


def test_ds_weight_on_the_tiny_model(tiny_model_path, tmp_path, task, monkeypatch):
    monkeypatch.setenv("SELFIMPROVE_CACHE", str(tmp_path / "cache"))
    prompts = {f"p{i}": {"prompt_id": f"p{i}", "messages": [{"role": "user", "content": f"What is {i} + {i}?"}], "reference": str(2 * i),
                         "question": f"What is {i} + {i}?"} for i in range(4)}
    samples = [{"prompt_id": f"p{i}", "sample_id": f"p{i}/{j}", "completion": text, "answer": None}
               for i in range(4) for j, text in enumerate([f"The answer is {2 * i}.", "Bananas are yellow and long, mostly."])]
    opts = {"valid_size": 2, "valid_template": "ds_valid_arithmetic", "valid_epochs": 1, "valid_lora_r": 4, "valid_lora_alpha": 8, "device": "cpu"}
    scorer = make_scorer("ds_weight", task, opts)
    models = Models({"name": "transformers", "batch_size": 8, "device": "cpu"}, cache_path=tmp_path / "requests.sqlite", finetune=train_sft)
    bind_scorers([scorer], models, model_ref(str(tiny_model_path)))
    rows = scorer.valid_rows(prompts)
    assert [r["completion"][0]["content"] for r in rows] == ["The answer is 0.", "The answer is 2."]
    res = scorer.score(prompts, samples)
    w, dev, loss = (res.columns[c] for c in ("ds_weight", "ds_deviation", "ds_loss"))
    valid = list((tmp_path / "cache" / "ds_valid").iterdir())
    assert len(valid) == 1 and (valid[0] / "model" / "config.json").exists() and (valid[0] / "adapter").exists()
    # L_valid from the cached valid-set model, recomputed with the self_loglik scorer on the same texts
    loglik = make_scorer("self_loglik", task, {"include_end": False})  # ds_weight scores the reply's tokens
    bind_scorers([loglik], models, model_ref(str(valid[0] / "model")))
    lv_rows = loglik.score({r: {"messages": rows[k]["prompt"]} for k, r in enumerate("ab")},
                           [{"prompt_id": r, "completion": rows[k]["completion"][0]["content"]} for k, r in enumerate("ab")])
    lv = -sum(lv_rows.columns["loglik_mean"]) / 2
    assert w[:4] == [None] * 4 and all("valid-set prompt" in e for e in res.errors[:4])  # p0, p1 trained the valid-set model
    for wi, di, li in zip(w[4:], dev[4:], loss[4:]):
        assert wi == pytest.approx(min(max(lv / li, 0), 2.0), rel=1e-5)
        assert di == pytest.approx(wi if wi > 1 else min(1 / wi, 5.0), rel=1e-5)
    assert res.errors[4:] == [None] * 4
    # cached: a second scorer with the same options trains nothing
    models.finetune = lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained"))
    again = make_scorer("ds_weight", task, opts)
    bind_scorers([again], models, model_ref(str(tiny_model_path)))
    assert again.score(prompts, samples).columns["ds_weight"] == pytest.approx(w)


def test_ds_weight_needs_labelled_prompts(task):
    scorer = make_scorer("ds_weight", task, {"valid_size": 3})
    with pytest.raises(ConfigError, match="ds_weight: valid_size is 3 but only 1 prompts have a gold answer"):
        scorer.valid_rows({"a": {"prompt_id": "a", "messages": [], "reference": "1"}, "b": {"prompt_id": "b", "messages": [], "reference": ""}})


def test_majority_and_quantile_filters():
    rows = [{"prompt_id": "a", "sample_id": str(i), "completion": str(i), "is_majority": i % 2 == 0, "ds_deviation": float(i)} for i in range(10)]
    rows.append({"prompt_id": "a", "sample_id": "x", "completion": "x", "is_majority": True, "ds_deviation": None})
    assert [r["sample_id"] for r in keep_quantile(rows, "ds_deviation", 0.3)] == ["0", "1", "2"]
    assert len(keep_quantile(rows, "ds_deviation", 1.0)) == 10  # a row without a value never passes
    cfg = SelectConfig(correct_only=False, require_finished=False, majority_only=True, keep_quantile={"column": "ds_deviation", "q": 0.5},
                       max_per_prompt=None)
    kept, counts = select_samples(rows, cfg, 0)
    assert [r["sample_id"] for r in kept] == ["0", "2", "4"] and counts["after_majority"] == 6 and counts["after_quantile"] == 3


def test_ds_weight_without_a_way_to_train_says_what_to_pass(task, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFIMPROVE_CACHE", str(tmp_path / "cache"))
    scorer = make_scorer("ds_weight", task, {"valid_size": 1})
    scorer.models = Models()
    with pytest.raises(ConfigError, match="finetune=selfimprove.training.sft.train_sft"):
        scorer.valid_model(model_ref("builtin:smollm2-135m-instruct"), [{"prompt_id": "a", "prompt": [], "completion": [], "weight": 1.0}])
