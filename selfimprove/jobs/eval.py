"""`selfimprove eval`: run an eval suite on a model (resumable), or score predictions made elsewhere.

Output folder: `table.parquet` under `results/` (one row per sample: question, completion, answer,
correct, error, outcome for code), `metrics.json` and `summary.md`.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ..config import EvalSuiteConfig
from ..errors import ConfigError
from ..evaluation.metrics import compute_metrics, format_metric
from ..evaluation.predictions import read_predictions
from ..evaluation.run import check_eval, eval_scorers, evaluate
from ..generation import check_backend
from ..prompts import PromptLibrary
from ..runtime.context import RunContext
from ..runtime.runner import run_stage
from ..scoring.apply import score_samples
from ..store import StageDir, atomic_write_bytes, atomic_write_json, stable_hash, write_table
from ..tasks import make_task

HEADLINE_ORDER = ("accuracy", "pass@1", "acc@t1", "acc@t2", "delta", "delta_i2c", "delta_c2i")


def model_slug(ref: str) -> str:
    """A folder name for a model reference: `builtin:smollm2-135m-instruct` -> `builtin-smollm2-135m-instruct`."""
    out = "".join(c if c.isalnum() or c in "-_." else "-" for c in ref.strip("/").replace("/", "--"))
    return out.strip("-.") or "model"


def default_output(cfg: EvalSuiteConfig, predictions: Path | None) -> Path:
    leaf = f"predictions-{predictions.stem}" if predictions else model_slug(cfg.model)
    return Path(cfg.output_dir) / cfg.name / leaf


def run_suite(cfg: EvalSuiteConfig, console: Console, *, output: Path | None = None, predictions: Path | None = None,
              limit: int | None = None) -> tuple[dict, Path]:
    """Evaluate and return (metrics, output folder). Bad config, data or predictions fail before any model loads."""
    prompts = PromptLibrary(cfg.prompts_dir)
    task = make_task(cfg.task, prompts)
    check_backend(cfg.backend)
    check_eval(cfg.eval, task)
    split = cfg.data
    if limit is not None and predictions is None:
        split = split.model_copy(update={"size": min(limit, split.size or limit)})
    rows = task.load(split, "data")
    root = Path(output) if output else default_output(cfg, predictions)
    ctx = RunContext(root, task, prompts, model=cfg.model, backend=cfg.backend, console=console, ray=cfg.ray)
    if predictions is not None:
        metrics, table = score_predictions(ctx, cfg, predictions, rows[:limit] if limit else rows, rows)
        root.mkdir(parents=True, exist_ok=True)
        write_table(root / "results" / "table.parquet", table)
    else:
        e = cfg.eval
        model = ctx.models.base_model()
        config = {"eval": e.model_dump(), "backend": cfg.backend.identity(), "task": cfg.task.model_dump(), **task.template_info()}
        inputs = {"prompts": stable_hash([[r["prompt_id"], r["messages"], r["reference"]] for r in rows]), "model": model.fingerprint}
        sd = StageDir(root / "results", "eval", config, inputs)

        def work(sd: StageDir):
            out_rows, metrics = evaluate(ctx, sd, rows, model, e, f"{cfg.name}")
            if task.outcome_column:
                metrics["sandbox"] = task.sandbox().isolation()  # the layers that applied while scoring
            counts = {"num_problems": metrics.get("num_problems", 0), "samples": len(out_rows)}
            return out_rows, counts, {"metrics": metrics, "model_ref": model.ref}

        try:
            run_stage(ctx, None, sd, work)
        finally:
            ctx.close()
        metrics = dict(sd.manifest()["metrics"], num_missing=0)
        table = sd.rows()
    if task.outcome_column and "accuracy" in metrics and "pass@1" not in metrics:  # greedy pass@1, as code papers report it
        metrics["pass@1"], metrics["pass@1_ci"] = metrics["accuracy"], metrics["accuracy_ci"]
    if task.outcome_column:
        metrics["outcomes"] = {k: sum(r.get("outcome") == k for r in table) for k in sorted({r.get("outcome") for r in table} - {None})}
        if "sandbox" not in metrics:  # predictions scored now
            metrics["sandbox"] = task.sandbox().isolation()
    metrics = {"suite": cfg.name, "model_ref": metrics.get("model_ref", cfg.model), **metrics}
    atomic_write_json(root / "metrics.json", metrics)
    atomic_write_bytes(root / "summary.md", summary_markdown(cfg, metrics).encode())
    return metrics, root


def score_predictions(ctx: RunContext, cfg: EvalSuiteConfig, path: Path, rows: list[dict], all_rows: list[dict]) -> tuple[dict, list[dict]]:
    """Score completions from a file; problems without one count as `num_missing`, no model is loaded."""
    by_mode, have = read_predictions(path, all_rows)
    wanted = {r["prompt_id"] for r in rows}
    prompts = {r["prompt_id"]: r for r in rows}
    scorers = eval_scorers(ctx.task)
    scored: dict[str, list[dict]] = {}
    for mode, samples in by_mode.items():
        samples = [s for s in samples if s["prompt_id"] in wanted]
        if samples:
            out = score_samples(scorers, ctx.task, prompts, samples, f"{cfg.name} {mode} score", ctx.progress)
            scored[mode] = [dict(r, question=prompts[r["prompt_id"]]["question"]) for r in out]
    if not scored:
        raise ConfigError(f"--predictions: {path} has no prediction for any of the {len(rows)} problems")
    e = cfg.eval
    metrics = compute_metrics(scored.get("greedy"), scored.get("sampled"), revision=scored.get("revision"), prompts=prompts,
                              resamples=e.bootstrap, seed=e.seed)
    answered = have & wanted
    metrics.update(num_problems=len(answered), num_missing=len(wanted - answered), model_ref=f"predictions:{path}")
    return metrics, [r for m in scored.values() for r in m]


def headline(metrics: dict) -> list[str]:
    """Metric names in display order: accuracy, pass@k, maj@k, self-correction."""
    names = [k for k in metrics if not k.endswith("_ci") and isinstance(metrics[k], float)]
    order = {n: i for i, n in enumerate(HEADLINE_ORDER)}
    def key(n: str):
        k = n.split("@")[1] if "@" in n else ""
        return order.get(n, 50), {"pass": 0, "maj": 1}.get(n.split("@")[0], 2), int(k) if k.isdigit() else 0

    return sorted(names, key=key)


ESTIMATES_TITLE = "accuracy with gold answers for a slice only (95% intervals)"
ESTIMATE_HEADERS = ("estimate", "labelled", "unlabelled", "%", "interval")


def estimate_rows(metrics: dict) -> list[list[str]]:
    """`eval.gold_slice`'s estimates (all gold, gold only, PPI++, pseudo-labels only), one row each."""
    return [[d["method"], str(d["n_labelled"]), str(d["n_unlabelled"]), f"{100 * d['value']:.1f}",
             f"[{100 * d['ci'][0]:.1f}, {100 * d['ci'][1]:.1f}]"]
            for d in (metrics.get("accuracy_estimates") or {}).values() if isinstance(d, dict)]


