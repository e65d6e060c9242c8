"""Several row builders in one select stage: sources on labelled/unlabelled prompts, weights, shares, the `source`
column, the contract with the trainer, and the per-source yield."""

import pytest

from selfimprove.builders.mixed import MixedRows, shared_counts, source_names
from selfimprove.config import SelectConfig, TaskConfig, load_pipeline
from selfimprove.errors import ConfigError
from selfimprove.prompts import PromptLibrary
from selfimprove.scoring import make_scorer
from selfimprove.tasks import make_task

# prompt -> (gold, the answers of its 6 samples)
TABLE = {"p1": ("5", ["5", "5", "4", "5", "3", "5"]),   # labelled: right and wrong samples -> a gold pair
         "p2": ("7", ["7", "7", "7", "7", "7", "7"]),   # labelled: all right -> no gold pair
         "p3": ("2", ["3", "3", "3", "2", "3", "1"]),   # unlabelled: majority 3 (wrong), least-voted 2 or 1
         "p4": ("9", ["9", "9", "9", "8", "9", "9"])}   # unlabelled: majority 9, least-voted 8


@pytest.fixture(scope="module")
def scored():
    task = make_task(TaskConfig(name="arithmetic"), PromptLibrary())
    samples = [{"prompt_id": pid, "sample_id": f"{pid}/{j}", "completion": f"{pid} says {a}", "answer": a, "model_ref": "m",
                "correct": a == gold} for pid, (gold, answers) in TABLE.items() for j, a in enumerate(answers)]
    res = make_scorer("majority_vote", task).score({}, samples)
    for col, values in res.columns.items():
        for s, v in zip(samples, values):
            s[col] = v
    prompts = {pid: {"messages": [{"role": "user", "content": pid}], "reference": gold} for pid, (gold, _) in TABLE.items()}
    return samples, prompts


def semi(**extra):
    return SelectConfig.model_validate({"correct_only": False, "max_per_prompt": None, "labelled_size": 2, "builders": [
        {"name": "correctness_pairs", "prompts": "labelled"},
        {"name": "vote_pairs", "prompts": "unlabelled", "options": {"tau": 0.5}, "weight": 0.5, **extra}]})


def test_semi_supervised_scpo_mixes_gold_pairs_and_vote_pairs_by_prompt(scored):
    samples, prompts = scored
    b = MixedRows(semi().builders, 2)
    rows, counts = b.build(samples, prompts)
    by = {(r["source"], r["prompt_id"]) for r in rows}
    assert by == {("correctness_pairs", "p1"), ("vote_pairs", "p3"), ("vote_pairs", "p4")}  # the labelled p1, p2 never vote
    gold = next(r for r in rows if r["source"] == "correctness_pairs")
    assert gold["weight"] == 1.0 and "says 5" in gold["chosen"][0]["content"] and "says 5" not in gold["rejected"][0]["content"]
    p4 = next(r for r in rows if r["prompt_id"] == "p4")
    assert p4["weight"] == pytest.approx(0.5 * (5 - 1) / 6)  # the vote margin times the source's weight
    assert p4["chosen_votes"] == 5 and gold["chosen_votes"] is None  # one schema: a column one source lacks is null
    assert counts["sources"]["correctness_pairs"]["all_correct"] == 1 and counts["rows"] == 3
    rep = b.yield_report(counts)
    assert rep["skipped"] == {"correctness_pairs: all_correct": 1}
    assert rep["audit"]["vote_pairs.pseudo_label_accuracy"] == 0.5  # p3's majority is wrong, p4's right
    cols = b.columns()
    assert {"prompt", "chosen", "rejected", "weight", "source"} <= set(cols.writes) and "chosen_votes" not in cols.writes
    assert {"correct", "cluster", "vote_count"} <= set(cols.reads) and b.weighted


def test_the_mixed_rows_write_as_one_table(scored, tmp_path):
    from selfimprove.store import read_table, write_table

    samples, prompts = scored
    rows, _ = MixedRows(semi().builders, 2).build(samples, prompts)
    write_table(tmp_path / "t.parquet", rows)
    back = read_table(tmp_path / "t.parquet")
    assert [r["source"] for r in back] == [r["source"] for r in rows] and back[0]["chosen"] == rows[0]["chosen"]


def test_a_share_caps_a_source_against_the_others(scored):
    assert shared_counts([10, 10], [None, 0.2]) == [10, 2]  # 2 of 12 <= 20%; 3 of 13 would not be
    assert shared_counts([10, 1], [None, 0.5]) == [10, 1] and shared_counts([0, 5], [None, 0.3]) == [0, 0]
    samples, prompts = scored
    rows, counts = MixedRows(semi(share=0.4).builders, 2).build(samples, prompts)
    assert [r["source"] for r in rows].count("vote_pairs") == 0  # 2 of 3 would be 67%; 1 of 2 is 50%: both over 40%
    assert counts["sources"]["vote_pairs"] == {**counts["sources"]["vote_pairs"], "rows_built": 2, "rows": 0}


def test_source_names_and_config_errors():
    assert source_names(["vote_pairs", "sft", "vote_pairs"]) == ["vote_pairs", "sft", "vote_pairs#2"]
    with pytest.raises(ValueError, match="not both"):
        SelectConfig.model_validate({"builder": {"name": "vote_pairs"}, "builders": [{"name": "sft"}]})
    with pytest.raises(ValueError, match="leave one source without a share"):
        SelectConfig.model_validate({"builders": [{"name": "sft", "share": 0.5}]})
    with pytest.raises(ValueError, match="labelled_size.*add builders"):
        SelectConfig.model_validate({"labelled_size": 3})


def test_the_mix_is_checked_against_the_trainer_before_any_model_loads(tiny_pipeline):
    from selfimprove.pipeline.loop import prepare

    path = tiny_pipeline()
    base = ["train={method: dpo, beta: 0.1}", "score=[{name: gold}, {name: majority_vote}]", "select.max_per_prompt=null"]
    ok = load_pipeline(path, [*base, "select.builders=[{name: correctness_pairs, prompts: labelled}, {name: vote_pairs, prompts: unlabelled}]",
                              "select.labelled_size=3"])
    assert prepare(ok).plan.builder.name == "correctness_pairs+vote_pairs"
    with pytest.raises(ConfigError, match="train.method dpo reads"):
        prepare(load_pipeline(path, [*base, "select.builders=[{name: sft}, {name: vote_pairs}]"]))
    with pytest.raises(ConfigError, match=r"select.builders\[0\].options"):
        prepare(load_pipeline(path, [*base, "select.builders=[{name: vote_pairs, options: {tua: 1}}]"]))
