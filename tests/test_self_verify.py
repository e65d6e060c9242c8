"""Self-rewarding correction: the `[VERIFY]` parser, the trajectory builder's D1/D2/D3 rule on a hand-built table,
the verify stage and the self-verify eval in a whole run with a scripted model (its right and wrong answers and
verdicts known), and the recipe's multi-turn rows reaching TRL."""

import sys
import textwrap
from pathlib import Path

import pytest

from selfimprove.builders.self_verify import SelfVerifyTrajectories
from selfimprove.scoring.parsers import parse_self_verify

REPO = Path(__file__).resolve().parents[1]


def test_verify_needs_gold_and_wrong_attempts_and_the_report_takes_missing_rates(tmp_path):
    """The verify stage refuses to run without the gold scorer or with select.correct_only (D1 needs wrong attempts);
    a self-verify rate missing in one iteration (no right attempts) leaves its cell empty in the report."""
    from selfimprove.config import load_pipeline
    from selfimprove.errors import ConfigError
    from selfimprove.evaluation.report import metrics_rows
    from selfimprove.pipeline.loop import prepare

    path = REPO / "pipelines" / "self_verify_correct.yaml"
    with pytest.raises(ConfigError, match="add the gold scorer"):
        prepare(load_pipeline(path, [f"run_dir={tmp_path}", "score=[{name: majority_vote}]"]))
    with pytest.raises(ConfigError, match="select.correct_only: false"):
        prepare(load_pipeline(path, [f"run_dir={tmp_path}", "select.correct_only=true"]))
    summary = {"iterations": [{"iteration": 0, "model_ref": "base", "metrics": {"acc@t2": 0.1}},
                              {"iteration": 1, "model_ref": "iter_1", "metrics": {"acc@t2": 0.2, "verify_tpr": 0.5}}]}
    headers, rows = metrics_rows(summary)
    assert rows[0][headers.index("verify_tpr")] == "" and rows[1][headers.index("verify_tpr")] != ""


def test_parse_the_last_verify_tag():
    assert parse_self_verify("Checking 2+3=5.\n[VERIFY] correct").value == "correct"
    assert parse_self_verify("If it were [VERIFY] correct... no.\n[ VERIFY ] Wrong").value == "wrong"
    assert parse_self_verify("looks fine").error and parse_self_verify("").error
    echo = 'The last line must be exactly "[VERIFY] correct" if the answer is right or "[VERIFY] wrong" if it is not.'
    assert parse_self_verify(echo).error and parse_self_verify(echo + "\n[VERIFY] correct").value == "correct"


def attempt(sid, correct, verdicts):
    return {"prompt_id": sid.split("/")[0], "sample_id": sid, "turn": 1, "completion": f"answer {sid}", "model_ref": "m", "parent_id": None,
            "correct": correct, "verify_texts": [f"eval {i} [VERIFY] {v}" for i, v in enumerate(verdicts)], "verify_verdicts": verdicts,
            "verify_instruction": "Check it.", "evaluation": None, "revise_instruction": None}


def revision(parent, j, correct, said):
    return {"prompt_id": parent.split("/")[0], "sample_id": f"{parent}/v{j}", "turn": 2, "completion": f"fix {j}", "model_ref": "m",
            "parent_id": parent, "correct": correct, "verify_texts": None, "verify_verdicts": None, "verify_instruction": "Check it.",
            "evaluation": said, "revise_instruction": "Fix it."}


def test_trajectories_follow_the_papers_three_types():
    """A wrong attempt judged wrong and then fixed is D1 (loss on the evaluation and the fix); a right attempt
    confirmed is D3 (loss on the attempt and the confirmation); a right attempt never confirmed but re-solved after a
    'wrong' is D2 (loss on the revision); no fix, no trajectory; balance caps right attempts at the wrong ones' count."""
    samples = [attempt("a/0", False, ["correct", "wrong"]), revision("a/0", 0, False, "eval 1 [VERIFY] wrong"),
               revision("a/0", 1, True, "eval 1 [VERIFY] wrong"),
               attempt("b/0", True, ["wrong", "correct"]),
               attempt("c/0", True, ["wrong", None]), revision("c/0", 0, True, "eval 0 [VERIFY] wrong"),
               attempt("d/0", False, ["wrong"]), revision("d/0", 0, False, "eval 0 [VERIFY] wrong")]
    prompts = {p: {"messages": [{"role": "user", "content": f"problem {p}"}]} for p in "abcd"}
    rows, counts = SelfVerifyTrajectories({"balance": False}).build(samples, prompts)
    by = {r["sample_id"]: r for r in rows}
    assert {k: counts[k] for k in ("D1", "D2", "D3", "no_trajectory_wrong", "rows")} == {"D1": 1, "D2": 1, "D3": 1, "no_trajectory_wrong": 1, "rows": 3}
    d1, d3, d2 = by["a/0"], by["b/0"], by["c/0"]
    assert d1["trajectory"] == "D1" and [m["content"] for m in d1["prompt"]] == ["problem a", "answer a/0", "Check it."]
    assert [(m["role"], m["content"]) for m in d1["completion"]] == [("assistant", "eval 1 [VERIFY] wrong"), ("user", "Fix it."), ("assistant", "fix 1")]
    assert d3["trajectory"] == "D3" and [m["content"] for m in d3["completion"]] == ["answer b/0", "Check it.", "eval 1 [VERIFY] correct"]
    assert d2["trajectory"] == "D2" and [m["content"] for m in d2["prompt"]][-2:] == ["eval 0 [VERIFY] wrong", "Fix it."]
    assert d2["completion"] == [{"role": "assistant", "content": "fix 0"}]
    # balance: 1 wrong-attempt trajectory, so 1 right one, a seeded draw (both seeds' picks seen), applied after the cap
    kept = set()
    for seed in range(8):
        rows, counts = SelfVerifyTrajectories({"seed": seed}).build(samples, prompts)
        assert [r["trajectory"] for r in rows][0] == "D1" and len(rows) == 2 and counts["balanced_out"] == 1
        assert counts["D1"] == 1 and counts["D2"] + counts["D3"] == 1 and counts["rows"] == 2
        kept.add(rows[1]["trajectory"])
    assert kept == {"D2", "D3"}
    more = samples + [attempt("a/1", False, ["wrong"]), revision("a/1", 0, True, "eval 0 [VERIFY] wrong")]  # a 2nd D1, same problem
    rows, counts = SelfVerifyTrajectories({"max_per_prompt": 1}).build(more, prompts)
    assert counts["over_cap"] == 1 and counts["D1"] == 1 and counts["D2"] + counts["D3"] == 1  # balanced after the cap
    right_first = [attempt("b/1", True, ["correct"]), attempt("b/2", False, ["wrong"]), revision("b/2", 0, True, "eval 0 [VERIFY] wrong")]
    rows, counts = SelfVerifyTrajectories({"max_per_prompt": 1, "balance": False}).build(right_first, prompts)
    assert [r["sample_id"] for r in rows] == ["b/2"] and counts["over_cap"] == 1  # the cap keeps the D1 before an earlier D3


