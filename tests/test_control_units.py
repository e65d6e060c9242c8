"""The controller's parts on hand-built numbers: stop rules (each kind, patience, missing values), the label-free health
monitors and the majority drift on tables whose values are known, the choice on dev with rollback, PPI against the
reference implementation and its coverage, and in-training evaluation keeping the best checkpoint on the tiny model."""

import math

import numpy as np
import pytest

from selfimprove.config.control import StopRule
from selfimprove.control.choice import DevScore, decide
from selfimprove.control.health import entropy_bits, health, majorities, majority_drift
from selfimprove.control.rules import RuleTracker, first_firing
from selfimprove.ppi import classical_mean, imputed_mean, ppi_mean, three_estimates


def rule(**kw):
    return StopRule(metric=kw.pop("metric", "probe.answer_entropy"), **kw)


# -- rules ------------------------------------------------------------------------------------------
def test_below_above_and_patience():
    r = rule(below=0.5, patience=2)
    obs = [(1, {"probe.answer_entropy": 0.4}, set()), (2, {"probe.answer_entropy": 0.6}, set()),
           (3, {"probe.answer_entropy": 0.3}, set()), (4, {}, set()), (5, {"probe.answer_entropy": 0.2}, set())]
    fired = first_firing([r], {}, obs)
    assert fired.at == 5 and fired.value == 0.2  # 0.4 then 0.6 breaks the streak; a missing value neither counts nor breaks
    assert first_firing([rule(above=0.5)], {}, obs).at == 2
    assert first_firing([rule(below=0.1)], {}, obs) is None
    nan = [(1, {"probe.answer_entropy": math.nan}, set())]
    assert first_firing([rule(below=0.5)], {}, nan) is None


def test_drops_by_a_number_counts_from_the_best_including_the_baseline():
    r = rule(metric="probe.vote_margin", drops_by=0.2)
    obs = [(1, {"probe.vote_margin": 0.75}, set()), (2, {"probe.vote_margin": 0.6}, set())]
    assert first_firing([r], {"probe.vote_margin": 0.9}, obs).at == 2  # best 0.9 (base): 0.75 is a drop of 0.15, 0.6 of 0.3
    assert first_firing([r], {"probe.vote_margin": 0.7}, obs) is None  # best 0.75: 0.6 drops 0.15


def test_drops_by_ci_fires_on_a_significant_drop_only():
    r = rule(metric="dev.accuracy", drops_by="ci")
    t = RuleTracker([r])
    t.baseline({"dev.accuracy": 0.5})
    assert t.observe(1, {"dev.accuracy": 0.3}, set()) is None  # lower, but not beyond its interval
    assert t.observe(2, {"dev.accuracy": 0.2}, {"dev.accuracy"}).at == 2


def test_rule_descriptions():
    assert rule(below=0.1, patience=3).describe() == "probe.answer_entropy below 0.1 in 3 checks in a row"
    assert rule(metric="dev.accuracy", drops_by="ci").describe() == "dev.accuracy drops beyond its 95% interval"


# -- health -----------------------------------------------------------------------------------------
def sample(pid, cluster, tokens=10, finish="stop", majority=None):
    return {"prompt_id": pid, "cluster": cluster, "num_tokens": tokens, "finish_reason": finish, "majority_answer": majority}


def test_health_on_a_known_table():
    rows = [sample("a", 0, majority="4"), sample("a", 0, majority="4"), sample("a", 0, majority="4"), sample("a", 0, majority="4"),
            sample("b", 0, 20, majority="7"), sample("b", 0, 20, majority="7"), sample("b", 1, 20, majority="7"),
            sample("b", None, 50, "length", majority="7"),
            {**sample("b", 1, 99), "turn": 2}]  # a revision turn is not a first attempt: left out
    h = health(rows)
    assert h["prompts"] == 2 and h["distinct_answers"] == 1.5 and h["all_agree"] == 0.5
    assert h["answer_entropy"] == pytest.approx((0 + entropy_bits([2, 1])) / 2)
    assert h["vote_margin"] == pytest.approx((1.0 + 0.25) / 2) and h["vote_margin_histogram"] == [0, 1, 0, 1]
    assert h["mean_length"] == pytest.approx((4 * 10 + 3 * 20 + 50) / 8) and h["cutoff_rate"] == pytest.approx(1 / 8)
    assert health([]) == {}
    code = health([{"prompt_id": "a", "num_tokens": 5, "finish_reason": "length"}])
    assert code == {"prompts": 1, "mean_length": 5.0, "cutoff_rate": 1.0}  # no vote: lengths only


