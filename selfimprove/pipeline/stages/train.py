"""Train stage: fine-tune the iteration's starting model on the train set with the configured method
(`train.method`); output `train/model` (merged) and, with LoRA, `train/adapter`."""

from __future__ import annotations

from ...config import EvalConfig, TrainBase
from ...config.control import ControlConfig
from ...errors import StageError
from ...models import ModelRef
from ...runtime.context import RunContext
from ...runtime.runner import run_stage
from ...scoring.base import versions_of
from ...store import StageDir, tree_digest
from ...training.base import Trainer, make_trainer


def run_reference(models, iteration: int, ref: str, previous: ModelRef | None = None) -> ModelRef | None:
    """`train.reference` names inside a run (`models`: the run's HeldModels): base, previous (the model this iteration
    continues from: `previous`, which after a rollback is the best so far, not iteration k-1's), iter_<j> (j < k)."""
    if ref == "base":
        return models.base_model()
    if ref == "previous":
        return previous if previous is not None else models.iteration_model(iteration - 1)
    if ref.startswith("iter_") and ref[5:].isdigit():
        j = int(ref[5:])
        if j >= iteration:
            raise StageError(f"train.reference: {ref} does not exist yet in iteration {iteration} (use iter_0 .. iter_{iteration - 1})")
        return models.iteration_model(j)
    return None


def training_control(ctx: RunContext, control: ControlConfig | None, dev_sd: StageDir | None, eval_cfg: EvalConfig | None):
    """The control a training run does itself (in-training dev evaluation, step stop rules), or None; and the part of
    the stage's config and inputs it adds (nothing when there is none, so other runs keep their fingerprints)."""
    if control is None or not (control.eval_every_steps or control.step_rules()):
        return None, {}, {}
    from ...training.control import TrainingControl

    dev_rows = dev_sd.rows() if (dev_sd is not None and control.eval_every_steps) else []
    if control.dev_slice:
        dev_rows = sorted(dev_rows, key=lambda r: str(r["prompt_id"]))[: control.dev_slice]
    sv = eval_cfg.self_verify
    template = eval_cfg.revise_template or (sv.correct_template if sv is not None else None)
    revise = ctx.prompts.render(template) if template else None  # two-turn: acc@t2 too
    verify = ctx.prompts.render(sv.template) if sv is not None else None
    tc = TrainingControl(ctx.task, dev_rows, control.eval_every_steps, control.step_rules(), eval_cfg.max_tokens, tuple(eval_cfg.stop),
                         getattr(ctx.backend, "batch_size", 64), revise=revise, revise_max_tokens=eval_cfg.revise_max_tokens,
                         metric=control.metric, verify=verify, verify_max_tokens=sv.max_tokens if sv is not None else None)
    config = {"eval_every_steps": control.eval_every_steps, "dev_slice": control.dev_slice, "max_tokens": eval_cfg.max_tokens,
              "stop": list(eval_cfg.stop), "rules": [r.model_dump(exclude_none=True) for r in control.step_rules()]}
    if revise is not None:  # only then: other runs keep their fingerprints
        config.update(revise=revise, revise_max_tokens=eval_cfg.revise_max_tokens, metric=control.metric)
    if verify is not None:
        config.update(verify=verify, verify_max_tokens=sv.max_tokens)
    return tc, {"control": config}, ({"dev": dev_sd.fingerprint} if dev_rows else {})


def too_few_rows(iteration: int, n: int, min_rows: int, select_manifest: dict) -> str:
    """The error when the select stage left fewer rows than `train.min_rows`: why prompts gave none (the builders' and
    filters' reasons, with what each means) and what to change."""
    counts = select_manifest.get("counts", {})
    yld = select_manifest.get("yield") or {}
    reasons, units = yld.get("reasons") or {}, yld.get("units") or {}
    why = "; ".join(f"{k} {v}" + (f" {units[k]}" if k in units else "") + (f" ({reasons[k]})" if k in reasons else "")
                    for k, v in (yld.get("skipped") or {}).items())
    shown = {k: v for k, v in counts.items() if k not in ("rows", "rows_this_iteration")}
    return (f"iteration {iteration}: {n} training rows (train.min_rows = {min_rows}); the select stage counted {shown}"
            + (f"; no row from: {why}" if why else "") + ". Relax the filter or builder option that dropped them (select.*, "
            "select.builder.options), or sample more or cooler (generate.n, data.train.size, generate.temperature); where a "
            "judge's verdicts did not parse, see the score stage's judge report (parse_failure_rate) "
            "and the judge's `read_unparsed` or `mode: logprobs` option")


