"""Selection filters and the SFT row builder."""

from selfimprove.builders import sft_rows
from selfimprove.config import SelectConfig
from selfimprove.selection import select_samples


def _rows():
    rows = []
    for pid, specs in {"a": [(True, "x"), (True, "x "), (True, "y"), (False, "z"), (True, "w")], "b": [(True, "q")], "c": [(False, "r")]}.items():
        for j, (ok, text) in enumerate(specs):
            rows.append({"prompt_id": pid, "sample_id": f"{pid}/{j}", "completion": text, "correct": ok, "finish_reason": "stop",
                         "vote_share": 0.5, "model_ref": "m"})
    return rows


def test_correct_dedup_cap():
    kept, counts = select_samples(_rows(), SelectConfig(max_per_prompt=2), seed=0)
    assert counts["after_correct"] == 5
    assert counts["after_dedup"] == 4  # "x" and "x " are the same after whitespace normalisation
    assert counts["kept"] == 3 and counts["prompts_kept"] == 2
    assert sum(r["prompt_id"] == "a" for r in kept) == 2
    # why a prompt gives no row: "c" had no right sample; no other filter emptied a prompt
    assert {k: v for k, v in counts.items() if k.startswith("prompts_emptied_by_")} == {"prompts_emptied_by_correct": 1}


def test_the_select_stage_says_why_prompts_gave_no_row(tmp_path):
    """The select stage's yield counts prompts scored and with rows, and names the filter that emptied the others; the
    run report's training-signal row shows them."""
    from selfimprove.config import load_pipeline
    from selfimprove.evaluation.report import signal_rows
    from selfimprove.pipeline.loop import prepare
    from selfimprove.pipeline.stages.select import select_stage

    cfg = load_pipeline("pipelines/quickstart.yaml", [f"run_dir={tmp_path}"])  # select: correct_only, dedup, max_per_prompt 2
    ctx = prepare(cfg).ctx
    prompts = ctx.store.stage(1, "prompts", {}, {})
    prompts.finish_table([{"prompt_id": p, "messages": [{"role": "user", "content": p}]} for p in "abc"], counts={}, seconds=0)
    scored = ctx.store.stage(1, "score", {}, {})
    scored.finish_table(_rows(), counts={}, seconds=0)
    sd = select_stage(ctx, 1, cfg.select, 0, prompts, scored, [])
    m = sd.manifest()
    assert m["counts"]["prompts_in"] == 3 and m["counts"]["prompts_with_rows"] == 2
    assert m["yield"]["skipped"] == {"filter correct": 1}
    summary = {"iterations": [{"iteration": 1, "stages": {"select": m}}]}
    (row,) = signal_rows(summary)
    assert row[1:5] == ["3", "2", "3", "filter correct 1"]


def test_balance_and_finished():
    rows = _rows()
    rows[0]["finish_reason"] = "length"
    kept, counts = select_samples(rows, SelectConfig(max_per_prompt=None, balance=True), seed=0)
    assert counts["after_finished"] == len(rows) - 1
    assert {r["prompt_id"] for r in kept} == {"a", "b"}
    assert all(sum(r["prompt_id"] == p for r in kept) == 1 for p in ("a", "b"))


def test_vote_share_and_no_correct_filter():
    rows = _rows()
    rows[-1]["vote_share"] = 0.1
    kept, _ = select_samples(rows, SelectConfig(correct_only=False, dedup=False, max_per_prompt=None, min_vote_share=0.3), seed=0)
    assert len(kept) == len(rows) - 1


def test_sft_rows_shape():
    prompts = {"a": {"messages": [{"role": "user", "content": "Q"}]}}
    (row,) = sft_rows([{"prompt_id": "a", "sample_id": "a/0", "completion": "A", "model_ref": "iter_1"}], prompts)
    assert row["prompt"] == [{"role": "user", "content": "Q"}]
    assert row["completion"] == [{"role": "assistant", "content": "A"}]
    assert row["messages"][-1]["content"] == "A" and row["weight"] == 1.0 and row["model_ref"] == "iter_1"


def _scored(table: dict[str, list[tuple[float | None, bool, str]]]) -> list[dict]:
    return [{"prompt_id": pid, "sample_id": f"{pid}/{j}", "completion": text, "correct": ok, "finish_reason": "stop", "score": score,
             "model_ref": "m"} for pid, specs in table.items() for j, (score, ok, text) in enumerate(specs)]