def test_majority_drift():
    before = majorities([sample("a", 0, majority="4"), sample("b", 0, majority="7"), sample("c", 0, majority=None), sample("d", 0, majority="1")])
    after = {"a": "4.0", "b": "8", "c": None, "d": None}
    same = lambda pairs: [float(x) == float(y) for x, y in pairs]  # noqa: E731
    assert majority_drift(before, after, same) == pytest.approx(2 / 3)  # a same (4 = 4.0), b changed, d lost its majority; c never had one
    assert majority_drift({"c": None}, {"c": None}, same) is None


# -- choice on dev ------------------------------------------------------------------------------------
def dev(k, right):
    per = {f"p{i}": float(i < right) for i in range(40)}
    return DevScore(k, right / 40, per)


def test_best_so_far_and_rollback():
    steps = decide([dev(0, 10), dev(1, 20), dev(2, 8), dev(3, 21)], rollback=True, resamples=500)
    assert [s.best for s in steps] == [1, 1, 3]
    assert steps[0].action(True) == "best so far" and steps[0].next_start == 1
    worse = steps[1]
    assert worse.clearly_worse and worse.next_start == 1 and worse.diff[0] == pytest.approx(-12 / 40) and worse.diff[2] < 0
    assert "rolled back, the next iteration starts from iter 1" in worse.action(True)
    assert decide([dev(0, 10), dev(1, 20), dev(2, 8)], rollback=False, resamples=500)[1].next_start == 2
    # a small dip is not beyond the paired interval: no rollback
    assert not decide([dev(0, 20), dev(1, 19)], rollback=True)[0].clearly_worse
    assert decide([dev(0, 20), dev(1, 20)], rollback=True)[0].best == 0  # ties go to the earlier model


def test_a_clearly_worse_last_iteration_is_not_chosen_rather_than_rolled_back():
    """With no iteration after it (the last, or a stop fired) there is nothing to restart: not chosen, not a rollback."""
    worse = decide([dev(0, 20), dev(1, 8)], rollback=True, resamples=500)[0]
    going_on, final = worse.to_dict(True), worse.to_dict(True, final=True)
    assert going_on["rolled_back"] and "rolled back" in going_on["action"]
    assert not final["rolled_back"] and final["action"].endswith("not chosen (the run names iter 0)")


def _write_iteration(root, k, decision):
    import json

    (root / f"iter_{k}" / "control").mkdir(parents=True)
    (root / f"iter_{k}" / "control" / "manifest.json").write_text(json.dumps({"status": "complete", "decision": decision}))


def test_summary_names_rollbacks_and_ends_where_the_run_stopped(tmp_path):
    """iter 1 clearly worse and rolled back, iter 2 the best, iter 3 clearly worse when a rule stopped the run; an iter_4
    left over from an earlier run with the same name is not this run's."""
    import json

    from selfimprove.evaluation.report import build_summary

    (tmp_path / "config.json").write_text(json.dumps({"name": "r", "iterations": 5, "control": {"keep": "best", "rollback": True}}))
    choice = lambda k, worse, rolled, best: {"iteration": k, "clearly_worse": worse, "rolled_back": rolled, "best": best}  # noqa: E731
    _write_iteration(tmp_path, 1, {"iteration": 1, "best": 0, "stop": None, "choice": choice(1, True, True, 0)})
    _write_iteration(tmp_path, 2, {"iteration": 2, "best": 2, "stop": None, "choice": choice(2, False, False, 2)})
    _write_iteration(tmp_path, 3, {"iteration": 3, "best": 2, "stop": {"reason": "dev.accuracy drops"}, "choice": choice(3, True, False, 2)})
    _write_iteration(tmp_path, 4, {"iteration": 4, "best": 4, "stop": None, "choice": choice(4, False, False, 4)})
    s = build_summary(tmp_path)
    assert [it["iteration"] for it in s["iterations"]] == [1, 2, 3]
    c = s["control"]
    assert c["chosen"]["iteration"] == 2 and c["rolled_back"] == [1] and c["clearly_worse"] == [1, 3]
    from selfimprove.evaluation.report_control import control_line

    line = control_line(s)
    assert "rolled back after iteration(s) [1]" in line and "iteration(s) [3] clearly worse on dev: not chosen" in line


