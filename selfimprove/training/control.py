"""The loop's control inside a training run (GRPO, DPO, SFT on TRL): greedy accuracy on the dev split every
`control.eval_every_steps` optimizer steps (and before the first and after the last), the best checkpoint kept in
memory and restored at the end (the iteration's model is the best on dev, not the last), and the stop rules
(`control.stop_if`) checked at every logged step (`train.*`) and every evaluation (`dev.accuracy`). The curve, the
restored step and the stop go in the train stage's stats; the dev accuracy reaches the trackers with the next log."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ..config.control import StopRule
from ..control.rules import RuleTracker
from ..stats import paired_diff_ci

log = logging.getLogger("selfimprove.training")


@dataclass
class TrainingControl:
    """What a trainer needs to control itself: the task (answers and checks), the dev rows (with gold), how often to
    evaluate (None: never), the step rules, and the greedy decoding of the dev evaluation."""

    task: object
    dev_rows: list[dict] = field(default_factory=list)
    every: int | None = None
    rules: list[StopRule] = field(default_factory=list)
    max_tokens: int = 128
    stop: tuple[str, ...] = ()
    batch_size: int = 64
    revise: str | None = None  # two-turn: the instruction after the greedy attempt (eval.revise_template, rendered)
    verify: str | None = None  # self-rewarding correction: a self-check first; `revise` only after "[VERIFY] wrong"
    verify_max_tokens: int | None = None
    revise_max_tokens: int | None = None
    metric: str = "accuracy"  # what chooses the best checkpoint: accuracy, or acc@t2 with `revise`

    @property
    def evaluates(self) -> bool:
        return bool(self.every and self.dev_rows)


def dev_metrics(model, tokenizer, control: TrainingControl) -> dict[str, dict[str, float]]:
    """Greedy accuracy of the in-memory `model` on the dev rows, each prompt id's 0/1 (the eval stage's decoding):
    `accuracy`, and with `control.revise` `acc@t2`, the revision's after the instruction (two-turn self-correction)."""
    import copy

    import torch

    from ..generation import Request, SamplingParams
    from ..generation.hf import TransformersGenerator
    from ..prompts import after_attempt
    from ..scoring.parsers import parse_self_verify

    tok = copy.copy(tokenizer)
    tok.padding_side = "left"
    was_training = model.training
    model.eval()
    try:
        gen = TransformersGenerator.wrap(model, tok, control.batch_size)
        params = SamplingParams(n=1, temperature=0.0, max_tokens=control.max_tokens, stop=control.stop, seed=0)
        with torch.no_grad():
            outs = gen.generate([Request(str(r["prompt_id"]), list(r["messages"])) for r in control.dev_rows], params)
            turns = {"accuracy": [o[0].text for o in outs]}
            if control.revise is not None:
                again = SamplingParams(n=1, temperature=0.0, max_tokens=control.revise_max_tokens or control.max_tokens, stop=control.stop, seed=0)
                contexts, last = [list(r["messages"]) for r in control.dev_rows], turns["accuracy"]
                redo = list(range(len(contexts)))
                if control.verify is not None:  # check first; revise only what the model itself calls wrong
                    contexts = [after_attempt(c, t, control.verify) for c, t in zip(contexts, last)]
                    check = SamplingParams(n=1, temperature=0.0, max_tokens=control.verify_max_tokens or control.max_tokens, stop=control.stop, seed=0)
                    last = [o[0].text for o in gen.generate([Request(str(i), c) for i, c in enumerate(contexts)], check)]
                    redo = [i for i, t in enumerate(last) if parse_self_verify(t).value == "wrong"]
                second = gen.generate([Request(str(i), after_attempt(contexts[i], last[i], control.revise)) for i in redo], again) if redo else []
                final = list(turns["accuracy"])
                for i, o in zip(redo, second):
                    final[i] = o[0].text
                turns["acc@t2"] = final
    finally:
        if was_training:
            model.train()
    task = control.task
    out = {}
    for metric, texts in turns.items():
        answers = [task.read_answer(t, r) for t, r in zip(texts, control.dev_rows)]
        verdicts = task.check_detailed([str(r["reference"]) for r in control.dev_rows], answers)
        out[metric] = {str(r["prompt_id"]): float(bool(v["correct"])) for r, v in zip(control.dev_rows, verdicts)}
    if "acc@t2" in out:  # the two-turn metrics per problem, as the eval's (evaluation.metrics.self_correction)
        a, b = out["accuracy"], out["acc@t2"]
        out.update({"acc@t1": dict(a), "delta": {p: b[p] - a[p] for p in a}, "delta_i2c": {p: (1 - a[p]) * b[p] for p in a},
                    "delta_c2i": {p: a[p] * (1 - b[p]) for p in a}})
    return out


