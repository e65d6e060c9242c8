"""The shipped recipes: each validates, says what it is (`about:`), passes every check `--dry-run` makes (no model
loads), and `selfimprove recipes` lists them."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfimprove.cli import app
from selfimprove.config import load_pipeline
from selfimprove.jobs.recipes import list_recipes, recipes_dir

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.name for p in (REPO / "pipelines").glob("*.yaml"))


def test_recipes_are_listed_with_what_they_are():
    rows = list_recipes()
    assert recipes_dir() == REPO / "pipelines" and [r["file"] for r in rows] == RECIPES
    for r in rows:
        assert "error" not in r, r
        assert r["method"] and r["summary"] and r["labels"] in ("gold", "label-free", "few labels"), r
        assert r["gpu"] == (None if r["file"] == "gsm8k_star.yaml" else f"gpu/{r['file']}")
    res = CliRunner().invoke(app, ["recipes", "--json"])
    assert res.exit_code == 0 and [r["file"] for r in json.loads(res.stdout)] == RECIPES


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r != "gsm8k_star.yaml"])  # (its data and vLLM are a GPU machine's)
def test_each_recipe_passes_the_dry_run_checks(recipe, tmp_path, no_model_loads):
    from selfimprove.pipeline.loop import prepare

    cfg = load_pipeline(REPO / "pipelines" / recipe, [f"run_dir={tmp_path}"])
    p = prepare(cfg)
    assert p.plan.stages and p.plan.eval is not None and cfg.data.dev is not None  # every recipe is controlled on dev
    for k in range(2, cfg.iterations + 1):  # an iteration a schedule changes runs the plug-ins of its own settings
        scheduled = {key.split(".")[0] for key in cfg.scheduled(k)}
        if "select" in scheduled:
            assert p.plan_for(k).builder.identity() != p.plan.builder.identity(), (recipe, k)


def test_scheduled_recipes_change_what_their_papers_change():
    from selfimprove.pipeline.loop import prepare

    scpo = prepare(load_pipeline(REPO / "pipelines" / "scpo.yaml"))
    assert scpo.plan.builder.options.tau == 0.25 and scpo.plan_for(2).builder.options.tau == 0.375
    meta = load_pipeline(REPO / "pipelines" / "meta_rewarding.yaml")
    assert [b.name for b in meta.at_iteration(2).select.builders] == ["judge_pairs", "meta_judge_pairs"]
    assert [(b.name, b.options) for b in meta.at_iteration(3).select.builders] == [("judge_pairs", {"rho": 0.1})]
    assert [c.name for c in meta.at_iteration(2).score] == ["pointwise_judge", "meta_judge", "gold"]
    assert [c.name for c in meta.at_iteration(3).score] == ["pointwise_judge", "gold"]  # no judge pairs, no meta-judge
    assert meta.at_iteration(3).score[0].options == meta.at_iteration(2).score[0].options  # the same judge throughout


@pytest.mark.parametrize("recipe", RECIPES)
def test_each_recipe_has_a_gpu_scale_variant_that_states_only_what_differs(recipe):
    if recipe == "gsm8k_star.yaml":
        return  # it is a GPU recipe itself
    gpu = REPO / "pipelines" / "gpu" / recipe
    cfg = load_pipeline(gpu)
    cpu = load_pipeline(REPO / "pipelines" / recipe)
    assert cfg.backend.name == "vllm" and cfg.task.name == "gsm8k" and cfg.model != cpu.model
    assert cfg.train.method == cpu.train.method and cfg.about == cpu.about and cfg.control.stop_if == cpu.control.stop_if


def test_extends_merges_mappings_and_refuses_a_cycle(tmp_path):
    from selfimprove.errors import ConfigError

    (tmp_path / "base.yaml").write_text("name: b\nmodel: m\ntask: {name: arithmetic}\ndata: {train: {size: 4}, eval: {size: 4, seed: 2}}\n"
                                        "generate: {n: 4, temperature: 0.5}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: c\ngenerate: {n: 2}\n")
    cfg = load_pipeline(tmp_path / "child.yaml")
    assert cfg.name == "c" and cfg.generate.n == 2 and cfg.generate.temperature == 0.5 and cfg.data.train.size == 4
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_pipeline(tmp_path / "a.yaml")
    (tmp_path / "lost.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="extends: nowhere.yaml not found"):
        load_pipeline(tmp_path / "lost.yaml")
