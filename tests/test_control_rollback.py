"""Rollback on the real model: an iteration made worse on purpose (a row builder that trains on wrong answers: every
problem answered "1") is clearly worse on dev, so the next iteration restarts from the best model (the base
model: its samples say so), and summary.json names the base model as the chosen one."""

import textwrap

import pytest

from selfimprove.builders.sft import SFTRows
from selfimprove.config import load_pipeline
from selfimprove.pipeline.loop import run_pipeline
from selfimprove.registry import ROW_BUILDERS
from selfimprove.store import read_table


class WrongAnswers(SFTRows):
    """SFT rows whose completion states the same wrong answer for every problem."""

    name = "wrong_answers"

    def build(self, samples, prompts):
        rows, counts = super().build(samples, prompts)
        for r in rows:
            wrong = [{"role": "assistant", "content": "The answer is 1."}]
            r.update(completion=wrong, messages=r["prompt"] + wrong)
        return rows, counts


@pytest.mark.slow
def test_a_worse_iteration_is_rolled_back(tmp_path, monkeypatch):
    monkeypatch.setitem(ROW_BUILDERS._entries, "wrong_answers", f"{__name__}:WrongAnswers")
    p = tmp_path / "worse.yaml"
    p.write_text(textwrap.dedent(f"""
        name: worse
        run_dir: {tmp_path / 'runs'}
        model: builtin:smollm2-135m-instruct
        iterations: 2
        task: {{name: arithmetic, options: {{digits: 2, operations: ["+"]}}}}
        data:
          train: {{size: 16, seed: 1}}
          eval: {{size: 8, seed: 2}}
          dev: {{size: 48, seed: 3}}
        backend: {{batch_size: 64}}
        generate: {{n: 1, temperature: 0.5, max_tokens: 16}}
        score: [{{name: gold}}]
        select: {{correct_only: false, require_finished: false, max_per_prompt: 1, builder: {{name: wrong_answers}}}}
        train: {{epochs: 3, batch_size: 8, learning_rate: 1.0e-3, lora: {{r: 8, alpha: 16}}}}
        eval: {{greedy: true, n: 0, max_tokens: 64}}
    """))
    summary = run_pipeline(load_pipeline(p))
    root = tmp_path / "runs" / "worse"
    its = summary["iterations"]
    base_dev, worse_dev = its[0]["dev"]["accuracy"], its[1]["dev"]["accuracy"]
    choice = its[1]["decision"]["choice"]
    assert worse_dev < base_dev and choice["clearly_worse"] and choice["next_start"] == 0, (base_dev, worse_dev, choice)
    # iteration 2 sampled from the base model, not from the worse iter_1
    assert {s["model_ref"] for s in read_table(root / "iter_2" / "generate" / "table.parquet")} == {"builtin:smollm2-135m-instruct"}
    c = summary["control"]
    assert c["chosen"]["iteration"] == 0 and 1 in c["rolled_back"]
    assert c["chosen"]["path"] == "builtin:smollm2-135m-instruct"