def control_callback(control: TrainingControl, tokenizer, stats: dict):
    """A TrainerCallback doing the module's work; fills `stats` with `dev_curve` ([{step, accuracy, seconds}]),
    `best_step`, `restored_best` and `stopped_early` (the rule that stopped training)."""
    from transformers import TrainerCallback

    class _Control(TrainerCallback):
        def __init__(self):
            self.tracker = RuleTracker(control.rules)
            self.best: tuple[int, float, dict, dict] | None = None  # step, chosen metric, per metric per problem, weights
            self.pending: dict[str, float] = {}
            self.last_eval_step = -1
            stats.update(dev_curve=[], best_step=None, restored_best=False, stopped_early=None)

        def _stop(self, fired, control_flow) -> None:
            if fired is not None and stats["stopped_early"] is None:
                control_flow.should_training_stop = True
                stats["stopped_early"] = fired.to_dict("step")
                log.info("stop rule fired: %s", fired.reason("step"))

        def _evaluate(self, step: int, model, control_flow) -> None:
            t0 = time.time()
            per = dev_metrics(model, tokenizer, control)
            means = {m: float(np.mean(list(v.values()))) if v else float("nan") for m, v in per.items()}
            stats["dev_curve"].append({"step": step, **means, "seconds": round(time.time() - t0, 2)})
            self.pending.update({f"dev/{m}": v for m, v in means.items()})
            self.last_eval_step = step
            acc = means.get(control.metric, means["accuracy"])
            drops = set()
            for m, values in per.items() if self.best is not None else ():
                pids = sorted(values)
                _, _, hi = paired_diff_ci(np.array([values[p] for p in pids]), np.array([self.best[2][m][p] for p in pids]))
                if hi < 0:
                    drops.add(f"dev.{m}")
            if self.best is None or acc > self.best[1]:
                weights = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}
                self.best = (step, acc, per, weights)
                stats["best_step"] = step
            if step > 0:
                self._stop(self.tracker.observe(step, {f"dev.{m}": v for m, v in means.items()}, drops), control_flow)
            else:
                self.tracker.baseline({f"dev.{m}": v for m, v in means.items()})  # the start: a baseline, never a stop

        def on_train_begin(self, args, state, control_flow, model=None, **kw):
            if control.evaluates:
                self._evaluate(0, model, control_flow)

        def on_step_end(self, args, state, control_flow, model=None, **kw):
            if control.evaluates and state.global_step % control.every == 0:
                self._evaluate(state.global_step, model, control_flow)

        def on_log(self, args, state, control_flow, logs=None, **kw):
            logs = logs if logs is not None else {}
            if self.pending:
                logs.update(self.pending)  # the trackers that come after this callback see the dev accuracy
                last = state.log_history[-1] if state.log_history else None
                if last is not None and last.get("step") == state.global_step == self.last_eval_step:
                    last.update(self.pending)  # Trainer.log stored a copy before this call: the step's logs get it too
                self.pending = {}
            values = {f"train.{k}": float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            self._stop(self.tracker.observe(state.global_step, values), control_flow)

        def on_train_end(self, args, state, control_flow, model=None, **kw):
            if not control.evaluates:
                return
            if self.last_eval_step != state.global_step:
                self._evaluate(state.global_step, model, control_flow)
            if self.best is not None and self.best[0] != state.global_step:
                import torch

                params = dict(model.named_parameters())
                with torch.no_grad():
                    for name, value in self.best[3].items():
                        params[name].copy_(value.to(params[name].device))
                stats["restored_best"] = True
                log.info("restored the best checkpoint on dev: step %s (%s %.3f)", self.best[0], control.metric, self.best[1])

    return _Control()


def add_control(trainer, control: TrainingControl | None, tokenizer, stats: dict) -> None:
    """Put the control callback first (so that trackers see the dev accuracy it adds to the logs)."""
    if control is None or not (control.evaluates or control.rules):
        return
    trainer.callback_handler.callbacks.insert(0, control_callback(control, tokenizer, stats))
