"""The self-improvement loop: prompts -> [stages of the training method] x iterations, evaluated on held-out prompts.

Iteration 0 evaluates the base model. Iteration k runs the stages its training method declares (SFT:
generate -> score -> select -> train; a method that generates inside training declares fewer), from model k-1
(or from the base model when `train.init: base`), and its trained model is `iter_k`. Every stage is skipped
when its manifest matches, so a rerun of a finished pipeline does no work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from ..builders.mixed import make_select_builder
from ..config import PipelineConfig
from ..config.schedule import describe, normalise
from ..errors import ConfigError
from ..evaluation.run import check_eval
from ..generation import check_backend
from ..optional import require
from ..prompts import PromptLibrary
from ..runtime.context import RunContext
from ..runtime.tracking import Trackers, check_trackers
from ..scoring import make_scorers
from ..scoring.base import REVISION_COLUMNS, SAMPLE_COLUMNS
from ..selection import filter_columns
from ..store import atomic_write_json
from ..tasks import make_task
from ..training.base import make_trainer
from .contracts import check_chain
from .controller import Controller
from .plan import Iteration, Plan, build_plan
from .stages.data import PromptRows, load_prompt_rows, prompts_stage
from .stages.propose import problem_judge
from .stages.refine import REFINE_COLUMNS
from .stages.search import search_stage
from .stages.verify import VERIFY_COLUMNS


def check_stages(stages: list[str], method_stages: tuple[str, ...], method: str) -> None:
    """`stages:` may stop an iteration early, never skip a stage the method needs before a later one."""
    for stage in stages:
        if stage == "eval":
            continue
        if stage not in method_stages:
            raise ConfigError(f"stages: {stage} is not a stage of train.method {method} (an iteration runs {list(method_stages)})")
        for needs in method_stages[: method_stages.index(stage)]:
            if needs not in stages:
                raise ConfigError(f"stages: {stage} needs {needs}")


@dataclass(frozen=True)
class Prepared:
    """What `prepare()` checked and built: the run context, both prompt splits, the iteration plan (which holds the
    plug-ins, built once) and, where `schedule:` changes a stage's settings, the plan from that iteration on.
    Unpacks as `ctx, rows`."""

    ctx: RunContext
    rows: PromptRows
    plan: Plan
    scheduled: dict[int, Plan] = field(default_factory=dict)

    def __iter__(self):
        return iter((self.ctx, self.rows))

    def plan_for(self, k: int) -> Plan:
        """The plan iteration k runs: the latest scheduled one at or before k, else the base plan."""
        due = [i for i in self.scheduled if i <= k]
        return self.scheduled[max(due)] if due else self.plan


def check_refine(cfg: PipelineConfig, scored: set[str], prompts: PromptLibrary) -> None:
    """The refine stage's template exists and what it reads (its condition, its variables) is among the `scored`
    columns."""
    r = cfg.refine
    if r.hint and cfg.task.name in ("humaneval", "mbpp"):
        raise ConfigError("refine.hint: this task's reference is its tests, not an answer to hint at")
    prompts.require(r.template, "refine.template")
    for key, col in [("refine.when.column", r.when.column), ("refine.when.prompt_without", r.when.prompt_without),
                     *[(f"refine.variables[{i}]", v) for i, v in enumerate(r.variables)]]:
        if col is not None and col not in scored:
            raise ConfigError(f"{key}: no scorer in score: writes {col!r}; add the scorer that writes it (the critic writes "
                              "critique and critic_verdict, gold writes correct)")


def check_verify(cfg: PipelineConfig, scored: set[str], prompts: PromptLibrary, task) -> None:
    """The verify stage's templates exist, and the gold verifier that types its trajectories runs before it."""
    if task.kind != "answer":
        raise ConfigError(f"verify: self-rewarding correction checks answers; task {task.name} is judged by tests")
    prompts.require(cfg.verify.template, "verify.template")
    prompts.require(cfg.verify.correct_template, "verify.correct_template")
    if "correct" not in scored:
        raise ConfigError("verify: keeps the self-evaluations that agree with gold and the revisions that are right: add the gold "
                          "scorer to score: (- name: gold)")
    if cfg.select.correct_only:
        raise ConfigError("verify: its trajectories start from wrong attempts too (D1), which select.correct_only drops before the "
                          "builder; set select.correct_only: false (the builder keeps what gold says)")


