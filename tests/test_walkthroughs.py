"""The walkthroughs in docs/ run as written: each page's files (a fenced block whose info string names `file=PATH`)
are written into an empty folder, and its ```bash blocks run there in order, with the real SmolLM2 on CPU. A block
marked `exit=N` must exit with N; a ```text output block that follows a command must appear in its output (each
line, whitespace-normalised)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```\s*$", re.S | re.M)


def steps(page: str) -> list[tuple[str, dict, str]]:
    """(kind, attributes, body) of each fenced block: kind `file`, `bash`, `output`, or `other`."""
    out = []
    for m in FENCE.finditer((DOCS / page).read_text()):
        words = m["info"].split()
        attrs = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        lang = words[0] if words else ""
        if "file" in attrs:
            kind = "file"
        elif lang == "bash":
            kind = "bash"
        elif lang == "text" and "output" in words[1:]:
            kind = "output"
        else:
            kind = "other"
        out.append((kind, attrs, m["body"]))
    return out


def normalise(text: str) -> str:
    return " ".join(text.split())


def run_page(page: str, folder: Path) -> list[subprocess.CompletedProcess]:
    """Write the page's files and run its commands in `folder`; every command's result, in order."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # `selfimprove`, `python` of this env
    env.pop("PYTHONPATH", None)  # a page says where its own modules come from
    env["COLUMNS"] = "200"
    results: list[subprocess.CompletedProcess] = []
    for kind, attrs, body in steps(page):
        if kind == "file":
            path = folder / attrs["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
        elif kind == "bash":
            res = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=folder, env=env, capture_output=True, text=True,
                                 timeout=1800)
            want = int(attrs.get("exit", 0))
            assert res.returncode == want, f"{page}: `{body.strip()}` exited {res.returncode}, not {want}:\n{res.stdout}\n{res.stderr}"
            results.append(res)
        elif kind == "output":
            last = results[-1]
            said = normalise(last.stdout + last.stderr)
            for line in body.splitlines():
                assert normalise(line) in said, f"{page}: {line!r} not in the output of the command before it:\n{said}"
    return results


def test_pages_have_files_commands_and_checked_outputs():
    """The parser finds what each page holds (a page that lost its blocks would pass vacuously)."""
    for page, files, outputs in (("walkthrough-first-pipeline.md", {"data/train.jsonl", "data/eval.jsonl", "my_pipeline.yaml"}, 1),
                                 ("walkthrough-scorer-reward.md", {"my_scorers.py", "try_scorer.py", "format_grpo.yaml"}, 2)):
        found = steps(page)
        assert {a["file"] for k, a, _ in found if k == "file"} == files
        assert sum(k == "output" for k, _, _ in found) == outputs
        assert any(k == "bash" and "exit" in a for k, a, _ in found)


@pytest.mark.slow
def test_first_pipeline_walkthrough(tmp_path):
    results = run_page("walkthrough-first-pipeline.md", tmp_path)
    summary = json.loads((tmp_path / "runs/my_problems/summary.json").read_text())
    its = summary["iterations"]
    assert [it["iteration"] for it in its] == [0, 1]
    assert all(0 <= it["metrics"]["accuracy"] <= 1 for it in its)
    assert summary["heldout"]["eval_problems"] == 0
    select = json.loads((tmp_path / "runs/my_problems/iter_1/select/manifest.json").read_text())
    assert select["counts"]["rows"] > 0  # the page promises a model trained on its own right answers
    assert (tmp_path / "runs/my_problems/iter_1/train/model/config.json").is_file()
    assert "[(0, " in results[-1].stdout  # the page's last command prints the accuracies


@pytest.mark.slow
def test_scorer_reward_walkthrough(tmp_path):
    results = run_page("walkthrough-scorer-reward.md", tmp_path)
    manifest = json.loads((tmp_path / "runs/format_grpo/iter_1/train/manifest.json").read_text())
    steps_logged = manifest["train"]["per_step"]
    assert manifest["train"]["steps"] == 2 and steps_logged
    assert "rewards/answer_format:follows_format/mean" in steps_logged[-1]  # TRL logged the page's own reward
    assert any(m.startswith("answer_format:follows_format ") for m in manifest["monitors"])
    assert "answer_format:follows_format" in results[-1].stdout
