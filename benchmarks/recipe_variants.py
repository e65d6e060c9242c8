"""Recipes beyond the task they were tuned on: each shipped recipe on arithmetic variants that were not used to
choose its settings (the recipes were tuned on 2-digit addition, data seeds 1/2/3), with the controller on, and one
table: base -> chosen model on the held-out test set with intervals, and what the controller did.

    python benchmarks/recipe_variants.py [--recipes ttrl scpo] [--variants sub2 add1x3] [--out benchmarks/results]

Each cell is `selfimprove run pipelines/<recipe>.yaml` with the variant's task options and data seeds 11/12/13
(train/test/dev) in its own run folder (runs/variants/<recipe>-<variant>); a finished cell is not run again (the
store resumes), so the matrix can be filled over several sessions. The table is written to <out>/recipe_variants.md
and, for the default --out, into the README between its recipe-variants-table markers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = ["quickstart", "scpo", "ttrl", "iwsi", "self_rewarding", "self_correct", "bstar", "sharpening", "sharpening_rl", "scpo_semi",
           "meta_rewarding", "star", "critique_refine", "score", "self_verify_correct", "self_verify_rl"]
# A recipe that starts from another's chosen model on the same variant (self-rewarding correction's stage 2 from stage 1).
STARTS_FROM = {"self_verify_rl": "self_verify_correct"}
# None of these chose a recipe's settings. The base model's greedy accuracy on 64 problems of each (seed 12, max_tokens
# 64; `selfimprove eval arithmetic --set task.options=...`): add1x3 7.8%, mixed2 7.8%, words2 0.0% (pass@4 9.4%),
# sub2 1% (200 problems), against 19.5% on the tuning task.
VARIANTS = {
    "add1x3": {"digits": 1, "operands": 3, "operations": ["+"]},
    "mixed2": {"digits": 2, "operations": ["+", "-"]},
    "words2": {"digits": 2, "operations": ["+"], "word_problems": True},
    "sub2": {"digits": 2, "operations": ["-"]},
}
DEFAULT_VARIANTS = ["add1x3", "mixed2", "words2"]
SEEDS = {"train": 11, "eval": 12, "dev": 13}


def cell_args(recipe: str, variant: str, run_dir: Path) -> list[str]:
    sets = {"name": f"{recipe}-{variant}", "task.options": json.dumps(VARIANTS[variant])}
    sets.update({f"data.{split}.seed": str(seed) for split, seed in SEEDS.items()})
    if recipe in STARTS_FROM:
        first = run_dir / f"{STARTS_FROM[recipe]}-{variant}" / "summary.json"
        if not first.exists():
            raise SystemExit(f"{recipe}-{variant} starts from {STARTS_FROM[recipe]}-{variant}'s chosen model: run that cell first")
        sets["model"] = json.loads(first.read_text())["control"]["chosen"]["path"]
    args = [sys.executable, "-m", "selfimprove", "run", str(REPO / "pipelines" / f"{recipe}.yaml"), "--run-dir", str(run_dir)]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    return args


def pct(value, ci, metric: str = "accuracy") -> str:
    """A percentage with its interval, named when the metric is not greedy accuracy (self_correct chooses on acc@t2)."""
    if value is None:
        return "n/a"
    name = "" if metric == "accuracy" else f"{metric} "
    return name + (f"{100 * value:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else f"{100 * value:.1f}")


def in_training(run: Path, k: int) -> str | None:
    """What in-training evaluation did in iteration k: kept an earlier checkpoint than the last (None: the last)."""
    p = run / f"iter_{k}" / "train" / "manifest.json"
    t = (json.loads(p.read_text()).get("train") or {}) if p.exists() else {}
    curve = t.get("dev_curve") or []
    if not t.get("restored_best") or not curve or t.get("best_step") == curve[-1]["step"]:
        return None
    best = next(c for c in curve if c["step"] == t["best_step"])
    if best["accuracy"] <= curve[-1]["accuracy"]:
        return None
    what = "its start (step 0)" if t["best_step"] == 0 else f"step {t['best_step']} of {curve[-1]['step']}"
    return f"iter {k} training kept {what}: dev {100 * best['accuracy']:.1f} vs {100 * curve[-1]['accuracy']:.1f} at the end"


def row(recipe: str, variant: str, summary: dict, wall: float | None, run: Path | None = None) -> list[str]:
    its = {it["iteration"]: it for it in summary["iterations"]}
    c = summary.get("control") or {}
    base = its.get(0, {}).get("metrics") or {}
    metric = c.get("metric") if c.get("metric") in base else "accuracy"
    ch = c.get("chosen") or {}
    last = max(i for i, it in its.items() if it.get("metrics"))
    last_m = its[last]["metrics"]
    did = []
    if c.get("rolled_back"):
        did.append(f"rolled back after iter {', '.join(map(str, c['rolled_back']))}")
    final_worse = [k for k in c.get("clearly_worse") or [] if k not in (c.get("rolled_back") or [])]
    if final_worse:
        did.append(f"iter {', '.join(map(str, final_worse))} clearly worse on dev")
    if c.get("stopped"):
        did.append(f"stopped: {c['stopped'].get('reason')}")
    kept = f"kept iter {ch.get('iteration')}" + (" (base)" if ch.get("iteration") == 0 else "")
    did.insert(0, kept)
    if run is not None:
        did += [x for k in sorted(its) if k > 0 and (x := in_training(run, k))]
    chosen_m = its.get(ch.get("iteration"), {}).get("metrics") or {}
    dev_metric = c.get("metric") or "accuracy"
    base_dev, chosen_dev = its.get(0, {}).get("dev") or {}, its.get(ch.get("iteration"), {}).get("dev") or {}
    dev = f"{pct(base_dev.get(dev_metric), None, dev_metric)} -> {pct(chosen_dev.get(dev_metric), None)}"
    return [recipe, variant, pct(base.get(metric), base.get(f"{metric}_ci"), metric), dev, pct(chosen_m.get(metric), chosen_m.get(f"{metric}_ci")),
            f"iter {last}: {pct(last_m.get(metric), last_m.get(f'{metric}_ci'))}", "; ".join(did),
            f"{(wall or summary.get('total_seconds') or 0) / 60:.1f} min"]


HEADERS = ["recipe", "variant", "base (test, %, 95% CI)", "dev (64 problems, %): base -> chosen",
           "chosen model (test %)", "last iteration (test %)", "controller", "wall"]


TURN_KEYS = [("acc@t1", "Acc@t1"), ("acc@t2", "Acc@t2"), ("delta", "delta"), ("delta_i2c", "i->c"), ("delta_c2i", "c->i")]


def turn_rows(recipe: str, variant: str, summary: dict, wall: float | None) -> list[list[str]]:
    """The self-correction metrics of a two-turn recipe's cell (base, chosen, last iteration), each with its interval."""
    its = {it["iteration"]: it for it in summary["iterations"] if (it.get("metrics") or {}).get("acc@t2") is not None}
    if not its:
        return []
    chosen = ((summary.get("control") or {}).get("chosen") or {}).get("iteration")
    out = []
    for k in sorted({0, chosen if chosen in its else 0, max(its)}):
        m = its[k]["metrics"]
        what = "base" if k == 0 else f"iter {k}" + (" (chosen)" if k == chosen else "")
        cells = [pct(m.get(key), m.get(f"{key}_ci")) for key, _ in TURN_KEYS]
        out.append([recipe, variant, what, *cells, f"{(wall or summary.get('total_seconds') or 0) / 60:.1f} min" if k == max(its) else ""])
    return out


