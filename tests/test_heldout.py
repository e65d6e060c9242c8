"""Held out means held out: no eval problem reaches the train prompts.

Generated tasks (arithmetic) draw train problems around the eval problems, by problem identity, and still
give exactly `data.train.size`; dataset tasks drop train rows asking an eval question and report the
overlap in the train_prompts manifest, summary.json, report.html and a warning. No model is loaded.
"""

import json
import logging
import textwrap

import pytest
from typer.testing import CliRunner

from selfimprove.cli import app
from selfimprove.config import ConfigError, SplitConfig, TaskConfig, load_pipeline
from selfimprove.evaluation.report import build_summary, write_report
from selfimprove.pipeline.loop import prepare
from selfimprove.pipeline.stages.data import prompts_stage
from selfimprove.prompts import PromptLibrary
from selfimprove.store import read_json, read_table
from selfimprove.tasks import make_task


def arithmetic(**options):
    return make_task(TaskConfig(name="arithmetic", options=options), PromptLibrary(None))


def keys(task, rows):
    return [task.problem_key(r) for r in rows]


def pipeline(tmp_path, task: str, train: str, eval_: str):
    p = tmp_path / "p.yaml"
    p.write_text(textwrap.dedent(f"""
        name: h
        run_dir: {tmp_path / 'runs'}
        model: builtin:smollm2-135m-instruct
        task: {task}
        data:
          train: {train}
          eval: {eval_}
    """))
    return load_pipeline(p)


# -- generated tasks: exclude while drawing ---------------------------------------------------------------


@pytest.mark.parametrize("options,n_train,n_eval", [({"digits": 1}, 30, 40),
                                                    ({"digits": 1, "word_problems": True, "operations": ["+", "-"]}, 30, 40),
                                                    ({"digits": 1, "operations": ["+", "*"], "operands": 3}, 300, 500)])
def test_arithmetic_train_has_exact_size_and_no_eval_problem(tmp_path, no_model_loads, options, n_train, n_eval):
    """Small problem spaces where the two seeds collide: train still has `size` problems, none an eval problem."""
    task = arithmetic(**options)
    eval_rows = task.load(SplitConfig(size=n_eval, seed=2), "data.eval")
    unguarded = task.load(SplitConfig(size=n_train, seed=1), "data.train")
    assert set(keys(task, unguarded)) & set(keys(task, eval_rows))  # the seeds do collide

    task_yaml = f"{{name: arithmetic, options: {json.dumps(options)}}}"
    ctx, rows = prepare(pipeline(tmp_path, task_yaml, f"{{size: {n_train}, seed: 1}}", f"{{size: {n_eval}, seed: 2}}"))
    train, evals = rows
    assert len(train) == n_train and len(evals) == n_eval
    assert not set(keys(task, train)) & set(keys(task, evals))
    assert not {r["question"] for r in train} & {r["question"] for r in evals}
    assert len(set(keys(task, train))) == n_train and len(set(keys(task, evals))) == n_eval  # distinct within each split
    assert rows.heldout_overlap == {"train_rows_dropped": 0, "eval_problems": 0} and ctx.warnings == []
    # excluding only skips draws: what was not excluded is kept, in the seed's order, and more are drawn after it
    kept = [r["question"] for r in unguarded if task.problem_key(r) not in set(keys(task, evals))]
    assert [r["question"] for r in train][: len(kept)] == kept


def test_word_problems_compare_by_numbers_not_phrasing():
    """The same numbers in another phrasing (another name, another story) are the same problem."""
    task = arithmetic(digits=1, word_problems=True, operations=["+", "-"])
    eval_rows = task.load(SplitConfig(size=40, seed=2), "data.eval")
    eval_text = {task.problem_key(r): r["question"] for r in eval_rows}
    unguarded = task.load(SplitConfig(size=30, seed=1), "data.train")
    rephrased = [r for r in unguarded if task.problem_key(r) in eval_text and r["question"] != eval_text[task.problem_key(r)]]
    assert rephrased, "this seed pair should contain a rephrased eval problem"
    train = task.load(SplitConfig(size=30, seed=1), "data.train", exclude=set(eval_text))
    assert len(train) == 30 and not set(keys(task, train)) & set(eval_text)
    row = train[0]
    a, op, b = json.loads(row["meta"])["problem"].split()
    assert a in row["question"] and b in row["question"] and str(eval(f"{a}{op}{b}")) == row["reference"]


