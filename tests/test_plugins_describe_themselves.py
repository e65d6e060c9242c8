"""A row builder and a scorer defined only here, named in YAML as `module:Class` (no registry line, no edit anywhere
else): the builder's new skip reason and audit key reach the run report's training-signal table, and the scorer's
declared summary column reaches the run report's judge table and `selfimprove judge --diagnose` (its mean,
histogram and agreement with gold). The report and the diagnostics only iterate over what plug-ins declare."""

from __future__ import annotations

import textwrap

from test_judge_job import job, rows_file, run_json

from selfimprove.builders.base import RowBuilder
from selfimprove.builders.sft import SFTRows
from selfimprove.config import load_pipeline
from selfimprove.pipeline.loop import run_pipeline
from selfimprove.scoring.base import Scorer, ScoreResult, SummaryColumn

MODULE = __name__


class LengthScore(Scorer):
    """`length_score`: the completion's length over 100 characters, at most 1 (a stand-in for any score)."""

    name = "length_score"
    writes = ("length_score",)
    summary = {"length_score": SummaryColumn(range=(0.0, 1.0), threshold=0.5)}

    def score(self, prompts, samples, progress=None):
        return ScoreResult({"length_score": [min(len(s.get("completion") or "") / 100, 1.0) for s in samples]}, [None] * len(samples))


class EveryOtherPrompt(RowBuilder):
    """SFT rows of every other prompt: the others are skipped with a reason of its own."""

    name = "every_other_prompt"
    reads = SFTRows.reads
    writes = SFTRows.writes
    skip_reasons = {"odd_prompt": "the prompt's position in the table is odd"}
    audit = {"kept_share": "share of prompts that gave rows"}

    def build(self, samples, prompts):
        order = {pid: i for i, pid in enumerate(dict.fromkeys(s["prompt_id"] for s in samples))}
        kept = [s for s in samples if order[s["prompt_id"]] % 2 == 0]
        rows, _ = SFTRows().build(kept, prompts)
        odd = sum(1 for i in order.values() if i % 2)
        return rows, {"prompts_in": len(order), "odd_prompt": odd, "kept_share": round(1 - odd / max(len(order), 1), 4), "rows": len(rows)}


def test_a_new_builder_and_scorer_reach_the_report(tmp_path, tiny_model_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(textwrap.dedent(f"""
        name: tiny
        run_dir: {tmp_path / 'runs'}
        model: {tiny_model_path}
        iterations: 1
        task: {{name: arithmetic, options: {{digits: 1}}}}
        data:
          train: {{size: 6, seed: 1}}
          eval: {{size: 4, seed: 2}}
        backend: {{batch_size: 16}}
        generate: {{n: 2, temperature: 1.0, max_tokens: 12}}
        score: [{{name: gold}}, {{name: "{MODULE}:LengthScore"}}]
        select: {{correct_only: false, require_finished: false, builder: {{name: "{MODULE}:EveryOtherPrompt"}}}}
        train: {{epochs: 1, batch_size: 4, lora: {{r: 4, alpha: 8}}}}
        eval: {{greedy: true, max_tokens: 8, bootstrap: 50}}
    """))
    summary = run_pipeline(load_pipeline(p))
    it = next(i for i in summary["iterations"] if i["iteration"] == 1)
    assert it["stages"]["select"]["yield"] == {"skipped": {"odd_prompt": 3}, "audit": {"kept_share": 0.5},
                                               "reasons": {"odd_prompt": "the prompt's position in the table is odd"},
                                               "units": {"odd_prompt": "prompts"}}
    assert "length_score" in it["stages"]["score"]["judge"]["scores"]
    html = (tmp_path / "runs" / "tiny" / "report.html").read_text()
    assert "odd_prompt 3" in html and "kept_share 0.500" in html  # the training-signal table
    assert "length_score " in html and "AUROC" in html  # the judge table


def test_a_new_scorer_reaches_judge_diagnose(tmp_path):
    s = run_json(job(tmp_path, [{"name": f"{MODULE}:LengthScore"}]), "--input", rows_file(tmp_path), "-o", tmp_path / "out", "--diagnose")
    assert s["scores"]["length_score"]["n"] == 6 and s["scores"]["length_score"]["histogram"]
    agree = s["diagnostics"]["agreement_with_gold"]["length_score"]
    assert agree["threshold"] == 0.5 and "kappa" in agree and "auroc" in agree
    assert "length_score_vs_length_spearman" in s["diagnostics"]["length_bias"]
