"""Config validation: typos, wrong types, unknown stages/templates/tasks/fields fail early with the YAML path; exit code 2."""

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfimprove.cli import app
from selfimprove.config import ConfigError, load_pipeline
from selfimprove.pipeline.loop import prepare

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "pipelines" / "quickstart.yaml"


def write(tmp_path, text, name="p.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


BASE = """
name: t
model: builtin:smollm2-135m-instruct
task: {name: arithmetic}
data:
  train: {size: 4, seed: 1}
  eval: {size: 4, seed: 2}
"""


def test_quickstart_is_valid_and_overrides_apply():
    cfg = load_pipeline(QUICKSTART, ["iterations=1", "generate.n=4", "train.lora.r=8", 'generate.stop=["\\n\\n"]'])
    assert cfg.iterations == 1 and cfg.generate.n == 4 and cfg.train.lora.r == 8 and cfg.generate.stop == ["\n\n"]


@pytest.mark.parametrize(
    "override,path",
    [
        ("generate.temprature=0.3", "generate.temprature"),
        ("generate.n=many", "generate.n"),
        ("train.lora.rank=4", "train.lora.rank"),
        ("stages=[generate,scour]", "stages"),
        ("eval.n=-1", "eval.n"),
        ("backend.name=tgi", "backend.name"),
        ("bogus=1", "bogus"),
    ],
)
def test_bad_values_name_their_path(tmp_path, override, path):
    with pytest.raises(ConfigError) as e:
        load_pipeline(write(tmp_path, BASE), [override])
    assert f"  {path}:" in str(e.value)


def test_missing_required(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_pipeline(write(tmp_path, "name: t\nmodel: x\n"))
    assert "task:" in str(e.value) and "data:" in str(e.value)


def test_stage_order(tmp_path):
    with pytest.raises(ConfigError, match="order"):
        load_pipeline(write(tmp_path, BASE + "stages: [score, generate]\n"))


@pytest.mark.parametrize(
    "extra,needle",
    [
        ("task: {name: arithmatic}", "task.name: unknown task 'arithmatic'"),
        ("task: {name: arithmetic, prompt_template: nope}", "task.prompt_template: no template 'nope'"),
        ("task: {name: arithmetic, options: {digitz: 3}}", "task.options.digitz"),
        ("task: {name: arithmetic, options: {operations: ['/']}}", "task.options.operations"),
        ("task: {name: arithmetic}\nscore: [{name: judgy}]", "score[0].name: unknown scorer 'judgy'"),
    ],
)
def test_prepare_errors(tmp_path, no_model_loads, extra, needle):
    text = BASE.replace("task: {name: arithmetic}\n", "") + extra + "\n"
    cfg = load_pipeline(write(tmp_path, text))
    with pytest.raises(ConfigError) as e:
        prepare(cfg)
    assert needle in str(e.value)


def test_missing_dataset_field(tmp_path, no_model_loads):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"Body": "b", "Question": "q?", "Answer": "3"}) for _ in range(3)))
    text = f"""
    name: t
    model: builtin:smollm2-135m-instruct
    task: {{name: gsm8k}}
    data:
      train: {{source: {data}, fields: {{question: Body+Question, answer: Answer}}}}
      eval: {{source: {data}, fields: {{question: Question, answer: Answr}}}}
    """
    cfg = load_pipeline(write(tmp_path, text))
    with pytest.raises(ConfigError) as e:
        prepare(cfg)
    assert "data.eval.fields.answer" in str(e.value) and "'Answr'" in str(e.value)


def test_custom_field_mapping_loads(tmp_path, no_model_loads):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"Body": f"Tom has {i} cats.", "Question": "How many?", "Answer": f"{i}.0"}) for i in range(5)))
    text = f"""
    name: t
    model: builtin:smollm2-135m-instruct
    task: {{name: gsm8k}}
    data:
      train: {{source: {data}, size: 3, fields: {{question: Body+Question, answer: Answer}}}}
      eval: {{source: {data}, fields: {{question: Body+Question, answer: Answer}}}}
    """
    ctx, (train, evals) = prepare(load_pipeline(write(tmp_path, text)))
    assert len(evals) == 5 and train == []  # train questions are all in eval: held out
    assert evals[2]["question"] == "Tom has 2 cats. How many?" and evals[2]["reference"] == "2.0"


