"""Experiment trackers (`report_to: [tensorboard, wandb, mlflow]`): every finished or resumed stage's numbers go to
them, keyed `<stage>/<name>` at step = iteration (eval accuracy and its interval, pass@k, maj@k, select yields such
as pairs and pseudo_label_accuracy, train loss and reward monitors), beside TRL's own per-step logs, which the train
stage sends to the same trackers. TensorBoard writes into `<run>/tensorboard`; `tensorboard --logdir <run>` shows
both (TRL's events are under `iter_<k>/train/trainer/runs`). In wandb and MLflow the run's own numbers are
`pipeline/<stage>/<name>` (against `pipeline/iteration` in wandb), apart from TRL's `train/*`; MLflow gets each train
stage as a nested run. A train stage under `train.distributed` runs in a child process, whose TRL logs start a
tracker run of their own (TensorBoard: under that stage's folder)."""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

from ..errors import ConfigError
from ..optional import require

TRACKERS = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow")}


def check_trackers(names: list[str], where: str = "report_to") -> None:
    """Every tracker is known and its package installed (before any model loads)."""
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"{where}: unknown tracker {name!r}; known: {list(TRACKERS)}")
        require(name, where)


def flatten(values: dict, prefix: str = "") -> dict[str, float]:
    """Numbers of a nested dict as `a/b/c` keys; booleans, strings, lists and NaN are left out.

    >>> flatten({"accuracy": 0.5, "accuracy_ci": [0.4, 0.6], "counts": {"pairs": 3, "why": "x"}, "ok": True})
    {'accuracy': 0.5, 'accuracy_ci/low': 0.4, 'accuracy_ci/high': 0.6, 'counts/pairs': 3.0}
    """
    out: dict[str, float] = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        elif k.endswith("_ci") and isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, numbers.Real) for x in v):
            out[key + "/low"], out[key + "/high"] = float(v[0]), float(v[1])
        elif isinstance(v, numbers.Real) and not isinstance(v, bool) and not math.isnan(float(v)):
            out[key] = float(v)
    return out


class Trackers:
    """The configured trackers of one run; `log(stage, iteration, numbers)`; `close()` at the end."""

    def __init__(self, names: list[str], root: Path, run_name: str, config: dict | None = None):
        check_trackers(names)
        self.names = list(names)
        self._tb = self._wandb = self._mlflow = None
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(Path(root) / "tensorboard"))
        if "wandb" in names:
            import wandb

            self._wandb = wandb.run or wandb.init(project="selfimprove", name=run_name, config=config or {}, dir=str(root))
            # TRL's callback plots everything against its training step; the run's own numbers go by iteration
            self._wandb.define_metric("pipeline/iteration")
            self._wandb.define_metric("pipeline/*", step_metric="pipeline/iteration")
        if "mlflow" in names:
            import mlflow

            self._mlflow = mlflow
            self._own_mlflow_run = mlflow.active_run() is None
            if self._own_mlflow_run:
                mlflow.start_run(run_name=run_name)
            # each train stage's TRL callback logs its own parameters: in a run nested under this one, not into it
            os.environ.setdefault("MLFLOW_NESTED_RUN", "TRUE")

    def log(self, stage: str, iteration: int | None, values: dict) -> None:
        step = iteration or 0
        metrics = {f"{stage}/{k}": v for k, v in flatten(values).items()}
        if not metrics:
            return
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, v, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({**{f"pipeline/{k}": v for k, v in metrics.items()}, "pipeline/iteration": step})
        if self._mlflow is not None:
            self._mlflow.log_metrics({f"pipeline/{k}".replace("@", "_at_"): v for k, v in metrics.items()}, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._mlflow is not None and self._own_mlflow_run:
            self._mlflow.end_run()