def test_arithmetic_is_deterministic_for_a_seed():
    task = arithmetic(digits=1, operations=["+", "-"])
    exclude = set(keys(task, task.load(SplitConfig(size=50, seed=2), "data.eval")))
    a = task.load(SplitConfig(size=60, seed=1), "data.train", exclude=exclude)
    b = task.load(SplitConfig(size=60, seed=1), "data.train", exclude=set(exclude))
    assert a == b
    assert a != task.load(SplitConfig(size=60, seed=3), "data.train", exclude=exclude)


def test_arithmetic_can_use_the_whole_problem_space():
    """1-digit addition has 100 problems: 60 eval + 40 train uses them all, deterministically."""
    task = arithmetic(digits=1)
    assert task.problem_space() == 100
    evals = task.load(SplitConfig(size=60, seed=2), "data.eval")
    train = task.load(SplitConfig(size=40, seed=1), "data.train", exclude=set(keys(task, evals)))
    assert len(set(keys(task, train)) | set(keys(task, evals))) == 100


@pytest.mark.parametrize("options,space", [({"digits": 1}, 100), ({"digits": 2, "min_digits": 1, "operations": ["+", "-"]}, 20_000),
                                           ({"digits": 1, "operands": 3, "operations": ["+", "*"]}, 4_000),
                                           ({"digits": 1, "word_problems": True, "operations": ["-", "*"]}, 155)])
def test_problem_space_counts_distinct_problems(options, space):
    assert arithmetic(**options).problem_space() == space


def test_too_small_problem_space_is_a_clear_error(tmp_path, no_model_loads):
    cfg = pipeline(tmp_path, "{name: arithmetic, options: {digits: 1}}", "{size: 50, seed: 1}", "{size: 60, seed: 2}")
    with pytest.raises(ConfigError) as e:
        prepare(cfg)
    msg = str(e.value)
    assert msg.startswith("data.train.size:") and "only 100" in msg and "60 of them are held out" in msg
    cfg = pipeline(tmp_path, "{name: arithmetic, options: {digits: 1}}", "{size: 10, seed: 1}", "{size: 101, seed: 2}")
    with pytest.raises(ConfigError, match=r"^data\.eval\.size: 101 distinct problems asked for, but task.options allow only 100"):
        prepare(cfg)


def test_too_small_problem_space_exits_2(tmp_path, no_model_loads):
    p = tmp_path / "p.yaml"
    p.write_text("name: h\nmodel: builtin:smollm2-135m-instruct\ntask: {name: arithmetic, options: {digits: 1}}\n"
                 "data: {train: {size: 95, seed: 1}, eval: {size: 10, seed: 2}}\n")
    res = CliRunner().invoke(app, ["run", str(p), "--dry-run"])
    assert res.exit_code == 2 and "data.train.size" in res.output


# -- dataset tasks: count, drop, report, warn -----------------------------------------------------------------


def write_jsonl(path, questions):
    path.write_text("\n".join(json.dumps({"question": q, "answer": f"#### {i}"}) for i, q in enumerate(questions)) + "\n")
    return path


TRAIN_QS = ["How many legs do 3 cats have?", "What is  2 +\n2?", "A train leaves at noon. When?",
            "How many legs do 3 cats have?", "Unique train question?", " Eval one. "]
EVAL_QS = ["How many legs do 3 cats have?", "What is 2 + 2?", "Eval one.", "Only in eval?"]


def gsm8k_pipeline(tmp_path, train_qs=TRAIN_QS, eval_qs=EVAL_QS):
    train = write_jsonl(tmp_path / "train.jsonl", train_qs)
    evals = write_jsonl(tmp_path / "eval.jsonl", eval_qs)
    return pipeline(tmp_path, "{name: gsm8k}", f"{{source: {train}}}", f"{{source: {evals}}}")


