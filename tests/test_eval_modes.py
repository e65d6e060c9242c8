"""Eval modes beyond accuracy, pass@k and maj@k: best-of-N by a column (inference-time sharpening) and test-time
critique-then-refine. (Apart from test_eval_cli.py, which the oldest-versions environment runs.)"""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from selfimprove.cli import app

runner = CliRunner()


def suite(tmp_path: Path, **cfg) -> Path:
    p = tmp_path / f"{cfg['name']}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def eval_json(*args) -> dict:
    res = runner.invoke(app, ["eval", *map(str, args), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_best_of_n_picks_each_problems_highest_sample():
    """Hand-built: p1's most likely sample is right, p2's is wrong although another is right, p3 has no value -> wrong."""
    from selfimprove.evaluation.metrics import compute_metrics

    rows = [{"prompt_id": pid, "sample_id": f"{pid}/{j}", "correct": ok, "ll": ll}
            for pid, spec in {"p1": [(False, -3.0), (True, -1.0), (False, -2.0)], "p2": [(True, -5.0), (False, -0.5), (True, -0.6)],
                              "p3": [(True, None), (True, None), (False, None)]}.items() for j, (ok, ll) in enumerate(spec)]
    m = compute_metrics(None, rows, best_of="ll", resamples=50)
    assert m["best_of@3"] == pytest.approx(1 / 3) and m["best_of_column"] == "ll" and len(m["best_of@3_ci"]) == 2
    assert m["pass@1"] == pytest.approx((1 / 3 + 2 / 3 + 2 / 3) / 3)

def test_best_of_n_by_the_models_own_likelihood_on_the_tiny_model(tmp_path, tiny_model_path):
    s = suite(tmp_path, name="tiny", task={"name": "arithmetic"}, data={"size": 4, "seed": 3}, backend={"batch_size": 8},
              eval={"greedy": False, "n": 3, "max_tokens": 8, "best_of": {"scorer": "self_loglik", "column": "loglik_sum"}})
    out = tmp_path / "out"
    m = eval_json(s, "--model", tiny_model_path, "-o", out)
    from selfimprove.store import read_table

    rows = [r for r in read_table(out / "results" / "table.parquet") if r["mode"] == "sampled"]
    assert all(isinstance(r["loglik_sum"], float) and r["loglik_sum"] < 0 for r in rows)
    best = {}
    for r in sorted(rows, key=lambda r: r["sample_id"]):
        if r["prompt_id"] not in best or r["loglik_sum"] > best[r["prompt_id"]]["loglik_sum"]:
            best[r["prompt_id"]] = r
    assert m["best_of@3"] == pytest.approx(sum(bool(r["correct"]) for r in best.values()) / 4)
    bad = suite(tmp_path, name="bad", task={"name": "arithmetic"}, data={"size": 4, "seed": 3}, eval={"n": 1, "best_of": {"column": "x"}})
    res = runner.invoke(app, ["eval", str(bad), "--model", str(tiny_model_path)])
    assert res.exit_code != 0 and "best_of chooses among the sampled completions" in res.output

def test_test_time_critique_refine_on_the_tiny_model(tmp_path, tiny_model_path):
    """Each sampled answer is critiqued and refined with its critique; the refinements' accuracy and majority vote are
    reported beside the samples' (a random model: the plumbing, not the numbers)."""
    s = suite(tmp_path, name="tiny", task={"name": "arithmetic"}, data={"size": 3, "seed": 3}, backend={"batch_size": 8},
              eval={"greedy": False, "n": 2, "max_tokens": 8, "critique_refine": {"critic_options": {"max_tokens": 8}}})
    out = tmp_path / "out"
    m = eval_json(s, "--model", tiny_model_path, "-o", out)
    assert {"refined_pass@1", "refined_pass@1_ci", "refined_maj@2", "pass@1"} <= set(m)
    from selfimprove.store import read_table

    rows = read_table(out / "results" / "table.parquet")
    refined = [r for r in rows if r["mode"] == "refined"]
    sampled = {r["sample_id"]: r for r in rows if r["mode"] == "sampled"}
    assert len(refined) == len(sampled) == 6 and all(r["parent_id"] in sampled for r in refined)
    assert m["refined_pass@1"] == pytest.approx(sum(bool(r["correct"]) for r in refined) / 6)

def test_best_of_a_column_the_samples_do_not_have_is_refused_before_generating():
    from selfimprove.config import EvalConfig
    from selfimprove.config.eval import EVAL_SAMPLE_COLUMNS
    from selfimprove.scoring.base import SAMPLE_COLUMNS
    from selfimprove.scoring.consistency import MajorityVote
    from selfimprove.scoring.verifier import GoldVerifier

    with pytest.raises(ValueError, match="best_of.column: the eval samples have no 'logprob_summ'"):
        EvalConfig(n=4, best_of={"column": "logprob_summ"})
    assert EvalConfig(n=4, best_of={"column": "logprob_sum"}).best_of.column == "logprob_sum"
    assert set(EVAL_SAMPLE_COLUMNS) <= set(SAMPLE_COLUMNS) | set(MajorityVote.writes) | set(GoldVerifier.writes)



@pytest.mark.usefixtures("no_model_loads")
def test_an_eval_modes_bad_template_or_option_fails_before_any_model_loads(tmp_path, tiny_pipeline):
    """`selfimprove eval` and `selfimprove run` check the eval's critique-refine template, its critic's options and
    best-of's scorer before anything loads (a missing template used to fail after every sample was generated)."""
    for e, msg in [({"critique_refine": {"template": "nope"}}, "eval.critique_refine.template: no template 'nope'"),
                   ({"critique_refine": {"critic_options": {"bogus": 1}}}, "bogus"),
                   ({"best_of": {"scorer": "self_loglik", "column": "loglik_sum", "options": {"bogus": 1}}}, "bogus")]:
        s = suite(tmp_path, name="tiny", task={"name": "arithmetic"}, data={"size": 3, "seed": 3}, eval={"greedy": False, "n": 2, **e})
        res = runner.invoke(app, ["eval", str(s), "--model", "builtin:smollm2-135m-instruct", "-o", str(tmp_path / "o")])
        assert res.exit_code == 2 and msg in res.output, res.output
    res = runner.invoke(app, ["run", str(tiny_pipeline()), "--set", "eval.n=2", "--set", "eval.critique_refine={template: nope}"])
    assert res.exit_code == 2 and "eval.critique_refine.template: no template 'nope'" in res.output, res.output
