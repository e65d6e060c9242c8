"""`selfimprove judge` end to end with the tiny model (generate and log-prob modes, pairwise, P(True),
log-likelihood, reward model), resume after a kill, and the meta-judge's logic on scripted judgments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from selfimprove.cli import app
from selfimprove.generation.base import Completion, Generator, GeneratorInfo

runner = CliRunner()


def rows_file(tmp_path: Path, n: int = 6) -> Path:
    rows = []
    for i in range(n):
        a, b = 10 + i, 20 + i
        rows.append({"prompt": f"What is {a} + {b}?", "response": f"{a} + {b} = {a + b}. The answer is {a + b}.",
                     "response_b": f"The answer is {a + b + (i % 2)}.", "reference": str(a + b), "source": "policy" if i % 2 else "other",
                     "source_b": "other" if i % 2 else "policy", "group": i // 3})
    p = tmp_path / "rows.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def job(tmp_path: Path, scorers: list[dict], **extra) -> Path:
    p = tmp_path / "job.yaml"
    p.write_text(yaml.safe_dump({"name": "t", "scorers": scorers, "shard_size": 2, "backend": {"batch_size": 8}, **extra}))
    return p


def run_json(*args) -> dict:
    res = runner.invoke(app, ["judge", *map(str, args), "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_judge_job_with_every_model_scorer(tmp_path, tiny_model_path):
    data = rows_file(tmp_path)
    scorers = [{"name": "pointwise_judge", "options": {"n": 2, "temperature": 0.7, "max_tokens": 8}},
               {"name": "pairwise_judge", "options": {"mode": "logprobs"}},
               {"name": "p_true", "options": {"brainstorm": 2}}, {"name": "self_loglik"}]
    s = run_json(job(tmp_path, scorers), "--input", data, "--model", tiny_model_path, "-o", tmp_path / "out", "--diagnose")
    assert s["rows"] == 6
    assert s["parse_failure_rate"]["pointwise_judge"] == 1.0  # a random model writes no "Score:": counted, not zero
    assert s["parse_failure_rate"]["pairwise_judge"] == 0.0
    assert "judge_score" not in s["scores"] and s["scores"]["p_true"]["n"] == 6
    d = s["diagnostics"]
    assert 0.0 <= d["position_bias"]["flip_rate"] <= 1.0 and d["position_bias"]["pairs"] == 6
    assert d["agreement_with_gold"]["gold_rows"] == 6 and "auroc" in d["agreement_with_gold"]["p_true"]
    assert 0 <= d["agreement_with_gold"]["p_true"]["ece"] <= 1 and 0 <= d["agreement_with_gold"]["p_true"]["brier"] <= 1
    from selfimprove.store import read_table

    table = read_table(tmp_path / "out" / "results" / "table.parquet")
    r = table[0]
    assert len(r["judge_raw"]) == 2 and r["judge_scores"] == [None, None] and r["judge_parse_failures"] == 2
    assert "unparsed" in r["errors"] and r["verdict"] in ("A", "B", "tie") and r["correct"] is True
    assert r["loglik_tokens"] > 0 and r["loglik_sum"] < 0 and 0 < r["p_true"] < 1
    assert (tmp_path / "out" / "summary.md").exists()


def test_pointwise_logprob_mode_scores_every_row_and_self_preference(tmp_path, tiny_model_path):
    data = rows_file(tmp_path)
    cfg = job(tmp_path, [{"name": "pointwise_judge", "options": {"mode": "logprobs"}}],
              diagnose={"other_judge": str(tiny_model_path), "policy_source": "policy", "pass_threshold": 2.5})
    s = run_json(cfg, "--input", data, "--model", tiny_model_path, "-o", tmp_path / "out", "--diagnose")
    assert s["scores"]["judge_score"]["n"] == 6 and 0 <= s["scores"]["judge_score"]["mean"] <= 5
    sp = s["diagnostics"]["self_preference"]
    assert sp["measure"] == "score_gap" and sp["self_preference"] == pytest.approx(0.0, abs=1e-6)  # same model both times
    assert set(s["diagnostics"]["drift"]["judge_score"]["groups"]) == {"0", "1"}
    assert "kappa" in s["diagnostics"]["agreement_with_gold"]["judge_score"]


def test_bad_input_is_named(tmp_path, tiny_model_path):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"question": "q", "response": "r"}) + "\n")
    res = runner.invoke(app, ["judge", str(job(tmp_path, [{"name": "p_true"}])), "--input", str(data), "--model", str(tiny_model_path)])
    assert res.exit_code == 2 and "'prompt' not found in row 0" in " ".join(res.output.split())
    res = runner.invoke(app, ["judge", str(job(tmp_path, [{"name": "pointwise_judge", "options": {"n": 3, "temperature": 0}}])), "--input", str(data)])
    assert res.exit_code == 2 and "temperature > 0" in res.output
    res = runner.invoke(app, ["judge", str(job(tmp_path, [{"name": "pointwise_judge", "options": {"template": "nope"}}])), "--input", str(data)])
    assert res.exit_code == 2 and "no template 'nope'" in res.output


def test_killed_judge_job_resumes_without_rejudging(tmp_path, tiny_model_path):
    data = rows_file(tmp_path, n=12)
    cfg = job(tmp_path, [{"name": "pointwise_judge", "options": {"n": 1, "max_tokens": 24}}])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "selfimprove.cli", "judge", str(cfg), "--input", str(data), "--model", str(tiny_model_path), "-o", str(out)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    shards = out / "results" / "shards"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(shards.glob("shard_*.parquet"))) < 2:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(shards.glob("shard_*.parquet")))
    assert 2 <= done < 6, done
    res = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert f"resuming t: {2 * done}/12 rows already judged" in " ".join(res.stderr.split())
    manifest = json.loads((out / "results" / "manifest.json").read_text())
    assert manifest["counts"]["rows"] == 12
    assert manifest["counts"]["requests"] <= 12 * 2 - 2 * done * 2 + 4  # the finished shards' requests were not asked again
    again = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=600)
    assert json.loads(again.stdout)["rows"] == 12


def test_reward_model_scorer(tmp_path, tiny_model_path):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    rm = tmp_path / "rm"
    cfg = AutoConfig.from_pretrained(tiny_model_path)
    cfg.num_labels = 1
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(cfg).save_pretrained(rm)
    AutoTokenizer.from_pretrained(tiny_model_path).save_pretrained(rm)
    s = run_json(job(tmp_path, [{"name": "reward_model", "options": {"model": str(rm), "batch_size": 4}}]), "--input", rows_file(tmp_path),
                 "-o", tmp_path / "out", "--diagnose")
    assert s["scores"]["reward"]["n"] == 6
    assert "auroc" in s["diagnostics"]["agreement_with_gold"]["reward"]


class ScriptedJudge(Generator):
    """A test double that answers meta-judge prompts from a script (the model-free logic under test is Elo/selection)."""

    info = GeneratorInfo("scripted", "scripted")

    def __init__(self, answer):
        self.answer = answer
        self.calls = 0

    def generate(self, requests, params, progress=None):
        self.calls += len(requests)
        return [[Completion(self.answer(r.messages[-1]["content"]), 1, None, "stop")] for r in requests]


def test_meta_judge_ranks_judgments_and_picks_chosen_and_rejected(tmp_path):
    from rich.console import Console

    from selfimprove.config import ScorerConfig, TaskConfig
    from selfimprove.models import ModelRef
    from selfimprove.prompts import PromptLibrary
    from selfimprove.request_cache import RequestCache
    from selfimprove.scoring import make_scorers
    from selfimprove.tasks import make_task

    task = make_task(TaskConfig(name="freeform"), PromptLibrary())
    (meta,) = make_scorers([ScorerConfig(name="meta_judge")], task)
    quality = {"J-good": 3, "J-mid": 2, "J-bad": 1}

    def answer(prompt: str) -> str:  # prefers the better judgment, whatever its position
        a = prompt.split("<judgement_a>")[1].split("</judgement_a>")[0]
        b = prompt.split("<judgement_b>")[1].split("</judgement_b>")[0]
        return "Winner: Judgement A" if quality[a.split()[0]] > quality[b.split()[0]] else "Winner: Judgement B"

    scripted = ScriptedJudge(answer)

    class Ctx:
        request_cache = RequestCache(None)
        console = Console()

        def generator(self, model, backend=None):
            return scripted

    meta.bind(Ctx(), ModelRef("policy", "x", "fp"))
    samples = [
        {"prompt_id": "p", "completion": "r1", "judge_raw": ["J-mid Score: 3", "J-good Score: 1", "J-bad Score: 5"],
         "judge_scores": [3.0, 1.0, 5.0], "judge_var": 2.7},
        {"prompt_id": "p", "completion": "r2", "judge_raw": ["J-good Score: 2", "J-bad Score: 2"], "judge_scores": [2.0, 2.0], "judge_var": 0.0},
    ]
    res = meta.score({"p": {"question": "q"}}, samples)
    c = res.columns
    assert scripted.calls == 6  # 3 pairs of r1's judgments x both orders; r2 (lower variance) is not meta-judged
    assert c["meta_chosen"][0] == 1 and c["meta_rejected"][0] == 2
    assert c["meta_elo"][0][1] > c["meta_elo"][0][0] > c["meta_elo"][0][2]
    assert c["meta_elo"][1] is None and c["meta_battles"][0] == 6
    # judgments that give the same score are compared too (the paper's "all pairs"); skip_same_score leaves them out
    same = [dict(samples[0], judge_raw=["J-mid Score: 3", "J-good Score: 3", "J-bad Score: 5"], judge_scores=[3.0, 3.0, 5.0])]
    assert meta.score({"p": {"question": "q"}}, same).columns["meta_battles"] == [6]
    (skip,) = make_scorers([ScorerConfig(name="meta_judge", options={"skip_same_score": True})], task)
    skip.bind(Ctx(), ModelRef("policy", "x", "fp"))
    assert skip.score({"p": {"question": "q"}}, same).columns["meta_battles"] == [4]
    from selfimprove.scoring.meta_judge import hidden

    assert hidden("J-good, helpful. Score: 4") == "J-good, helpful. " and hidden("points: 3/5 ok") == " ok"