def test_the_alarm_compares_with_the_model_an_iteration_started_from():
    """After a rollback iteration k starts from the best, not from k - 1: the reward-up-dev-down alarm compares with it."""
    from selfimprove.pipeline.controller import Controller, Decision

    c = Controller.__new__(Controller)
    c.decisions = [Decision(1, 1, 1, None, {}), Decision(2, 1, 1, None, {})]  # iteration 2 was rolled back to 1
    assert [c.start_of(k) for k in (1, 2, 3, 4)] == [0, 1, 1, 3]
    c.c = type("C", (), {"metric": "accuracy"})()
    scores = {1: 0.5, 2: 0.2, 3: 0.4}
    c.dev_score = lambda k: DevScore(k, scores[k], {}) if k in scores else None
    steps = [{"reward": 0.1}, {"reward": 0.2}, {"reward": 0.3}, {"reward": 0.4}]
    assert c.reward_up_dev_down(3, steps) == 1.0  # 0.4 < iter 1's 0.5 (it started there), though above iter 2's 0.2


# -- PPI ------------------------------------------------------------------------------------------------
def test_ppi_matches_the_reference_implementation():
    ppi_py = pytest.importorskip("ppi_py")
    rng = np.random.default_rng(0)
    for noise, n, big_n in ((0.2, 40, 400), (0.6, 25, 1000), (1.5, 60, 300)):
        y = rng.integers(0, 2, n).astype(float)
        yhat = np.clip(y + rng.normal(0, noise, n), 0, 1)
        yu = np.clip(rng.integers(0, 2, big_n) + rng.normal(0, noise, big_n), 0, 1)
        for lam in (None, 1.0, 0.0):
            lo, hi = ppi_py.ppi_mean_ci(y, yhat, yu, alpha=0.05, lam=lam)
            point = ppi_py.ppi_mean_pointestimate(y, yhat, yu, lam=lam)
            ours = ppi_mean(y, yhat, yu, 0.05, lam=lam)
            assert abs(ours.value - float(np.ravel(point)[0])) < 1e-6
            assert abs(ours.ci[0] - float(np.ravel(lo)[0])) < 1e-6 and abs(ours.ci[1] - float(np.ravel(hi)[0])) < 1e-6
        lo, hi = ppi_py.baselines.classical_mean_ci(y, alpha=0.05)
        assert classical_mean(y).ci == pytest.approx((lo, hi), abs=1e-6)


def test_ppi_covers_the_truth_at_its_nominal_rate():
    """1,000 simulated draws: a biased, noisy predictor; nominal 95% intervals cover the true mean 93-97% of the time, the
    pseudo-label-only interval does not (it inherits the predictor's bias), and PPI++ is tighter than gold only."""
    rng = np.random.default_rng(1)
    truth, covered, naive, widths = 0.4, 0, 0, []
    for _ in range(1000):
        big_n, n = 2000, 60
        y_all = (rng.random(big_n + n) < truth).astype(float)
        pred = np.clip(0.3 + 0.5 * y_all + rng.normal(0, 0.2, big_n + n), 0, 1)  # biased: mean about 0.5, the truth 0.4
        est = ppi_mean(y_all[:n], pred[:n], pred[n:])
        covered += est.ci[0] <= truth <= est.ci[1]
        imp = imputed_mean(pred)
        naive += imp.ci[0] <= truth <= imp.ci[1]
        gold = classical_mean(y_all[:n])
        widths.append((est.ci[1] - est.ci[0]) / (gold.ci[1] - gold.ci[0]))
    assert 930 <= covered <= 970
    assert naive < 500
    assert np.mean(widths) < 0.8


