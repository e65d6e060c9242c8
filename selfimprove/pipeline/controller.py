"""The loop's controller: after every iteration's test eval it evaluates the dev split (`iter_<k>/dev`) and samples the
probe set (`iter_<k>/probe`), then decides (`iter_<k>/control`): the best model so far on dev, where the next iteration
starts (the best, when this one is clearly worse and `control.rollback` is on), and whether a stop rule fired (per
iteration here; per step inside training). Every decision is recomputed from the stages' manifests, so a resumed run
decides as the first one did. The held-out test set is never read here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import PipelineConfig
from ..control.choice import DevScore, decide, paired
from ..control.health import majorities, majority_drift
from ..control.rules import first_firing
from ..models import ModelRef
from ..runtime.context import RunContext
from ..runtime.runner import run_stage
from ..store import StageDir, read_json, stable_hash
from .stages.data import PromptTables
from .stages.evaluate import eval_stage
from .stages.probe import probe_stage

REWARD_KEYS = ("reward", "rewards/margins")  # what "the training reward" is for the alarm: GRPO's, DPO's margin


PRE_TRAINING = ("select", "judge")  # rule sources measured before training: checked before it (Controller.before_training)


@dataclass(frozen=True)
class Decision:
    """After iteration `k`: where `k + 1` starts, the best so far, and the stop (None: go on)."""

    k: int
    next_start: int
    best: int | None
    stop: dict | None
    record: dict


def last_quarter(steps: list[dict], key: str) -> float | None:
    vals = [s[key] for s in steps if isinstance(s.get(key), (int, float))]
    if not vals:
        return None
    return float(np.mean(vals[-max(1, len(vals) // 4):]))


def first_quarter(steps: list[dict], key: str) -> float | None:
    vals = [s[key] for s in steps if isinstance(s.get(key), (int, float))]
    return float(np.mean(vals[: max(1, len(vals) // 4)])) if vals else None


class Controller:
    """Measures (dev, probe) and decides after each iteration; `summary()` for summary.json."""

    def __init__(self, cfg: PipelineConfig, tables: PromptTables):
        self.cfg, self.c, self.tables = cfg, cfg.control, tables
        self.dev: dict[int, StageDir] = {}
        self.probe: dict[int, StageDir] = {}
        self.decisions: list[Decision] = []

    @property
    def dev_eval(self):
        """The dev split's evaluation: the eval section's greedy decoding (and revision turn), no sampling."""
        return self.cfg.eval.model_copy(update={"n": 0, "sample_problems": None})

    @property
    def active(self) -> bool:
        """Whether there is anything to decide on: a dev split, a probe set or a stop rule (else no control stage)."""
        return self.tables.dev is not None or self.c.probe is not None or bool(self.c.stop_if)

    # -- measuring ------------------------------------------------------------------------------
    def measure(self, ctx: RunContext, k: int, model: ModelRef) -> None:
        if self.tables.dev is not None:
            self.dev[k] = eval_stage(ctx, k, self.dev_eval, self.tables.dev, model, name="dev")
        if self.c.probe is not None:
            self.probe[k] = probe_stage(ctx, k, self.c.probe, self.cfg.eval, self.tables.train, model)

    def dev_score(self, k: int) -> DevScore | None:
        """Iteration k's value of the metric that chooses (`control.metric`)."""
        return self._dev_metric(k, self.c.metric)

    # -- the numbers rules read ---------------------------------------------------------------------
    def values(self, ctx: RunContext, k: int) -> dict[str, float]:
        out: dict[str, float] = {}
        if k in self.dev:
            m = (self.dev[k].manifest() or {}).get("metrics") or {}
            out.update({f"dev.{n}": float(v) for n, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        if k in self.probe:
            h = (self.probe[k].manifest() or {}).get("health") or {}
            out.update({f"probe.{n}": float(v) for n, v in h.items() if isinstance(v, (int, float))})
            if k - 1 in self.probe:
                drift = majority_drift(majorities(self.probe[k - 1].rows()), majorities(self.probe[k].rows()),
                                       lambda pairs: [ok for ok, _ in ctx.task.check([a for a, _ in pairs], [b for _, b in pairs])])
                if drift is not None:
                    out["probe.majority_drift"] = drift
        it = ctx.store.root / f"iter_{k}"
        train = _manifest(it / "train")
        steps = (train.get("train") or {}).get("per_step") or []
        for key in sorted({key for s in steps for key in s if key != "step"}):
            v = last_quarter(steps, key)
            if v is not None:
                out[f"train.{key}"] = v
        judge = (_manifest(it / "score").get("judge") or {}).get("scores") or {}
        for col, d in judge.items():
            for stat in ("mean", "at_max"):
                if isinstance(d.get(stat), (int, float)):
                    out[f"judge.{col}.{stat}"] = float(d[stat])
        audit = (_manifest(it / "select").get("yield") or {}).get("audit") or {}
        out.update({f"select.{n}": float(v) for n, v in audit.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        alarm = self.reward_up_dev_down(k, steps)
        if alarm is not None:
            out["alarm.reward_up_dev_down"] = alarm
        return out

    def start_of(self, k: int) -> int:
        """The iteration whose model iteration k started from: k - 1, or after a rollback the best before it."""
        return next((d.next_start for d in self.decisions if d.k == k - 1), k - 1)

    def reward_up_dev_down(self, k: int, steps: list[dict]) -> float | None:
        """1.0 when the training reward rose over iteration k (its last quarter of steps above its first) while the
        dev metric fell from the model k started from (k - 1's, or after a rollback the best's); None when either is
        not measured."""
        key = next((r for r in REWARD_KEYS if any(r in s for s in steps)), None)
        now, before = self.dev_score(k), self.dev_score(self.start_of(k))
        if key is None or now is None or before is None:
            return None
        rose = last_quarter(steps, key) > first_quarter(steps, key)
        return float(rose and now.value < before.value)

    def drops(self, k: int, best: dict[str, DevScore]) -> set[str]:
        """The dev metrics a `drops_by: ci` rule reads whose paired interval of change from their best so far lies below 0."""
        out = set()
        for rule in self.c.stop_if:
            if rule.drops_by == "ci" and rule.metric in best:
                now = self._dev_metric(k, rule.name)
                if now is not None and paired(now, best[rule.metric])[2] < 0:
                    out.add(rule.metric)
        return out

    def _dev_metric(self, k: int, name: str) -> DevScore | None:
        sd = self.dev.get(k)
        if sd is None:
            return None
        metrics = (sd.manifest() or {}).get("metrics") or {}
        if name not in metrics:
            return None
        return DevScore(k, float(metrics[name]), read_json(sd.path / "per_problem.json").get(name, {}))

    # -- deciding ---------------------------------------------------------------------------
    def before_training(self, ctx: RunContext, k: int) -> Decision | None:
        """After iteration k's select stage: the stop, when a rule on what training would learn from (`select.*`: the
        train set's gold audit; `judge.*`: the scores it was chosen by) fires at k. Then k is not trained: a model
        trained on pseudo-labels the audit calls wrong is never a candidate, and the best so far stays the chosen one.
        None: train."""
        rules = [r for r in self.c.stop_if if r.source in PRE_TRAINING]
        if not rules:
            return None
        history = [self.values(ctx, i) for i in range(k + 1)]
        fired = first_firing(rules, history[0], [(i, history[i], set()) for i in range(1, k + 1)])
        if fired is None or fired.at != k:
            return None
        prev = self.decisions[-1] if self.decisions else None
        best = prev.best if prev is not None else (0 if self.dev_score(0) is not None else None)
        stop = fired.to_dict()
        stop.update(before_training=True, reason=f"{stop.get('reason')}; before training iteration {k}, which was not trained")
        record = {"iteration": k, "values": history[k], "stop": stop, "next_start": prev.next_start if prev is not None else 0,
                  "choice": None, "best": best, "trained": False}
        self._record(ctx, k, record)
        decision = Decision(k, record["next_start"], best, stop, record)
        self.decisions.append(decision)
        return decision

    def decide(self, ctx: RunContext, k: int) -> Decision:
        """The decision after iteration k (1..), from every measured iteration so far; recorded as `iter_<k>/control`."""
        if not self.active:
            return Decision(k, k, None, None, {})
        history = [self.values(ctx, i) for i in range(k + 1)]
        observations, best = [], {}
        for i in range(k + 1):
            if i > 0:
                observations.append((i, history[i], self.drops(i, best)))
            for rule in self.c.stop_if:
                s = self._dev_metric(i, rule.name) if rule.source == "dev" else None
                if s is not None and (rule.metric not in best or s.value > best[rule.metric].value):
                    best[rule.metric] = s
        fired = first_firing(self.c.stop_if, history[0], observations)
        stop = fired.to_dict() if fired is not None and fired.at == k else None
        train = (_manifest(ctx.store.root / f"iter_{k}" / "train").get("train") or {})
        if stop is None and train.get("stopped_early"):
            stop = {**train["stopped_early"], "iteration": k}
        scores = [self.dev_score(i) for i in range(k + 1)]
        step = None
        if self.c.select_on == "dev" and all(s is not None for s in scores):
            step = decide(scores, bool(self.c.rollback))[-1]
        next_start = step.next_start if step is not None else k
        final = stop is not None or k >= self.cfg.iterations  # no iteration follows: nothing to roll back for
        record = {"iteration": k, "values": history[k], "stop": stop, "next_start": next_start,
                  "choice": step.to_dict(bool(self.c.rollback), final) if step is not None else None,
                  "best": step.best if step is not None else None}
        self._record(ctx, k, record)
        decision = Decision(k, next_start, record["best"], stop, record)
        self.decisions.append(decision)
        return decision

    def _record(self, ctx: RunContext, k: int, record: dict) -> None:
        inputs = {n: sd.fingerprint for n, sds in (("dev", self.dev), ("probe", self.probe)) for i, sd in sds.items() if i == k}
        sd = ctx.store.stage(k, "control", {"control": self.c.model_dump(), "record": stable_hash(record)}, inputs)

        def work(sd: StageDir):
            sd.finish(output_fingerprint=stable_hash(record), counts={"next_start": record["next_start"], "stopped": record["stop"] is not None},
                      seconds=0.0, extra={"decision": record})
            return None, {}, {}

        run_stage(ctx, k, sd, work)


def _manifest(folder) -> dict:
    p = folder / "manifest.json"
    if not p.exists():
        return {}
    m = read_json(p)
    return m if m.get("status") == "complete" else {}
