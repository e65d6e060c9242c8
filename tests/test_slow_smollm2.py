"""The real SmolLM2-135M-Instruct on CPU: builtin resolution and a tiny quickstart (few prompts, 1 iteration)."""

import json
import textwrap

import pytest
from typer.testing import CliRunner

from selfimprove.cli import app
from selfimprove.models import BUILTINS, find_builtin_gguf, resolve_model

pytestmark = pytest.mark.slow


def test_builtin_resolves_to_cached_safetensors(builtin_model_path):
    assert (builtin_model_path / "model.safetensors").exists()
    assert (builtin_model_path / "config.json").exists()
    assert "quantization_config" not in json.loads((builtin_model_path / "config.json").read_text())
    assert resolve_model("builtin:smollm2-135m-instruct") == builtin_model_path
    assert find_builtin_gguf(BUILTINS["smollm2-135m-instruct"]).name.endswith(".gguf")


def test_tiny_quickstart_on_real_model(tmp_path):
    p = tmp_path / "q.yaml"
    p.write_text(textwrap.dedent(f"""
        name: tinyq
        run_dir: {tmp_path / 'runs'}
        model: builtin:smollm2-135m-instruct
        iterations: 1
        task: {{name: arithmetic, options: {{digits: 1}}}}
        data:
          train: {{size: 8, seed: 1}}
          eval: {{size: 8, seed: 2}}
        generate: {{n: 4, temperature: 0.5, max_tokens: 48, shard_size: 4}}
        select: {{max_per_prompt: 2}}
        train: {{epochs: 1, batch_size: 8}}
        eval: {{greedy: true, n: 2, max_tokens: 48, bootstrap: 100}}
    """))
    res = CliRunner().invoke(app, ["run", str(p)])
    assert res.exit_code == 0, res.output
    s = json.loads((tmp_path / "runs" / "tinyq" / "summary.json").read_text())
    base, it1 = s["iterations"]
    # one-digit addition: the real model answers some of these; a broken extractor/verifier gives 0
    assert base["metrics"]["accuracy"] > 0
    assert it1["stages"]["score"]["counts"]["correct"] > 0
    assert it1["stages"]["train"]["train"]["steps"] >= 1
    assert it1["metrics"]["num_problems"] == 8


def test_pointwise_judge_and_p_true_with_the_real_model(tmp_path):
    """Self-judging with SmolLM2: the rubric judge (generated, parsed or counted as a failure), the
    log-prob judge and P(True) on right and wrong answers to addition problems."""
    rows = []
    for i, (a, b) in enumerate([(12, 30), (25, 17), (40, 41), (33, 9)]):
        answer = a + b if i % 2 == 0 else a + b + 10
        rows.append({"prompt": f"What is {a} + {b}?", "response": f"{a} + {b} = {answer}. The answer is {answer}.", "reference": str(a + b)})
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scorers = "[{name: pointwise_judge, options: {n: 2, temperature: 0.7, max_tokens: 48}}, {name: p_true}]"
    res = CliRunner().invoke(app, ["judge", "pointwise", "--input", str(data), "-o", str(tmp_path / "a"), "--set", f"scorers={scorers}",
                                   "--diagnose", "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout.strip().splitlines()[-1])
    assert 0.0 <= s["parse_failure_rate"]["pointwise_judge"] <= 1.0
    assert s["scores"]["p_true"]["n"] == 4 and 0 < s["scores"]["p_true"]["mean"] < 1
    agree = s["diagnostics"]["agreement_with_gold"]
    assert agree["gold_rows"] == 4 and agree["gold_correct_rate"] == 0.5 and 0 <= agree["p_true"]["auroc"] <= 1
    res = CliRunner().invoke(app, ["judge", "pointwise", "--input", str(data), "-o", str(tmp_path / "b"), "--json",
                                   "--set", "scorers=[{name: pointwise_judge, options: {mode: logprobs}}]"])
    s = json.loads(res.stdout.strip().splitlines()[-1])
    assert s["scores"]["judge_score"]["n"] == 4 and s["parse_failure_rate"]["pointwise_judge"] == 0.0
