"""`selfimprove generate`: n samples per input row, sharded and resumable, with a summary; bad rows fail before any
model loads, naming the row."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from selfimprove.cli import app
from selfimprove.store import read_table


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def rows(tmp_path):
    return write_rows(tmp_path / "rows.jsonl", [{"question": f"What is {i} + 3?", "answer": i + 3, "qid": f"q{i}"} for i in range(5)])


def generate(*args):
    return CliRunner().invoke(app, ["generate", *map(str, args)])


def test_samples_summary_and_resume(rows, tiny_model_path, tmp_path):
    out = tmp_path / "out"
    args = ["sample", "--input", rows, "--model", tiny_model_path, "-o", out, "--set", "input.fields.prompt=question", "--set", "input.fields.id=qid",
            "--set", "sampling.n=3", "--set", "sampling.max_tokens=6", "--set", "shard_size=2", "--set", "system=Be brief.", "--json"]
    r = generate(*args)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    table = read_table(out / "samples" / "table.parquet")
    assert len(table) == 15 and summary["samples"] == 15 and summary["rows"] == 5
    assert [(t["id"], t["sample"]) for t in table] == [(f"q{i}", j) for i in range(5) for j in range(3)]
    assert table[0]["question"] == "What is 0 + 3?" and table[0]["answer"] == 3  # the input's columns come along
    assert summary["tokens"] == sum(t["num_tokens"] for t in table) and sum(summary["finish_reasons"].values()) == 15
    assert summary["tokens_per_s"] > 0 and summary["samples_this_run"] == 15
    assert (out / "summary.md").read_text().startswith("# generate job `sample`")

    # a killed job: shard 1 and the manifests lost; the rerun makes only shard 1 again, and the same rows
    shards = out / "generation" / "shards"
    kept = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard_*.parquet") if p.name != "shard_00001.parquet"}
    (shards / "shard_00001.parquet").unlink()
    for m in (out / "samples" / "manifest.json", out / "generation" / "manifest.json"):
        m.unlink()
    r = generate(*args)
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout.strip().splitlines()[-1])
    assert {p.name: p.stat().st_mtime_ns for p in shards.glob("shard_*.parquet") if p.name != "shard_00001.parquet"} == kept
    assert again["samples_this_run"] == 6  # 2 rows x 3 samples
    assert read_table(out / "samples" / "table.parquet") == table
    # a finished job does nothing (and claims no throughput)
    r = generate(*args)
    assert r.exit_code == 0 and "skipped" in r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["samples_this_run"] == 0
    # another column edited: the table is rebuilt with it, from the same shards (nothing sampled again)
    write_rows(rows, [{"question": f"What is {i} + 3?", "answer": -i, "qid": f"q{i}"} for i in range(5)])
    r = generate(*args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["samples_this_run"] == 0
    rebuilt = read_table(out / "samples" / "table.parquet")
    assert [t["answer"] for t in rebuilt[::3]] == [0, -1, -2, -3, -4]
    assert [t["completion"] for t in rebuilt] == [t["completion"] for t in table]


def test_chat_messages_and_templates(tmp_path, tiny_model_path):
    chats = write_rows(tmp_path / "chats.jsonl", [{"messages": [{"role": "user", "content": "Hi"}]}, {"messages": [{"role": "user", "content": "2+2?"}]}])
    r = generate("sample", "--input", chats, "--model", tiny_model_path, "-o", tmp_path / "c", "--set", "sampling.n=1",
                 "--set", "sampling.temperature=0", "--set", "sampling.max_tokens=4", "--json")
    assert r.exit_code == 0, r.output
    assert [t["id"] for t in read_table(tmp_path / "c" / "samples" / "table.parquet")] == ["row0", "row1"]

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "ask.jinja").write_text("Compute {{ a }} times {{ b }}.")
    nums = write_rows(tmp_path / "nums.jsonl", [{"a": 2, "b": 3}, {"a": 4}])
    r = generate("sample", "--input", nums, "--model", tiny_model_path, "-o", tmp_path / "t", "--set", "template=ask",
                 "--set", f"prompts_dir={tmp_path / 'p'}")
    assert r.exit_code == 2 and "row 1" in r.output and "'b' is undefined" in r.output


@pytest.mark.parametrize("rows, sets, message", [
    ([{"text": "a"}], [], "column 'prompt' not found in row 0 (columns: ['text'])"),
    ([{"prompt": "a", "id": 1}, {"prompt": "b", "id": 1}], [], "row 1: id '1' is not unique"),
    ([{"messages": "hello"}], [], "row 0: `messages` must be a non-empty list"),
    ([{"prompt": "  "}], [], "row 0: the prompt must be non-empty text"),
    ([{"prompt": "a"}], ["input.fields.answer=x"], "input.fields: unknown field(s) ['answer']"),
    ([{"prompt": "a"}], ["sampling.tempreature=1"], "sampling.tempreature"),
    ([{"prompt": "a"}], ["ray.num_wrokers=2"], "ray.num_wrokers"),
    ([{"prompt": "a", "completion": "b"}], [], "row 0: column(s) ['completion'] would be overwritten"),
    ([{"prompt": "a"}], ["sampling.temperature=0", "sampling.n=2"], "temperature 0 (greedy) gives one completion per row"),
])
def test_bad_input_fails_before_any_model_loads(tmp_path, no_model_loads, rows, sets, message):
    path = write_rows(tmp_path / "rows.jsonl", rows)
    r = generate("sample", "--input", path, "-o", tmp_path / "o", *[a for s in sets for a in ("--set", s)])
    assert r.exit_code == 2, r.output
    assert message in " ".join(r.output.split())