def iteration_plan(cfg: PipelineConfig, task, prompts: PromptLibrary) -> Plan:
    """The plug-ins of one iteration's settings, built and checked against each other (no model loads)."""
    trainer = make_trainer(cfg.train)
    check_stages(cfg.stages, type(trainer).stages, cfg.train.method)
    scorers = make_scorers(cfg.score, task)
    builder = make_select_builder(cfg.select)
    generated = SAMPLE_COLUMNS + (REVISION_COLUMNS if cfg.generate.revise is not None or cfg.refine is not None else ())
    scored = set(check_chain(scorers, ["generate", "score"], generated=generated)["score"])  # what refine and search may read
    if cfg.propose is not None:
        if task.kind != "answer":
            raise ConfigError(f"propose: votes on the proposed problems' answers; task {task.name} is judged by tests, not answers")
        prompts.require(cfg.propose.template, "propose.template")
        if cfg.propose.judge is not None:
            problem_judge(task, cfg.propose)  # its options and template, before any model loads
    if cfg.refine is not None:
        check_refine(cfg, scored, prompts)
        generated += REFINE_COLUMNS
    if cfg.verify is not None:
        check_verify(cfg, scored, prompts, task)
        generated += tuple(c for c in VERIFY_COLUMNS + REVISION_COLUMNS if c not in generated)
    check_chain(scorers, cfg.stages, filter_columns(cfg.select), builder, trainer, generated)
    g = cfg.select.gold_rows
    if g is not None and task.kind != "answer":
        raise ConfigError(f"select.gold_rows: task {task.name} has tests, not answers, as gold; its reference is no solution to train on")
    if g is not None:
        if not {"prompt", "completion", "messages"} <= set(builder.columns().writes):
            raise ConfigError(f"select.gold_rows adds SFT rows, but select.builder {builder.name} writes other rows; use the sft builder")
        prompts.require(g.template, "select.gold_rows.template")
    if cfg.generate.revise is not None:
        prompts.require(cfg.generate.revise.template, "generate.revise.template")
    trainer.check(task)
    if cfg.train.distributed is not None:
        require("deepspeed", "train.distributed")
    c = cfg.control
    if (c.eval_every_steps or c.step_rules()) and not getattr(type(trainer), "supports_control", False):
        raise ConfigError(f"control: train.method {cfg.train.method} does not evaluate or check rules during training; drop "
                          "control.eval_every_steps and the train.* rules, or use sft, dpo or grpo")
    if c.eval_every_steps and "train" not in cfg.stages:
        raise ConfigError("control.eval_every_steps evaluates during the train stage, which stages: leaves out")
    check_trackers(cfg.train.report_to, "train.report_to")
    if cfg.search is not None:
        if cfg.search.column not in scored:
            raise ConfigError(f"search.column: no scorer in score: writes {cfg.search.column!r} (the gold scorer writes `correct`)")
        if "correct" not in scored:
            raise ConfigError("search: the balance score counts the right samples it keeps: add the gold scorer to score:")
        if cfg.select.correct_only:
            raise ConfigError("search: sweeps a threshold over the samples' scores, but select.correct_only keeps only the right "
                              "ones whatever the threshold; set select.correct_only: false (the searched threshold selects)")
        from .stages.search import chosen_settings

        probe = chosen_settings(cfg.search.temperatures[0], cfg.search.thresholds[0], cfg.search.column)
        try:  # what the search will set must make a valid iteration
            cfg.with_values(probe, f"with the search's settings ({probe})")
        except ValueError as e:
            raise ConfigError(str(e)) from None
    return build_plan(cfg, trainer, scorers, builder)


