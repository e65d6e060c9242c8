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
    res = CliRunner().invoke(app, ["recipes", "--json"])
    assert res.exit_code == 0 and [r["file"] for r in json.loads(res.stdout)] == RECIPES


@pytest.mark.parametrize("recipe", [r for r in RECIPES if r != "gsm8k_star.yaml"])  # (its data and vLLM are a GPU machine's)
def test_each_recipe_passes_the_dry_run_checks(recipe, tmp_path, no_model_loads):
    from selfimprove.pipeline.loop import prepare

    cfg = load_pipeline(REPO / "pipelines" / recipe, [f"run_dir={tmp_path}"])
    p = prepare(cfg)
    assert p.plan.stages and p.plan.eval is not None and cfg.data.dev is not None  # every recipe is controlled on dev
    for k in range(2, cfg.iterations + 1):
        p.plan_for(k)