def test_cli_exit_code_2_and_message(tmp_path, no_model_loads):
    runner = CliRunner()
    res = runner.invoke(app, ["run", str(write(tmp_path, BASE)), "--set", "generate.temprature=0.3"])
    assert res.exit_code == 2
    assert "generate.temprature" in res.output and "unknown key" in res.output
    res = runner.invoke(app, ["run", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "not found" in res.output


def test_cli_dry_run(tmp_path, no_model_loads):
    res = CliRunner().invoke(app, ["run", str(write(tmp_path, BASE)), "--dry-run", "--run-dir", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    assert "4 eval prompts" in res.output


def test_gsm8k_pipeline_with_local_data(shared_data, no_model_loads):
    cfg = load_pipeline(
        REPO / "pipelines" / "gsm8k_star.yaml",
        [f"data.train.source={shared_data / 'gsm8k' / 'train.jsonl'}", f"data.eval.source={shared_data / 'gsm8k' / 'test.jsonl'}",
         "backend={name: transformers}"],  # (its vllm backend is checked for the vllm package: not installed here)
    )
    _, (train, evals) = prepare(cfg)
    assert len(train) == 2000 and len(evals) == 1319
    assert evals[0]["reference"] == "18" and "Janet" in evals[0]["question"]
    assert evals[0]["messages"][-1]["content"].endswith("The answer is <number>.")


def test_math500_task_reads_boxed_answers(shared_data, tmp_path, no_model_loads):
    src = shared_data / "math500" / "test.jsonl"
    text = f"""
    name: m
    model: builtin:smollm2-135m-instruct
    task: {{name: math500}}
    data:
      train: {{source: {src}, size: 3}}
      eval: {{source: {src}}}
    """
    _, (_, evals) = prepare(load_pipeline(write(tmp_path, text)))
    assert len(evals) == 500 and evals[0]["prompt_id"].startswith("test/")
    assert json.loads(evals[0]["meta"])["subject"]
    assert "\\boxed{}" in evals[0]["messages"][-1]["content"]


@pytest.mark.parametrize("model,needle", [("./no/such/model", "does not exist"), ("nobody/no-such-model-xyz", "cannot load model")])
def test_missing_model_exit_code_3(tmp_path, model, needle):
    text = BASE.replace("model: builtin:smollm2-135m-instruct", f"model: {model}")
    res = CliRunner().invoke(app, ["run", str(write(tmp_path, text)), "--run-dir", str(tmp_path / "runs")])
    assert res.exit_code == 3, res.output
    assert needle in res.output


def test_the_shipped_recipes_follow_their_papers_rules():
    """Fidelity pins (issue 21): ScPO pairs the most- with the least-voted answer, one pair per problem, with tau raised
    in the second iteration; IWSI trains K-Mixed's kept rows with weight 1; Self-Rewarding's continuous expected scores
    tie where the paper's mean of three integer judgments would."""
    scpo = load_pipeline(REPO / "pipelines" / "scpo.yaml")
    first, second = (scpo.at_iteration(k).select.builder.options for k in (1, 2))
    assert first["pairs_per_prompt"] == 1 and not first.get("unanswered_as_rejected", False)
    assert second["tau"] > first["tau"]
    iwsi = load_pipeline(REPO / "pipelines" / "iwsi.yaml")
    assert iwsi.select.builder.name == "sft" and not iwsi.select.builder.options.get("weight_column")
    assert iwsi.select.majority_only and iwsi.select.keep_quantile.q == 0.79
    sr = load_pipeline(REPO / "pipelines" / "self_rewarding.yaml")
    assert sr.select.builder.name == "judge_pairs" and sr.select.builder.options["resolution"] == pytest.approx(1 / 3, abs=1e-3)
