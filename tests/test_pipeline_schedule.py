"""Per-iteration schedules and B-STaR's search on the tiny model: what each iteration runs with, what is hashed (a
changed value reruns exactly what reads it), what the summary, report and dry run show, and the errors before any
model loads. (Kept apart from test_pipeline_tiny.py, which the oldest-versions environment also runs: these exercise
no library API the loop tests do not.)"""

import json

import pytest
from typer.testing import CliRunner

from selfimprove.cli import app
from selfimprove.config import load_pipeline
from selfimprove.pipeline.loop import run_pipeline
from selfimprove.store import read_table


@pytest.fixture
def pipeline(tiny_pipeline):
    return tiny_pipeline()


def test_a_schedule_changes_one_iteration_and_reruns_only_what_reads_it(pipeline, tmp_path):
    """`schedule:` sets select.max_per_prompt from iteration 2 on and a learning rate per iteration; each stage hashes
    what it ran with, so changing iteration 2's value reruns iteration 2's select and what follows, nothing before."""
    sets = ["schedule={2: {select.max_per_prompt: 1}, train.learning_rate: [0.001, 0.0005]}"]
    summary = run_pipeline(load_pipeline(pipeline, sets))
    root = tmp_path / "runs" / "tiny"
    it1, it2 = summary["iterations"][1], summary["iterations"][2]
    n = summary["data"]["train_prompts"]["counts"]["prompts"]
    assert it1["stages"]["select"]["counts"]["kept"] == 2 * n and it2["stages"]["select"]["counts"]["kept"] == n
    lr = [json.loads((root / f"iter_{k}" / "train" / "manifest.json").read_text())["config"]["train"]["learning_rate"] for k in (1, 2)]
    assert lr == [0.001, 0.0005]
    assert it1["schedule"] == {"train.learning_rate": 0.001}
    assert it2["schedule"] == {"select.max_per_prompt": 1, "train.learning_rate": 0.0005}
    assert "select.max_per_prompt=1" in (root / "report.html").read_text()  # the metrics table's settings column

    again = run_pipeline(load_pipeline(pipeline, ["schedule={2: {select.max_per_prompt: 2}, train.learning_rate: [0.001, 0.0005]}"]))
    ran = {(it["iteration"], name) for it in again["iterations"] for name, s in it["stages"].items() if not s.get("skipped_this_run")}
    assert {(2, "select"), (2, "train"), (2, "eval")} <= ran and not {k for k, _ in ran} & {0, 1}
    assert (2, "generate") not in ran and (2, "score") not in ran
    assert again["iterations"][2]["stages"]["select"]["counts"]["kept"] == 2 * n


def test_a_bad_scheduled_value_fails_before_any_model_loads(pipeline):
    with pytest.raises(Exception, match="at iteration 2.*select.max_per_prompt"):
        load_pipeline(pipeline, ["schedule={2: {select.max_per_prompt: 0}}"])
    with pytest.raises(Exception, match="eval.n.*stay fixed"):
        load_pipeline(pipeline, ["schedule={2: {eval.n: 4}}"])
    from selfimprove.errors import ConfigError
    from selfimprove.pipeline.loop import prepare

    with pytest.raises(ConfigError, match="schedule, iteration 2.*bogus"):  # a builder's own options are checked per iteration too
        prepare(load_pipeline(pipeline, ["schedule={2: {select.builder.options.bogus: 7}}"]))


def test_dry_run_prints_each_iterations_schedule(pipeline):
    res = CliRunner().invoke(app, ["run", str(pipeline), "--dry-run", "--set", "schedule={2: {select.max_per_prompt: 1}}"])
    assert res.exit_code == 0, res.output
    assert "iteration 2 schedule: select.max_per_prompt=1" in res.output and "iteration 1 schedule" not in res.output


