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