def test_three_estimates_side_by_side():
    out = three_estimates([1, 0, 1, 1], [0.9, 0.2, 0.8, 0.7], [0.9, 0.1, 0.5, 0.6, 0.7])
    assert set(out) == {"gold_only", "pseudo_only", "ppi"} and out["gold_only"]["value"] == 0.75 and out["pseudo_only"]["n_unlabelled"] == 9
    with pytest.raises(ValueError, match="4 labels but 3 predictions"):
        ppi_mean([1, 0, 1, 1], [1, 0, 1], [0.5, 0.5])


# -- in-training evaluation: the best checkpoint is the one kept --------------------------------------------
def test_in_training_evaluation_keeps_the_best_checkpoint(tiny_model_path, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file

    from selfimprove.config import SFTTrainConfig, TaskConfig
    from selfimprove.prompts import PromptLibrary
    from selfimprove.tasks import make_task
    from selfimprove.training import control as control_mod
    from selfimprove.training.control import TrainingControl
    from selfimprove.training.sft import SFTTrainer

    task = make_task(TaskConfig(name="arithmetic"), PromptLibrary())
    scripted = iter([0.5, 1.0, 0.0, 0.0, 0.0])  # steps 0, 1 (the best), 2, 3, 4
    snapshots = []

    def fake_dev_metrics(model, tokenizer, control):
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
        acc = next(scripted)
        return {"accuracy": {f"d{i}": float(i < 4 * acc) for i in range(4)}}

    monkeypatch.setattr(control_mod, "dev_metrics", fake_dev_metrics)
    rows = [{"prompt": [{"role": "user", "content": f"{i} + 1?"}], "completion": [{"role": "assistant", "content": f"The answer is {i + 1}."}]}
            for i in range(8)]
    cfg = SFTTrainConfig(epochs=2, batch_size=4, learning_rate=5e-2, device="cpu", lora={"r": 4, "alpha": 8, "dropout": 0.0})
    trainer = SFTTrainer(cfg)
    trainer.control = TrainingControl(task, dev_rows=[{"prompt_id": f"d{i}"} for i in range(4)], every=1)
    stats = trainer.train(tiny_model_path, rows, tmp_path)
    assert [c["step"] for c in stats["dev_curve"]] == [0, 1, 2, 3, 4] and stats["best_step"] == 1 and stats["restored_best"]
    logged = {s["step"]: s.get("dev/accuracy") for s in stats["per_step"]}  # each step's logs carry that step's dev accuracy
    assert logged == {c["step"]: c["accuracy"] for c in stats["dev_curve"] if c["step"] > 0} == {1: 1.0, 2: 0.0, 3: 0.0, 4: 0.0}
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    best = {n.replace(".default", ""): v for n, v in snapshots[1].items()}
    last = {n.replace(".default", ""): v for n, v in snapshots[-1].items()}
    assert set(saved) == set(best)
    assert all(torch.equal(saved[k], best[k]) for k in saved)
    assert not all(torch.equal(saved[k], last[k]) for k in saved)
    assert "kept step 1 (the best)" in trainer.monitor_report(stats)[-1]


def test_gold_slice_estimates_on_a_known_eval():
    from selfimprove.evaluation.metrics import gold_slice_estimates

    # 6 problems: greedy right on p0, p1, p2; the majority agrees with the greedy answer on p0, p1, p3 (p3 a consistent wrong)
    greedy = [{"prompt_id": f"p{i}", "answer": str(i), "correct": i < 3} for i in range(6)]
    sampled = [{"prompt_id": f"p{i}", "majority_answer": str(i) if i in (0, 1, 3) else "x"} for i in range(6)]
    same = lambda pairs: [a == b for a, b in pairs]  # noqa: E731
    est = gold_slice_estimates(greedy, sampled, 3, same)
    assert est["gold_only"]["value"] == 1.0 and est["gold_only"]["n_labelled"] == 3
    assert est["pseudo_only"]["value"] == pytest.approx(3 / 6) and est["all_gold"]["value"] == 0.5
    assert est["pseudo_label_accuracy"] == pytest.approx(4 / 6)  # p2 (right, no agreement) and p3 (agreement, wrong) disagree
    assert est["ppi"]["n_labelled"] == 3 and est["ppi"]["n_unlabelled"] == 3
    assert gold_slice_estimates(greedy, sampled, 5, same) is None  # too few problems left unlabelled


def test_gold_slice_estimates_reach_the_console_and_summary_md(capsys):
    """`selfimprove eval --set eval.gold_slice=N` shows the four estimates side by side, on the console and in summary.md."""
    from types import SimpleNamespace

    from selfimprove.cli import print_eval
    from selfimprove.evaluation.metrics import gold_slice_estimates
    from selfimprove.jobs.eval import summary_markdown

    greedy = [{"prompt_id": f"p{i}", "answer": str(i), "correct": i < 3} for i in range(6)]
    sampled = [{"prompt_id": f"p{i}", "majority_answer": str(i) if i in (0, 1, 3) else "x"} for i in range(6)]
    metrics = {"suite": "s", "model_ref": "m", "num_problems": 6, "accuracy": 0.5, "accuracy_ci": [0.1, 0.9],
               "accuracy_estimates": gold_slice_estimates(greedy, sampled, 3, lambda pairs: [a == b for a, b in pairs])}
    md = summary_markdown(SimpleNamespace(name="s"), metrics)
    assert "| gold only | 3 | 0 | 100.0 |" in md and "| pseudo-labels only | 0 | 6 | 50.0 |" in md and "| ppi++ | 3 | 3 |" in md
    print_eval(metrics)
    out = capsys.readouterr().err  # the CLI's console writes to stderr (stdout is for --json)
    assert "gold only" in out and "ppi++" in out and "pseudo-labels only" in out


def test_dev_accuracy_decodes_a_peft_model_through_its_adapters(tiny_model_path):
    """The in-training dev eval of a LoRA run (a PeftModel: forward(*args, **kwargs)) decodes with the adapters on, as
    the merged model would: the pruned CPU decoder runs on the base model PEFT injected the adapters into."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from selfimprove.generation import Request, SamplingParams
    from selfimprove.generation.hf import TransformersGenerator

    tok = AutoTokenizer.from_pretrained(tiny_model_path, padding_side="left")
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    reqs = [Request(f"p{i}", [{"role": "user", "content": f"What is {i} + 3?"}]) for i in range(3)]
    params = SamplingParams(n=1, temperature=0.0, max_tokens=8, seed=0)

    def texts(model):
        gen = TransformersGenerator.wrap(model, tok, 8)
        assert gen.prune_finished  # CPU: the pruned decoder, which reads the forward signature
        with torch.no_grad():
            return [o[0].text for o in gen.generate(reqs, params)]

    before = texts(base)
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    with_adapters = texts(peft)
    assert with_adapters == texts(peft.merge_and_unload()) and with_adapters != before


def test_reference_previous_is_the_model_the_iteration_continues_from():
    """`train.reference: previous` after a rollback is the best model the iteration restarted from, not iteration k-1's."""
    from selfimprove.pipeline.stages.train import run_reference

    class Models:
        def iteration_model(self, k):
            return f"iter_{k}"

        def base_model(self):
            return "base"

    assert run_reference(Models(), 3, "previous") == "iter_2"
    assert run_reference(Models(), 3, "previous", previous="iter_1") == "iter_1"  # iteration 2 was rolled back to 1
    assert run_reference(Models(), 3, "base", previous="iter_1") == "base"


def test_the_two_turn_dev_metrics_the_config_accepts_are_the_ones_eval_computes():
    """config.control names the self-correction metrics (config sits below evaluation); they must stay the same set."""
    from selfimprove.config.control import DEV_METRICS_TWO_TURN
    from selfimprove.evaluation.metrics import self_correction

    first = [{"prompt_id": "p", "correct": True}]
    assert set(self_correction(first, first)) == set(DEV_METRICS_TWO_TURN)