def test_bstar_search_chooses_the_iterations_temperature_and_threshold(pipeline, tmp_path):
    """The search stage samples a slice at each temperature, sweeps tau, and the iteration's generate and select stages
    run with the chosen pair (hashed like any setting); summary and report name it; a rerun skips the search."""
    sets = ["iterations=1", "search={prompts: 3, n: 2, temperatures: [0.6, 1.0], thresholds: [-0.5, 0.5], n_star: 2}"]
    summary = run_pipeline(load_pipeline(pipeline, sets))
    root = tmp_path / "runs" / "tiny"
    grid = read_table(root / "iter_1" / "search" / "table.parquet")
    assert [(g["temperature"], g["tau"]) for g in grid] == [(0.6, -0.5), (0.6, 0.5), (1.0, -0.5), (1.0, 0.5)]
    assert all(g["samples"] == 6 for g in grid) and all(g["kept"] <= g["samples"] for g in grid)
    best = max(grid, key=lambda g: g["balance_score"])
    m = json.loads((root / "iter_1" / "search" / "manifest.json").read_text())
    assert m["chosen"] == {"generate.temperature": best["temperature"], "select.min_score": {"column": "correct", "tau": best["tau"], "strict": True}}
    gen = json.loads((root / "iter_1" / "generate" / "manifest.json").read_text())["config"]["generate"]
    sel = json.loads((root / "iter_1" / "select" / "manifest.json").read_text())["config"]["select"]
    assert gen["temperature"] == best["temperature"] and sel["min_score"]["tau"] == best["tau"]
    assert summary["iterations"][1]["search"]["chosen"] == m["chosen"]
    assert "search (balance score" in (root / "report.html").read_text()
    again = run_pipeline(load_pipeline(pipeline, sets))
    assert again["iterations"][1]["stages"]["search"]["skipped_this_run"] and again["iterations"][1]["stages"]["generate"]["skipped_this_run"]


def test_the_search_selects_with_the_select_stages_caps_unless_it_has_a_target_size(pipeline, tmp_path):
    """Without search.target_size the grid's kept sets are capped as the iteration's select will cap them
    (select.target_size 2 of the iteration's 6 x 3 samples, scaled to the slice's 3 x 4: 1, so a cap of one per
    prompt), so the balance score is that of what the iteration keeps."""
    run_pipeline(load_pipeline(pipeline, ["iterations=1", "stages=[generate, score, select]", "select.max_per_prompt=null",
                                          "select.target_size=2",
                                          "search={prompts: 3, n: 4, temperatures: [1.0], thresholds: [-0.5], n_star: 2}"]))
    grid = read_table(tmp_path / "runs" / "tiny" / "iter_1" / "search" / "table.parquet")
    assert grid[0]["samples"] == 12 and 0 < grid[0]["kept"] <= 3


def test_search_needs_what_it_searches(pipeline):
    from selfimprove.errors import ConfigError
    from selfimprove.pipeline.loop import prepare

    with pytest.raises(ConfigError, match="search.column: no scorer"):
        prepare(load_pipeline(pipeline, ["search={column: judge_score}"]))
    with pytest.raises(ConfigError, match="what search: chooses"):
        load_pipeline(pipeline, ["search={}", "schedule={2: {generate.temperature: 0.3}}"])
    with pytest.raises(ConfigError, match="search: chooses the settings of the generate and select stages"):
        load_pipeline(pipeline, ["search={}", "stages=[generate, score]"])


def test_a_schedule_entry_beyond_the_runs_iterations_never_applies(pipeline):
    cfg = load_pipeline(pipeline, ["iterations=1", "schedule={2: {select.max_per_prompt: 1}, train.learning_rate: [0.001, 0.0005]}"])
    assert cfg.scheduled(1) == {"train.learning_rate": 0.001} and cfg.at_iteration(1).select.max_per_prompt == 2
    with pytest.raises(Exception, match="iterations count from 1"):
        load_pipeline(pipeline, ["schedule={0: {select.max_per_prompt: 1}}"])


def test_parse_a_proposed_problem():
    from selfimprove.pipeline.stages.propose import parse_problem

    assert parse_problem("Sure!\nProblem: What is 12 + 7?\n\nAnswer: 19") == "What is 12 + 7?"
    assert parse_problem("problem: A farmer has 3 cows.\nHow many legs?") == "A farmer has 3 cows.\nHow many legs?"
    assert parse_problem("Problem:   ") is None and parse_problem("x" * 700) is None


