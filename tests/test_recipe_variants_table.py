"""The recipe-variants benchmark's tables keep cells measured in earlier sessions (their run folders gone) and
replace only the cells measured now."""

import importlib.util
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load():
    spec = importlib.util.spec_from_file_location("recipe_variants", REPO / "benchmarks" / "recipe_variants.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tables_keep_earlier_cells_and_replace_measured_ones(tmp_path, monkeypatch):
    rv = load()
    out, runs = tmp_path / "out", tmp_path / "runs"
    out.mkdir()
    turn_head = "| recipe | variant | model | Acc@t1 | Acc@t2 | delta | i->c | c->i | wall |\n|---|---|---|---|---|---|---|---|---|\n"
    old_turns = ["| self_correct | mixed2 | base | 7.5 | 9.0 | 1.5 | 2.0 | 0.5 |  |",
                 "| self_correct | mixed2 | iter 1 | 9.5 | 9.5 | 0.0 | 0.0 | 0.0 | 13.9 min |",
                 "| score | add1x3 | base | 1 | 1 | 0 | 0 | 0 |  |"]
    (out / "self_correction.md").write_text(turn_head + "\n".join(old_turns) + "\n")
    head = "| " + " | ".join(rv.HEADERS) + " |\n|" + "---|" * len(rv.HEADERS) + "\n"
    (out / "recipe_variants.md").write_text(head + "| star | words2 | 1 | 0 -> 45 | 44 | iter 2: 44 | kept iter 2 | 10.4 min |\n")
    m = {"accuracy": 0.2, "accuracy_ci": [0.1, 0.3], "acc@t1": 0.2, "acc@t1_ci": [0.1, 0.3], "acc@t2": 0.25, "acc@t2_ci": [0.2, 0.3]}
    summary = {"iterations": [{"iteration": 0, "metrics": m, "dev": {"acc@t2": 0.2}},
                              {"iteration": 1, "metrics": m, "dev": {"acc@t2": 0.3}}],
               "control": {"metric": "acc@t2", "chosen": {"iteration": 1}}, "total_seconds": 60}
    (runs / "score-add1x3").mkdir(parents=True)
    (runs / "score-add1x3" / "summary.json").write_text(json.dumps(summary))
    monkeypatch.setattr(sys, "argv", ["recipe_variants.py", "--table-only", "--out", str(out), "--run-dir", str(runs)])
    rv.main()
    turns = (out / "self_correction.md").read_text().splitlines()
    assert turns[2:4] == old_turns[:2]  # self_correct's cell, measured earlier, is kept as it was
    assert [line.split("|")[3].strip() for line in turns[4:]] == ["base", "iter 1 (chosen)"]  # score's replaced
    table = (out / "recipe_variants.md").read_text()
    assert "| star | words2 |" in table and "| score | add1x3 | acc@t2 " in table