SCRIPTED = textwrap.dedent('''
    import re
    from selfimprove.generation.base import Completion, Generator, GeneratorInfo

    class Scripted(Generator):
        """Answers a+b right when a is even, else off by one; its self-evaluation says right answers are correct, and
        calls wrong answers wrong when a is odd and below 50 (else correct: a miss); it fixes after 'wrong'."""
        info = GeneratorInfo("scripted", "scripted")

        def __init__(self, model_path=None, backend=None, adapter=None):
            pass

        def generate(self, requests, params, progress=None):
            out = []
            for r in requests:
                a, b = map(int, re.findall(r"(\\d+) \\+ (\\d+)", r.messages[0]["content"] if r.messages[0]["role"] == "user"
                                                       else r.messages[1]["content"])[0])
                last = r.messages[-1]["content"]
                if "self-evaluation" in last and "Perform" in last:
                    said = int(re.findall(r"\\d+", r.messages[-2]["content"])[-1])
                    text = "[VERIFY] correct" if said == a + b or a >= 50 else "[VERIFY] wrong"
                elif "identify the mistake" in last:
                    text = f"The answer is {a + b}."
                else:
                    text = f"The answer is {a + b + (a % 2)}."
                out.append([Completion(text, 4, None, "stop") for _ in range(params.n)])
            return out
''')


@pytest.fixture
def scripted(tmp_path, monkeypatch):
    (tmp_path / "scripted_model.py").write_text(SCRIPTED)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "scripted_model:Scripted"
    sys.modules.pop("scripted_model", None)


def test_self_verify_correct_runs_with_a_model_whose_verdicts_are_known(scripted, tiny_model_path, tmp_path):
    """The whole recipe with the scripted model (generation) and the tiny model (training): the verify stage's rates
    per class, its revisions only after 'wrong', the builder's types, the multi-turn rows trained, and the
    self-verify eval's final answers (revised only after 'wrong'), rates and two-turn metrics."""
    from selfimprove.config import load_pipeline
    from selfimprove.pipeline.loop import run_pipeline
    from selfimprove.store import read_table

    cfg = load_pipeline(REPO / "pipelines" / "self_verify_correct.yaml", [
        f"model={tiny_model_path}", f"run_dir={tmp_path}", f"backend={{name: '{scripted}'}}", "data.train.size=16", "data.eval.size=20",
        "data.dev.size=8", "generate.n=1", "eval.bootstrap=20", "control.probe=null", "train.epochs=1", "train.max_length=160",
        "select.builder.options={balance: false}"])
    summary = run_pipeline(cfg)
    it = summary["iterations"][1]
    v = it["stages"]["verify"]["counts"]
    assert v["verify_true_positive_rate"] == 1.0 and 0 < v["verify_true_negative_rate"] < 1 and v["unparsed"] == 0
    assert v["templated_wrong"] > 0 and "templated_correct" not in v  # the recipe's templated verdicts: the misses get one
    scored = read_table(tmp_path / "self_verify_correct" / "iter_1" / "verify" / "table.parquet")
    revs = [r for r in scored if r["turn"] == 2]
    assert revs and all(r["correct"] and "[VERIFY] wrong" in r["evaluation"] for r in revs)
    rows = read_table(tmp_path / "self_verify_correct" / "iter_1" / "select" / "table.parquet")
    kinds = {r["trajectory"] for r in rows}
    assert {"D1", "D3"} <= kinds and it["stages"]["select"]["counts"]["rows"] == len(rows)
    m = summary["iterations"][0]["metrics"]
    # eval: attempts right when a is even; 'wrong' said (and fixed) for odd a < 50: acc@t2 = acc@t1 + i->c, no c->i
    assert m["verify_tpr"] == 1.0 and m["delta_c2i"] == 0.0 and m["acc@t2"] == pytest.approx(m["acc@t1"] + m["delta_i2c"])
    assert 0 < m["revised"] < 1 and m["delta_i2c"] == pytest.approx(m["revised"])