def test_proposed_problems_join_the_iterations_prompts_when_new_and_consistent(pipeline, tmp_path):
    """Unfiltered, every parsed new proposal joins the prompts the iteration samples (no gold: `correct` None); with
    the self-consistency filter a random model's proposals (no answers agree) are all dropped and counted."""
    sets = ["iterations=1", "select.correct_only=false", "propose={size: 3, shots: 2, max_tokens: 12, min_top_share: null}"]
    summary = run_pipeline(load_pipeline(pipeline, sets))
    root = tmp_path / "runs" / "tiny"
    c = summary["iterations"][1]["stages"]["propose"]["counts"]
    assert c["requested"] == 3 and c["accepted"] + c["unparsed"] + c["duplicates"] == 3 and c["prompts"] == 6 + c["accepted"]
    prompts = read_table(root / "iter_1" / "propose" / "table.parquet")
    new = [p for p in prompts if p["prompt_id"].startswith("proposed/")]
    assert len(new) == c["accepted"] and all(p["reference"] is None and json.loads(p["meta"])["proposed"] == 1 for p in new)
    samples = read_table(root / "iter_1" / "generate" / "table.parquet")
    assert len(samples) == 3 * len(prompts)  # generate.n = 3 for every prompt, proposals included
    scored = read_table(root / "iter_1" / "score" / "table.parquet")
    assert all(s["correct"] is None for s in scored if s["prompt_id"].startswith("proposed/"))
    filtered = run_pipeline(load_pipeline(pipeline, sets[:2] + ["propose={size: 3, shots: 2, max_tokens: 12, votes: 2}"]))
    f = filtered["iterations"][1]["stages"]["propose"]["counts"]
    assert f["accepted"] == 0 and f["inconsistent"] == 3 - f["unparsed"] - f["duplicates"]


def test_the_problem_judge_keeps_what_it_rates_high_enough():
    """Self-Rewarding's self-instruct filter: the model as a judge rates each proposed problem (judge_problem
    template: the problem, not an answer); a problem is kept at or above min_judge_score, an unparsed judgment drops
    it, and the kept ones carry their score."""
    from selfimprove.config import TaskConfig
    from selfimprove.config.propose import ProposeConfig
    from selfimprove.generation.base import Completion, Generator, GeneratorInfo
    from selfimprove.pipeline.stages.propose import judge_problems, problem_judge
    from selfimprove.prompts import PromptLibrary
    from selfimprove.tasks import make_task

    class Rates(Generator):
        info = GeneratorInfo("scripted", "scripted")
        seen: list[str] = []

        def generate(self, requests, params, progress=None):
            texts = [r.messages[-1]["content"] for r in requests]
            self.seen.extend(texts)
            verdict = {"What is 2 + 2?": "Clear. Score: 5", "What is 2 +?": "Missing a number. Score: 1"}
            return [[Completion(next((v for q, v in verdict.items() if f"Problem: {q}\n" in t), "no idea"), 3, None, "stop")]
                    for t in texts]

    task = make_task(TaskConfig(name="arithmetic"), PromptLibrary())
    cfg = ProposeConfig(judge={}, min_judge_score=3)
    gen = Rates()
    judge = problem_judge(task, cfg).use(gen)
    cands = [{"prompt_id": f"proposed/1/{i}", "question": q, "reference": None, "messages": task.messages(q), "meta": "{\"proposed\": 1}"}
             for i, q in enumerate(["What is 2 + 2?", "What is 2 +?", "Tell me a story"])]
    kept, dropped = judge_problems(task, judge, cands, cfg.min_judge_score)
    assert [c["question"] for c in kept] == ["What is 2 + 2?"] and dropped == 2
    assert json.loads(kept[0]["meta"]) == {"proposed": 1, "judge_score": 5.0}
    assert all("additive 5-point" in t and "exercise" in t for t in gen.seen)  # the problem rubric, not the answer rubric
    with pytest.raises(ValueError, match="go together"):
        ProposeConfig(judge={})


