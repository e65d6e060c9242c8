"""Every shipped recipe at its smallest settings on the tiny random-initialised model: each stage it declares runs
(search, generate, score, refine, select, train, eval, dev, probe, control) and the report is written. This checks
that a recipe's pieces fit together, not what they learn (the README's recipe table does that on the real model).
A random model is never right and writes no parsable answer: where a recipe keeps only right samples the smoke run
relaxes that filter, and where its rows need answers that agree or parse (vote pairs, gold pairs, written judgments,
majority-filtered SFT, correction trajectories, self-verified trajectories) the run must reach the select stage and stop at training with the
error that names the select counts and the knobs to turn."""

from pathlib import Path

import pytest

from selfimprove.config import load_pipeline
from selfimprove.errors import StageError
from selfimprove.pipeline.loop import run_pipeline

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.stem for p in (REPO / "pipelines").glob("*.yaml") if p.stem != "gsm8k_star")  # (hub data, vLLM: a GPU's)
SMALL = ["iterations=1", "data.train.size=8", "data.eval.size=3", "data.dev.size=3", "generate.n=3", "generate.max_tokens=8",
         "select.require_finished=false",
         "eval.n=2", "eval.sample_problems=2", "eval.max_tokens=8", "eval.bootstrap=20", "control.probe={size: 2, n: 2}"]
# what a model that is never right needs to have rows at all (a recipe's gold filter, its searched threshold)
NEVER_RIGHT = {"quickstart": ["select.correct_only=false"], "star": ["select.correct_only=false"],
               "critique_refine": ["select.correct_only=false"],
               "bstar": ["search={prompts: 2, n: 2, temperatures: [0.5, 1.0], thresholds: [-0.5], n_star: 2}", "select.target_size=8"]}
NO_ROWS_ON_RANDOM = {"scpo", "scpo_semi", "meta_rewarding", "iwsi", "self_correct", "self_rewarding", "self_verify_correct"}
# the recipes' model scorers, shorter (their judgments and critiques cannot parse on a random model anyway)
# (meta_rewarding reads a verdict after each unparsed judgment, `read_unparsed`: a random model's read scores all tie)
FASTER = {"meta_rewarding": ["score=[{name: pointwise_judge, options: {n: 2, temperature: 0.7, max_tokens: 8, read_unparsed: true}}, "
                             "{name: meta_judge, options: {max_tokens: 8, read_unparsed: true}}, {name: gold}]"],
          "critique_refine": ["score=[{name: gold}, {name: critic, options: {max_tokens: 8}}]"],
          "iwsi": ["score=[{name: majority_vote, options: {count_unfinished: false, ties: none}}, "
                   "{name: ds_weight, options: {valid_size: 4, valid_template: ds_valid_arithmetic, valid_epochs: 1}}, {name: gold}]"]}
METHOD = {"grpo": ["train.max_steps=2", "train.num_generations=4", "train.batch_size=4", "train.max_completion_length=8"],
          "sft": ["train.epochs=1", "train.max_length=96"], "dpo": ["train.epochs=1", "train.max_length=96"]}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_runs_every_stage_on_the_tiny_model(recipe, tmp_path, tiny_model_path):
    path = REPO / "pipelines" / f"{recipe}.yaml"
    method = load_pipeline(path).train.method
    cfg = load_pipeline(path, [f"model={tiny_model_path}", f"run_dir={tmp_path}", *SMALL, *METHOD[method], *NEVER_RIGHT.get(recipe, []),
                                *FASTER.get(recipe, [])])
    if recipe in NO_ROWS_ON_RANDOM:
        with pytest.raises(StageError, match="0 training rows .* the select stage counted"):
            run_pipeline(cfg)
        for stage in ("generate", "score", "select") + (("refine",) if cfg.refine is not None else ()) + (("verify",) if cfg.verify is not None else ()):
            assert (tmp_path / cfg.name / "iter_1" / stage / "manifest.json").exists(), (recipe, stage)
        return
    summary = run_pipeline(cfg)
    it = summary["iterations"][1]
    ran = set(it["stages"])
    assert {"eval", "dev", "control"} <= ran and ("probe" in ran) == (cfg.control.probe is not None)
    assert set(cfg.stages) - {"eval"} <= ran | {"generate", "score", "select"} - set(cfg.stages)
    for stage in ("generate", "score", "select", "train"):
        if stage in cfg.stages:
            assert stage in ran, (recipe, stage, sorted(ran))
    if cfg.refine is not None:
        assert "refine" in ran
    if cfg.search is not None:
        assert "search" in ran and it["search"]["chosen"]
    assert summary["control"]["chosen"]["iteration"] in (0, 1)
    assert (tmp_path / cfg.name / "report.html").exists() and (tmp_path / cfg.name / "summary.json").exists()