def test_dataset_overlap_is_dropped_counted_reported_and_warned(tmp_path, no_model_loads, caplog):
    ctx, rows = prepare(gsm8k_pipeline(tmp_path))
    assert [r["question"] for r in rows.train] == ["A train leaves at noon. When?", "Unique train question?"]
    # whitespace-normalised exact match: the duplicate cats row and "What is  2 +\n2?" / " Eval one. " count too
    assert rows.heldout_overlap == {"train_rows_dropped": 4, "eval_problems": 3}
    assert len(ctx.warnings) == 1 and "4 data.train row(s)" in ctx.warnings[0] and "3 held-out problem(s) (data.eval)" in ctx.warnings[0]
    assert any(r.levelno == logging.WARNING and "held-out overlap" in r.getMessage() for r in caplog.records)

    train_sd, _ = prompts_stage(ctx, rows)
    manifest = read_json(train_sd.manifest_path)
    assert manifest["counts"] == {"prompts": 2, "heldout_overlap": {"train_rows_dropped": 4, "eval_problems": 3}}
    assert "whitespace" in manifest["heldout"]["compared_by"] and "dropped" in manifest["heldout"]["handling"]
    assert len(read_table(train_sd.table_path)) == 2

    summary = build_summary(ctx.store.root, ctx.reports)
    assert summary["heldout"]["train_rows_dropped"] == 4 and summary["heldout"]["eval_problems"] == 3
    assert summary["data"]["train_prompts"]["counts"]["heldout_overlap"]["train_rows_dropped"] == 4
    html = (write_report(ctx.store.root, summary)).read_text()
    assert "Warning: held-out overlap" in html and "4 train row(s)" in html
    assert "heldout_overlap.train_rows_dropped=4" in html  # the stages table

    # a rerun skips the stage and still reports the overlap from the manifest
    ctx2, rows2 = prepare(gsm8k_pipeline(tmp_path))
    prompts_stage(ctx2, rows2)
    assert all(r.skipped for r in ctx2.reports)
    assert build_summary(ctx2.store.root, ctx2.reports)["heldout"]["train_rows_dropped"] == 4


def test_no_dataset_overlap_no_warning(tmp_path, no_model_loads, caplog):
    ctx, rows = prepare(gsm8k_pipeline(tmp_path, ["Train only?", "Also train?"], ["Eval only?"]))
    assert len(rows.train) == 2 and rows.heldout_overlap == {"train_rows_dropped": 0, "eval_problems": 0}
    assert ctx.warnings == [] and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    prompts_stage(ctx, rows)
    html = write_report(ctx.store.root, build_summary(ctx.store.root)).read_text()
    assert "Held-out check: no train prompt is an eval problem" in html and "Warning: held-out overlap" not in html


def test_generated_task_reports_zero_overlap_in_manifest(tmp_path, no_model_loads):
    cfg = pipeline(tmp_path, "{name: arithmetic, options: {digits: 1}}", "{size: 30, seed: 1}", "{size: 40, seed: 2}")
    ctx, rows = prepare(cfg)
    train_sd, _ = prompts_stage(ctx, rows)
    m = read_json(train_sd.manifest_path)
    assert m["counts"] == {"prompts": 30, "heldout_overlap": {"train_rows_dropped": 0, "eval_problems": 0}}
    assert "drawn around the eval problems" in m["heldout"]["handling"] and "operands" in m["heldout"]["compared_by"]


def test_dry_run_warns_about_overlap(tmp_path, no_model_loads, caplog):
    gsm8k_pipeline(tmp_path)
    res = CliRunner().invoke(app, ["run", str(tmp_path / "p.yaml"), "--dry-run"])
    assert res.exit_code == 0 and "2 train prompts" in res.output
    assert any("held-out overlap" in r.getMessage() for r in caplog.records)


def test_dataset_task_cannot_exclude(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", ["q?"])
    task = make_task(TaskConfig(name="gsm8k"), PromptLibrary(None))
    with pytest.raises(TypeError, match="drop overlapping rows"):
        task.load(SplitConfig(source=str(src)), "data.train", exclude={"q?"})