def previous_rows(table: Path) -> dict[tuple[str, str], list[str]]:
    """The rows of an earlier table, by (recipe, variant)."""
    if not table.exists():
        return {}
    rows = {}
    for line in table.read_text().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(HEADERS) - 1:  # measured before the table had its dev column
            cells.insert(3, "n/a")
        if len(cells) == len(HEADERS):
            rows[(cells[0], cells[1])] = cells
    return rows


def previous_turn_rows(table: Path) -> dict[tuple[str, str], list[list[str]]]:
    """The rows of an earlier self-correction table, grouped by (recipe, variant)."""
    rows: dict[tuple[str, str], list[list[str]]] = {}
    if table.exists():
        for line in table.read_text().splitlines()[2:]:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == len(TURN_KEYS) + 4:
                rows.setdefault((cells[0], cells[1]), []).append(cells)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", nargs="*", default=RECIPES)
    ap.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    ap.add_argument("--run-dir", type=Path, default=REPO / "runs" / "variants")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--table-only", action="store_true", help="collect the finished cells, run nothing")
    a = ap.parse_args()
    walls_path = a.run_dir / "walls.json"
    walls = json.loads(walls_path.read_text()) if walls_path.exists() else {}
    for recipe in a.recipes:
        for variant in a.variants:
            name = f"{recipe}-{variant}"
            if a.table_only or (a.run_dir / name / "summary.json").exists():
                continue
            print(f"== {name}", flush=True)
            t = time.time()
            rc = subprocess.run(cell_args(recipe, variant, a.run_dir), cwd=REPO).returncode
            if rc == 0:
                walls[name] = time.time() - t
                a.run_dir.mkdir(parents=True, exist_ok=True)
                walls_path.write_text(json.dumps(walls, indent=1))
            else:
                print(f"{name} failed (exit {rc})", flush=True)
    table = a.out / "recipe_variants.md"
    rows = previous_rows(table)  # cells measured in earlier sessions whose run folders are gone stay in the table
    for recipe in RECIPES:
        for variant in VARIANTS:
            p = a.run_dir / f"{recipe}-{variant}" / "summary.json"
            if p.exists():
                rows[(recipe, variant)] = row(recipe, variant, json.loads(p.read_text()), walls.get(f"{recipe}-{variant}"), p.parent)
    order = {(r, v): (i, j) for i, r in enumerate(RECIPES) for j, v in enumerate(VARIANTS)}  # rows in RECIPES order
    turns = previous_turn_rows(a.out / "self_correction.md")  # cells whose run folders are gone keep their rows
    for recipe in RECIPES:
        for variant in VARIANTS:
            p = a.run_dir / f"{recipe}-{variant}" / "summary.json"
            if p.exists() and (cell := turn_rows(recipe, variant, json.loads(p.read_text()), walls.get(f"{recipe}-{variant}"))):
                turns[(recipe, variant)] = cell
    if turns:  # the self-correction recipes side by side on the same problems (test set, %, 95% CI)
        a.out.mkdir(parents=True, exist_ok=True)
        head = ["recipe", "variant", "model", *(name for _, name in TURN_KEYS), "wall"]
        body = [r for key in sorted(turns, key=lambda k: order.get(k, (99, 99))) for r in turns[key]]
        (a.out / "self_correction.md").write_text("\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                                                             + ["| " + " | ".join(r) + " |" for r in body]) + "\n")
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cells) + " |" for _, cells in sorted(rows.items(), key=lambda kv: order.get(kv[0], (99, 99)))]
    a.out.mkdir(parents=True, exist_ok=True)
    table.write_text("\n".join(lines) + "\n")
    readme = REPO / "README.md"
    text = readme.read_text()
    start, end = "<!-- recipe-variants-table -->", "<!-- /recipe-variants-table -->"
    if start in text and end in text and a.out == REPO / "benchmarks" / "results":  # the README shows the table as it stands
        head, rest = text.split(start, 1)
        readme.write_text(head + start + "\n" + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