SCORED = {"a": [(0.9, True, "a1"), (0.2, False, "a2"), (0.7, True, "a3"), (None, True, "a4")],
          "b": [(0.5, True, "b1"), (0.8, False, "b2")],
          "c": [(0.1, False, "c1")]}


def test_min_score_keeps_values_at_or_above_tau_and_drops_missing_ones():
    kept, counts = select_samples(_scored(SCORED), SelectConfig(correct_only=False, max_per_prompt=None,
                                                                min_score={"column": "score", "tau": 0.5}), seed=0)
    assert sorted(r["sample_id"] for r in kept) == ["a/0", "a/2", "b/0", "b/1"]
    assert counts["prompts_emptied_by_min_score"] == 1  # c
    strict, _ = select_samples(_scored(SCORED), SelectConfig(correct_only=False, max_per_prompt=None,
                                                             min_score={"column": "score", "tau": 0.5, "strict": True}), seed=0)
    assert sorted(r["sample_id"] for r in strict) == ["a/0", "a/2", "b/1"]  # B-STaR's score > tau drops b's 0.5


def test_top_k_per_prompt_is_best_of_n_by_a_column():
    kept, _ = select_samples(_scored(SCORED), SelectConfig(correct_only=False, max_per_prompt=None,
                                                           top_k_per_prompt={"column": "score", "k": 1}), seed=0)
    assert sorted(r["sample_id"] for r in kept) == ["a/0", "b/1", "c/0"]
    two, _ = select_samples(_scored(SCORED), SelectConfig(correct_only=False, max_per_prompt=None,
                                                          top_k_per_prompt={"column": "score", "k": 2}), seed=0)
    assert sorted(r["sample_id"] for r in two) == ["a/0", "a/2", "b/0", "b/1", "c/0"]


def test_target_size_grows_the_per_prompt_cap_best_first():
    """Caps 1, 2, ... give 3, 5, 6 rows: the target 4 needs cap 2; each prompt keeps its best by min_score's column."""
    cfg = SelectConfig(correct_only=False, max_per_prompt=None, min_score={"column": "score", "tau": 0.0}, target_size=4)
    kept, counts = select_samples(_scored(SCORED), cfg, seed=0)
    assert counts["per_prompt_cap"] == 2 and counts["kept"] == 5
    assert sorted(r["sample_id"] for r in kept) == ["a/0", "a/2", "b/0", "b/1", "c/0"]
    everything, counts = select_samples(_scored(SCORED), cfg.model_copy(update={"target_size": 99}), seed=0)
    assert counts["per_prompt_cap"] == 3 and len(everything) == 6  # no cap reaches 99: every row with a score


def test_balance_score_is_b_stars_formula():
    """n* = 2. a: 3 unique kept, 2 correct -> min(2/2, 1) * 2/3; b: 2 kept, 1 correct -> (1/2) * (1/2); c: 1 kept, 0
    correct -> 0. Mean over the three prompts."""
    kept, counts = select_samples(_scored(SCORED), SelectConfig(correct_only=False, max_per_prompt=None, balance_n=2,
                                                                min_score={"column": "score", "tau": 0.0}), seed=0)
    assert counts["balance_score"] == round((2 / 3 + 1 / 4 + 0) / 3, 4)
    # a prompt the filters emptied still counts (it scores 0): the score rewards keeping enough correct answers
    _, counts = select_samples(_scored(SCORED), SelectConfig(correct_only=True, max_per_prompt=None, balance_n=2), seed=0)
    assert counts["balance_score"] == round((1.0 + 0.5 + 0) / 3, 4)
    no_gold = [{k: v for k, v in r.items() if k != "correct"} for r in _scored(SCORED)]
    assert "balance_score" not in select_samples(no_gold, SelectConfig(correct_only=False), seed=0)[1]


def test_target_size_ranks_a_zero_score_above_negative_ones():
    """Signed scores (a reward, a log-likelihood): 0.0 is better than -0.5 and worse than 0.3; a missing value is last."""
    from selfimprove.selection.filters import grow_cap_to

    rows = [{"prompt_id": "a", "sample_id": f"a/{i}", "s": v} for i, v in enumerate([-0.5, 0.0, None, 0.3])]
    import random

    kept, cap = grow_cap_to(rows, 2, random.Random(0), "s")
    assert cap == 2 and [r["sample_id"] for r in kept] == ["a/3", "a/1"]
    kept, _ = grow_cap_to(rows, 4, random.Random(0), "s")
    assert [r["sample_id"] for r in kept] == ["a/3", "a/1", "a/0", "a/2"]