def prepare(cfg: PipelineConfig, console: Console | None = None) -> Prepared:
    """Everything that can fail on bad input, before any model loads: stages, task, templates, scorers, the column
    chain (for every iteration a schedule changes), optional packages, datasets; then the plan of an iteration. No
    eval problem is among the train rows."""
    prompts = PromptLibrary(cfg.prompts_dir)
    task = make_task(cfg.task, prompts)
    check_backend(cfg.backend)
    check_trackers(cfg.report_to)
    check_eval(cfg.eval, task)
    plan = iteration_plan(cfg, task, prompts)
    scheduled = {}
    for k in sorted({k for by_k in normalise(cfg.schedule, cfg.iterations).values() for k in by_k if k <= cfg.iterations}):
        try:
            scheduled[k] = iteration_plan(cfg.at_iteration(k), task, prompts)
        except ConfigError as e:
            raise ConfigError(f"schedule, iteration {k} ({cfg.scheduled(k)}): {e}") from None
    ctx = RunContext(Path(cfg.run_dir) / cfg.name, task, prompts, model=cfg.model, backend=cfg.backend, console=console, ray=cfg.ray)
    return Prepared(ctx, load_prompt_rows(task, cfg.data, ctx.warn), plan, scheduled)


def searched_plan(ctx: RunContext, k: int, cfg: PipelineConfig, train_sd, model) -> Plan:
    """B-STaR: run iteration k's search stage with `model`, then the plan of `cfg` with the settings it chose."""
    sd = search_stage(ctx, k, cfg, train_sd, model)
    chosen = (sd.manifest() or {})["chosen"]
    ctx.console.print(f"[dim]iteration {k}[/dim] search chose: {describe(chosen)}")
    try:
        return iteration_plan(cfg.with_values(chosen, f"at iteration {k} (search chose {chosen})"), ctx.task, ctx.prompts)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def run_pipeline(cfg: PipelineConfig, console: Console | None = None) -> dict:
    """Run (or resume) the whole pipeline; returns the summary that is also written to summary.json."""
    from ..evaluation.report import build_summary, write_report

    ctx, rows, plan = (p := prepare(cfg, console)).ctx, p.rows, p.plan
    ctx.store.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(ctx.store.root / "config.json", cfg.model_dump())
    if cfg.report_to:
        ctx.trackers = Trackers(cfg.report_to, ctx.store.root, cfg.name, cfg.model_dump())
    try:
        tables = prompts_stage(ctx, rows)
        train_sd, eval_sd = tables
        controller = Controller(cfg, tables)
        base = ctx.models.base_model()
        if plan.eval is not None:
            plan.eval.run(ctx, Iteration(0, cfg.seed, {"eval_prompts": eval_sd}, base, base))
            controller.measure(ctx, 0, base)
        history: dict[str, list] = {}
        current = base
        for k in range(1, cfg.iterations + 1 if plan.stages else 1):
            plan, cfg_k, values = p.plan_for(k), cfg.at_iteration(k), cfg.scheduled(k)
            if values:
                ctx.console.print(f"[dim]iteration {k}[/dim] schedule: {describe(values)}")
            if cfg_k.search is not None:
                plan = searched_plan(ctx, k, cfg_k, train_sd, current)
            it = Iteration(k, cfg.seed + k, {"prompts": train_sd, "eval_prompts": eval_sd, "dev_prompts": tables.dev}, current,
                           base if cfg_k.train.init == "base" else current, history)
            early = None
            for stage in plan.stages:
                if stage.name == "train" and plan.eval is not None and (early := controller.before_training(ctx, k)) is not None:
                    ctx.warn(f"stopping before training iteration {k}: {early.stop.get('reason')}")
                    break
                out = stage.run(ctx, it)
                if stage.output is not None:
                    it.tables[stage.output] = out
                    history.setdefault(stage.output, []).append(out)
            if early is not None:
                break
            if "train" in plan.names:
                current = it.model = ctx.models.iteration_model(k)
                if plan.eval is not None:
                    plan.eval.run(ctx, it)
                    controller.measure(ctx, k, it.model)
                    decision = controller.decide(ctx, k)
                    current = ctx.models.iteration_model(decision.next_start)
                    if decision.stop is not None:
                        ctx.warn(f"stopping after iteration {k}: {decision.stop.get('reason')}")
                        break
    finally:
        ctx.close()
        if ctx.trackers is not None:
            ctx.trackers.close()
    summary = build_summary(ctx.store.root, ctx.reports)
    write_report(ctx.store.root, summary)
    return summary