def train_stage(ctx: RunContext, iteration: int, cfg: TrainBase, select_sd: StageDir, start: ModelRef, trainer: Trainer | None = None,
                control: ControlConfig | None = None, dev_sd: StageDir | None = None, eval_cfg: EvalConfig | None = None,
                previous: ModelRef | None = None) -> StageDir:
    """Reads the train set (or, for a method without a select stage, the train prompts); writes the iteration's
    model (`iter_<k>`). `trainer`: the one the plan built (default: made from `train:`). `control`, `dev_sd`,
    `eval_cfg`: in-training dev evaluation and step stop rules, when `control:` asks for them. `previous`: the model the
    loop continues from (`train.reference: previous`; after a rollback, the best so far)."""
    tc, control_config, control_inputs = training_control(ctx, control, dev_sd, eval_cfg)
    inputs = {"data": select_sd.fingerprint, "model": start.fingerprint, **control_inputs}
    config = {"train": cfg.model_dump(exclude={"report_to"}), **control_config}
    versions = versions_of([(r.scorer, r.options) for r in getattr(cfg, "rewards", None) or []], ctx.task)
    if versions:  # a reward scorer whose columns changed: train again
        config["versions"] = versions
    reference = run_reference(ctx.models, iteration, getattr(cfg, "reference", "start"), previous)
    if reference is not None:  # a model of this run: its folder for the trainer, its fingerprint for the stage
        inputs["reference"] = reference.fingerprint
        cfg = cfg.model_copy(update={"reference": str(reference.path)})
    trainer = trainer if trainer is not None else make_trainer(cfg)
    trainer.cfg = cfg  # with this iteration's reference resolved
    trainer.attach(ctx.task, ctx.models, start)
    trainer.control = tc
    sd = ctx.store.stage(iteration, "train", config, inputs)

    def work(sd: StageDir):
        ctx.models.release(hand_off=True)  # one model in memory at a time: the generators (and Ray workers) free the accelerator first
        rows = select_sd.rows()
        if len(rows) < cfg.min_rows:
            raise StageError(too_few_rows(iteration, len(rows), cfg.min_rows, select_sd.manifest() or {}))
        with ctx.progress(f"iter {iteration} train", None) as bar:
            if cfg.distributed is not None:  # a child process under accelerate + DeepSpeed
                from ...training.launch import launch_training

                extra_dirs = ctx.prompts.dirs[:-1]  # the last one is the bundled folder
                stats = launch_training(cfg, start.path, rows, sd.path, task_cfg=ctx.task.cfg.model_dump(),
                                        prompts_dir=str(extra_dirs[0]) if extra_dirs else None, progress=bar.update)
            else:
                try:
                    stats = trainer.train(start.path, rows, sd.path, progress=bar.update)
                finally:  # the reverse of the release above: the trained model leaves the GPU before the next generator loads
                    from ...devices import free_accelerator_memory

                    ctx.models.release(hand_off=True)
                    free_accelerator_memory()
        counts = {"rows": len(rows), "steps": stats["steps"]}
        if stats.get("stopped_early"):
            counts["stopped_at_step"] = stats["stopped_early"].get("step")
        if stats.get("restored_best"):
            counts["kept_step"] = stats.get("best_step")
        sd.finish(
            output_fingerprint=tree_digest(sd.path / "model"),
            counts=counts,
            seconds=stats["train_seconds"],
            extra={"train": stats, "monitors": trainer.monitor_report(stats), "start_model": start.ref, "model_ref": f"iter_{iteration}"},
        )
        return None, counts, {}

    return run_stage(ctx, iteration, sd, work)