def summary_markdown(cfg: EvalSuiteConfig, metrics: dict) -> str:
    lines = [f"# {cfg.name}: {metrics.get('model_ref')}", "", f"problems: {metrics.get('num_problems', 0)}, missing: {metrics.get('num_missing', 0)}", "",
             "| metric | % (± half 95% CI) |", "|---|---|"]
    for name in headline(metrics):
        lines.append(f"| {name} | {format_metric(metrics[name], metrics.get(name + '_ci'))} |")
    for key in ("by_subject", "by_level"):
        if key in metrics:
            lines += ["", f"| {key[3:]} | problems | accuracy % |", "|---|---|---|"]
            lines += [f"| {v} | {d['n']} | {100 * d['accuracy']:.1f} |" for v, d in metrics[key].items()]
    if metrics.get("outcomes"):
        lines += ["", "| outcome | samples |", "|---|---|"] + [f"| {k} | {v} |" for k, v in metrics["outcomes"].items()]
    estimates = estimate_rows(metrics)
    if estimates:
        lines += ["", f"{ESTIMATES_TITLE}:", "", "| " + " | ".join(ESTIMATE_HEADERS) + " |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(r) + " |" for r in estimates]
    if metrics.get("sandbox"):
        lines += ["", "sandbox: " + sandbox_layers(metrics["sandbox"])]
    return "\n".join(lines) + "\n"


def sandbox_layers(info: dict) -> str:
    """One line naming the isolation layers that applied (from `Sandbox.isolation()`)."""
    fs = info.get("filesystem") or {}
    hidden = f" hiding {', '.join(fs['hidden'])}" if fs.get("hidden") else ""
    namespaces = [n for n, key in (("pid", "pid_namespace"), ("IPC", "ipc_namespace")) if info.get(key)]
    own = f"own {' and '.join(namespaces)} namespace per program" if namespaces else "no pid or IPC namespace"
    seccomp = info.get("seccomp") or {}
    denied = sum(len(v) for v in (seccomp.get("denied") or {}).values())
    filt = f"seccomp denies {denied} system calls" if seccomp.get("applied") else "no seccomp filter"
    cg = info.get("cgroup") or {}
    cgroup = f"a cgroup v{cg.get('version')} around each run" if cg.get("applied") else f"no cgroup ({cg.get('reason', 'unknown')})"
    return (f"network {info.get('network')}, uid {info.get('uid')} (judge {info.get('judge_uid')}), {own}, {filt}, {cgroup}, "
            f"filesystem {fs.get('mode')}{hidden}, judge in a {info.get('judge')}, "
            f"audit hook {'on' if info.get('audit_hook') else 'off'}, limits {info.get('rlimits')}")
