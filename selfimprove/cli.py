"""Command line: `selfimprove run PIPELINE.yaml`, `selfimprove eval SUITE.yaml`, `selfimprove report RUN_DIR`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .runtime.quiet import quiet_libraries as _quiet_libraries

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Self-improvement loops for reasoning LMs: one YAML file per method.")
console = Console(stderr=True, width=None if sys.stderr.isatty() else 140)


def _fail(message: str, code: int) -> None:
    from rich.markup import escape

    console.print(f"[bold red]error:[/bold red] {escape(message)}")  # a message's own brackets (`selfimprove[vllm]`) stay text
    raise typer.Exit(code)


def _table(title: str, headers, rows: list, fold: bool = True, always: bool = False) -> None:
    """Print one rich table (nothing when it has no rows, unless `always`)."""
    if not rows and not always:
        return
    t = Table(title=title)
    for h in headers:
        t.add_column(h, overflow="fold" if fold else "ellipsis")
    for r in rows:
        t.add_row(*r)
    console.print(t)


def print_summary(summary: dict) -> None:
    from .evaluation.report import SIGNAL_HEADERS, metrics_rows, signal_rows, stage_rows
    from .evaluation.report_control import CONTROL_HEADERS, control_line, control_rows

    headers, rows = metrics_rows(summary)
    _table(f"{summary['name']}: held-out metrics (%, ± half 95% CI)", headers, rows, fold=False)
    # what each iteration trained on and what its monitors saw: a reward can rise while accuracy falls
    _table("training signal", SIGNAL_HEADERS, signal_rows(summary))
    _table("stages", ("iteration", "stage", "seconds", "counts"), stage_rows(summary), always=True)
    _table("control (dev split; the test set never chooses)", CONTROL_HEADERS, control_rows(summary))
    line = control_line(summary)
    if line:
        console.print(line, highlight=False, markup=False)


@app.command()
def run(
    pipeline: Path = typer.Argument(..., help="Pipeline YAML, e.g. pipelines/quickstart.yaml"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a config value: --set generate.n=4 (repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate the config and the datasets, then stop (no model is loaded)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Parent folder of runs (default: run_dir in the YAML)."),
):
    """Run (or resume) a self-improvement pipeline. Finished stages are skipped."""
    from .config import load_pipeline
    from .errors import SelfImproveError

    overrides = list(set_ or [])
    if run_dir is not None:
        overrides.append(f"run_dir={run_dir}")
    try:
        cfg = load_pipeline(find_config(pipeline, "pipelines"), overrides)
        _quiet_libraries(imported_only=dry_run)  # a dry run imports no torch, transformers or datasets of its own
        from .pipeline.loop import prepare, run_pipeline

        if dry_run:
            prepared = prepare(cfg, console)
            train_rows, eval_rows = prepared.rows
            dev = f", {len(prepared.rows.dev)} dev prompts" if prepared.rows.dev else ""
            console.print(f"config OK: {len(train_rows)} train prompts, {len(eval_rows)} eval prompts{dev}, run folder {prepared.ctx.store.root}")
            base = ", after the base model's eval" if prepared.plan.eval is not None else ""
            console.print(f"each of {cfg.iterations} iteration(s){base}: {prepared.plan.describe()}", highlight=False, markup=False)
            from .config.schedule import describe

            for k in range(1, cfg.iterations + 1):
                if values := cfg.scheduled(k):
                    console.print(f"iteration {k} schedule: {describe(values)}", highlight=False, markup=False)
            return
        summary = run_pipeline(cfg, console)
    except SelfImproveError as e:
        _fail(str(e), e.exit_code)
    print_summary(summary)
    root = Path(cfg.run_dir) / cfg.name
    console.print(f"report: {root / 'report.html'}\nsummary: {root / 'summary.json'}")


def find_config(path: Path, kind: str = "evals") -> Path:
    """A YAML file, or the name of a bundled one (`gsm8k` -> evals/gsm8k.yaml shipped with the package)."""
    if path.exists():
        return path
    from .prompts import shipped_dirs

    for folder in shipped_dirs(kind):
        cand = folder / (path.name if path.suffix else f"{path.name}.yaml")
        if cand.is_file():
            return cand
    return path


@app.command("eval")
def eval_(
    suite: Path = typer.Argument(
        ..., help="Eval suite YAML (evals/gsm8k.yaml) or a bundled suite's name (gsm8k, math500, humaneval, arithmetic)."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Model reference: builtin:smollm2-135m-instruct, a hub id, a local folder, a run's iter_k/train/model."),
    predictions: Optional[Path] = typer.Option(
        None, "--predictions", help="Score completions made elsewhere (JSONL: id|question, completion|completions); no model is loaded."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Only the first N problems."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a suite value: --set eval.n=8 (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object on stdout."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Results folder (default: <output_dir>/<suite>/<model>/)."),
):
    """Measure a model on a math or code suite (accuracy, pass@k, maj@k, self-correction), or score predictions."""
    import json

    from .config import load_suite
    from .errors import SelfImproveError

    overrides = list(set_ or [])
    if model:
        overrides.append(f"model={json.dumps(model)}")
    try:
        cfg = load_suite(find_config(suite, "evals"), overrides)
        _quiet_libraries()
        from .jobs.eval import run_suite

        metrics, root = run_suite(cfg, console, output=output, predictions=predictions, limit=limit)
    except SelfImproveError as e:
        _fail(str(e), e.exit_code)
    if as_json:
        print(json.dumps(metrics, indent=None, sort_keys=False))
    else:
        print_eval(metrics)
    console.print(f"results: {root} (metrics.json, summary.md, results/table.parquet)")


def print_eval(metrics: dict) -> None:
    from .evaluation.metrics import format_metric
    from .jobs.eval import headline

    t = Table(title=f"{metrics.get('suite')}: {metrics.get('model_ref')} ({metrics.get('num_problems', 0)} problems, {metrics.get('num_missing', 0)} missing)")
    t.add_column("metric")
    t.add_column("% (± half 95% CI)", justify="right")
    for name in headline(metrics):
        t.add_row(name, format_metric(metrics[name], metrics.get(name + "_ci")))
    console.print(t)
    for key in ("by_subject", "by_level"):
        if key in metrics:
            b = Table(title=key.replace("_", " "))
            for h in (key[3:], "problems", "accuracy %"):
                b.add_column(h)
            for v, d in metrics[key].items():
                b.add_row(v, str(d["n"]), f"{100 * d['accuracy']:.1f}")
            console.print(b)
    from .jobs.eval import ESTIMATE_HEADERS, ESTIMATES_TITLE, estimate_rows

    _table(ESTIMATES_TITLE, ESTIMATE_HEADERS, estimate_rows(metrics), fold=False)
    if metrics.get("outcomes"):
        console.print("outcomes: " + ", ".join(f"{k} {v}" for k, v in metrics["outcomes"].items()))
    if metrics.get("sandbox"):
        from .jobs.eval import sandbox_layers

        console.print("sandbox: " + sandbox_layers(metrics["sandbox"]))


def job_overrides(set_: list[str] | None, input_: str | None, model: str | None) -> list[str]:
    """A job's `--set` overrides, with `--input` and `--model` as the ones they stand for."""
    import json

    overrides = list(set_ or [])
    if input_:
        overrides.append(f"input.source={json.dumps(input_)}")
    if model:
        overrides.append(f"model={json.dumps(model)}")
    return overrides