def test_the_problem_judge_runs_in_the_loop_and_its_options_fail_at_load(pipeline):
    """On the tiny model with the log-prob judge: threshold 0 keeps every new proposal, threshold 5 (an expected
    score never quite reaches it) keeps none and counts them; a bad judge option fails before any model loads."""
    from selfimprove.errors import ConfigError

    base = ["iterations=1", "select.correct_only=false"]
    judged = "propose={size: 3, shots: 2, max_tokens: 12, min_top_share: null, judge: {mode: logprobs}, min_judge_score: %s}"
    keep = run_pipeline(load_pipeline(pipeline, base + [judged % 0]))["iterations"][1]["stages"]["propose"]["counts"]
    assert keep["judged_out"] == 0 and keep["accepted"] == 3 - keep["unparsed"] - keep["duplicates"]
    drop = run_pipeline(load_pipeline(pipeline, base + [judged % 5]))["iterations"][1]["stages"]["propose"]["counts"]
    assert drop["accepted"] == 0 and drop["judged_out"] == keep["accepted"] > 0
    with pytest.raises(ConfigError, match="propose.judge.*template"):
        run_pipeline(load_pipeline(pipeline, base + ["propose={size: 3, judge: {template: nope}, min_judge_score: 3}"]))
    with pytest.raises(ConfigError, match="no reference answer"):
        run_pipeline(load_pipeline(pipeline, base + ["propose={size: 3, judge: {reference_guided: true}, min_judge_score: 3}"]))
    with pytest.raises(ConfigError, match=r"outside the judge's scale \[0, 5\]"):
        run_pipeline(load_pipeline(pipeline, base + ["propose={size: 3, judge: {}, min_judge_score: 6}"]))


def test_a_refine_setting_can_be_scheduled_and_is_hashed_into_that_iterations_refine_stage(pipeline, tmp_path):
    """Every section an iteration's stages read is schedulable, not only generate/score/select/train: here the
    number of refinements per picked sample (a random model is never right, so every sample is refined)."""
    sets = ["refine={template: self_correct, when: {column: correct, equals: false}, max_tokens: 4}", "schedule={2: {refine.n: 2}}",
            "select.correct_only=false"]
    summary = run_pipeline(load_pipeline(pipeline, sets))
    root = tmp_path / "runs" / "tiny"
    n = [json.loads((root / f"iter_{k}" / "refine" / "manifest.json").read_text())["config"]["refine"]["n"] for k in (1, 2)]
    assert n == [1, 2] and summary["iterations"][2]["schedule"] == {"refine.n": 2}
    with pytest.raises(Exception, match="control.keep.*stay fixed"):
        load_pipeline(pipeline, ["schedule={2: {control.keep: last}}"])


def test_the_scorer_list_is_scheduled_as_a_whole(pipeline):
    """`score` may be replaced as a whole from an iteration on (Meta-Rewarding drops its meta-judge once no judge pairs
    are built); other sections are scheduled by key path only."""
    cfg = load_pipeline(pipeline, ["schedule={2: {score: [{name: gold}]}}", "score=[{name: gold}, {name: majority_vote}]"])
    assert [s.name for s in cfg.at_iteration(1).score] == ["gold", "majority_vote"]
    assert [s.name for s in cfg.at_iteration(2).score] == ["gold"]
    with pytest.raises(Exception, match="'train' is not a key path"):
        load_pipeline(pipeline, ["schedule={2: {train: 3}}"])
    with pytest.raises(Exception, match="cannot both be scheduled"):
        load_pipeline(pipeline, ["schedule={2: {score: [{name: gold}]}, score.0.options: [{}]}"])


def test_the_eval_stage_hashes_the_versions_of_the_scorers_it_runs(pipeline, tmp_path):
    """An eval whose best-of scorer changed its columns (self_loglik version 2 scores the end of turn) has the version
    in its stage config, so a resumed run evaluates again; the scorer list of GRPO rewards and of a search is hashed
    the same way (`versions_of`)."""
    from selfimprove.config import TaskConfig
    from selfimprove.prompts import PromptLibrary
    from selfimprove.scoring.base import versions_of
    from selfimprove.tasks import make_task

    run_pipeline(load_pipeline(pipeline, ["iterations=1", "stages=[eval]", "eval.n=2", "eval.greedy=false",
                                          "eval.best_of={scorer: self_loglik, column: loglik_sum}"]))
    m = json.loads((tmp_path / "runs" / "tiny" / "iter_0" / "eval" / "manifest.json").read_text())
    assert m["config"]["versions"] == {"self_loglik": 2}
    task = make_task(TaskConfig(name="arithmetic"), PromptLibrary())
    assert versions_of([("gold", {}), ("pointwise_judge", {"mode": "logprobs"}), ("critic", {})], task) == {"pointwise_judge": 4, "critic": 2}