def print_job_summary(summary: dict, as_json: bool, markdown, where: str) -> None:
    """A batch job's summary: one JSON object on stdout (`--json`) or its markdown on the console; then where it is."""
    import json

    if as_json:
        print(json.dumps(summary, default=str))
    else:
        console.print(markdown(summary))
    console.print(where)


@app.command()
def judge(
    job: Path = typer.Argument(..., help="Judge job YAML (judges/pointwise.yaml) or a bundled job's name."),
    input_: Optional[str] = typer.Option(None, "--input", "-i", help="Rows to judge: .jsonl / .parquet / .csv / dataset folder / hub id."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Results folder (default: <output_dir>/<name>/)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="The judge model (default: the job's `model`)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a job value: --set shard_size=16 (repeatable)."),
    diagnose: bool = typer.Option(False, "--diagnose", help="Also measure position bias, length bias, agreement with gold, self-preference, drift."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
):
    """Score a dataset of (prompt, response[, response_b]) rows with an LLM judge or reward model (resumable)."""

    from .config import load_job
    from .errors import SelfImproveError

    try:
        cfg = load_job(find_config(job, "judges"), job_overrides(set_, input_, model))
        _quiet_libraries()
        from .jobs.judge import run_job

        summary, root = run_job(cfg, console, output=output, diagnose=diagnose)
    except SelfImproveError as e:
        _fail(str(e), e.exit_code)
    from .judging.diagnostics import summary_markdown

    print_job_summary(summary, as_json, summary_markdown, f"results: {root} (table.parquet, summary.json, summary.md)")


@app.command()
def generate(
    job: Path = typer.Argument(..., help="Generate job YAML (jobs/sample.yaml) or a bundled job's name."),
    input_: Optional[str] = typer.Option(None, "--input", "-i", help="Rows: .jsonl / .parquet / .csv / dataset folder / hub id."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Results folder (default: <output_dir>/<name>/)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="The model that samples (default: the job's `model`)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a job value: --set sampling.n=8 (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
):
    """Sample n completions per input row from any backend (sharded, resumable; on Ray with `ray:`)."""

    from .config import load_generate_job
    from .errors import SelfImproveError

    try:
        cfg = load_generate_job(find_config(job, "jobs"), job_overrides(set_, input_, model))
        _quiet_libraries()
        from .jobs.generate import run_generate_job

        summary, root = run_generate_job(cfg, console, output=output)
    except SelfImproveError as e:
        _fail(str(e), e.exit_code)
    from .jobs.generate import summary_markdown

    print_job_summary(summary, as_json, summary_markdown, f"results: {root} (samples/table.parquet, summary.json, summary.md)")


@app.command()
def recipes(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON on stdout.")):
    """List the shipped recipes (pipelines/*.yaml): method, paper, what training uses, one line each."""
    import json

    from rich.table import Table

    from .jobs.recipes import list_recipes, recipes_dir

    rows = list_recipes()
    if as_json:
        print(json.dumps(rows))
        return
    table = Table("recipe", "method", "paper", "labels", "train", "what an iteration does", title=f"recipes in {recipes_dir()}")
    for r in rows:
        if "error" in r:
            table.add_row(r["file"], "[red]invalid[/red]", "", "", "", r["error"])
        else:
            table.add_row(r["file"] + (f"\n(GPU: {r['gpu']})" if r.get("gpu") else ""), r["method"], r["paper"], r["labels"],
                          f"{r['train']} x {r['iterations']}", r["summary"])
    console.print(table)
    console.print("run one: selfimprove run pipelines/<recipe>.yaml (--dry-run to check it); docs/methods.md describes each")


@app.command()
def report(run: Path = typer.Argument(..., help="Run folder, e.g. runs/quickstart")):
    """Rebuild summary.json, accuracy.png and report.html from a run folder's tables and manifests."""
    from .evaluation.report import build_summary, write_report

    if not (run / "config.json").exists():
        _fail(f"{run} is not a run folder (no config.json)", 2)
    summary = build_summary(run)
    path = write_report(run, summary)
    print_summary(summary)
    console.print(f"report: {path}")


@app.command()
def version():
    """Print the versions of selfimprove and the libraries it drives."""
    from .store import library_versions

    for k, v in library_versions().items():
        print(f"{k} {v}")


def main() -> None:  # pragma: no cover
    logging.basicConfig(level=logging.WARNING)
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
