"""DS weight (IWSI, arXiv 2408.09849): how far a sample lies from a small labelled valid set's distribution.

A valid-set model is the judge model (default: the policy) LoRA-fine-tuned on `valid_size` prompts with gold answers
(their reference as the reply, or a template rendering it). With L_i the sample's mean completion-token loss under
that model and L_v its mean loss on the valid set, `ds_weight` = clip(L_v / L_i, 0, max_weight) (0 where L_i = 0):
about 1 looks like valid data, far from 1 is distribution shift. `ds_deviation` = w if w > 1 else min(1/w,
max_deviation): IWSI's K-Mixed filter keeps the samples under its k-quantile (`select.keep_quantile`). `ds_loss` is
L_i. As in IWSI's code the deviation comes from the clipped weight (so it is at most max_weight above 1). The valid-
set prompts' own samples get no weight (`exclude_valid`). The valid-set model is trained once per (judge model,
valid rows, options) and cached in the user cache (`~/.cache/selfimprove/ds_valid/`). The loss covers the reply's
tokens (IWSI's code averages over the whole sequence; the prompt's tokens are the same for every sample of a prompt
and would only dilute the comparison).
"""

from __future__ import annotations

import logging

from pydantic import Field

from ..errors import ConfigError
from ..models import ModelRef
from ..store import stable_hash
from .base import ScoreResult
from .judge_base import JudgeOptions, ModelScorer, response_of

log = logging.getLogger("selfimprove.scoring")


class DSWeightOptions(JudgeOptions):
    valid_size: int = Field(8, gt=0, description="Prompts with a gold answer that form the valid set (the first by prompt id).")
    valid_template: str | None = Field(None, description="Template of a valid reply (variables `question`, `reference`, `answer`); "
                                                         "default: the "
                                                         "reference text itself (e.g. a GSM8K solution).")
    valid_epochs: float = Field(5.0, gt=0)
    valid_learning_rate: float = Field(3e-4, gt=0)
    valid_lora_r: int = Field(64, gt=0)
    valid_lora_alpha: int = Field(16, gt=0)
    max_weight: float = Field(2.0, gt=0)
    max_deviation: float = Field(5.0, gt=1)
    device: str = Field("auto", description="Where the valid-set model trains.")
    exclude_valid: bool = Field(True, description="Give the valid-set prompts' own samples no weight (their gold answers trained "
                                                  "the valid-set model; a filter or weighted builder then drops them).")


class DSWeight(ModelScorer):
    name = "ds_weight"
    task_kinds = ("answer",)  # its valid replies are gold answers; a code task's reference holds tests, not a solution
    unsupported_hint = "Code tasks have tests, not reference solutions, to build its valid set from."
    writes = ("ds_weight", "ds_deviation", "ds_loss")
    Options = DSWeightOptions
    whole_table = True

    def valid_rows(self, prompts: dict[str, dict]) -> list[dict]:
        """SFT rows of the valid set: the first `valid_size` prompts (by id) that have a reference."""
        o = self.options
        labelled = sorted((p for p in prompts.values() if p.get("reference")), key=lambda p: str(p["prompt_id"]))
        if len(labelled) < o.valid_size:
            raise ConfigError(f"ds_weight: valid_size is {o.valid_size} but only {len(labelled)} prompts have a gold answer (reference)")
        rows = []
        for p in labelled[: o.valid_size]:
            ref = str(p["reference"])
            reply = ref if o.valid_template is None else self.task.prompts.render(
                o.valid_template, question=p.get("question", ""), reference=ref, answer=self.task.normalize_reference(ref))
            rows.append({"prompt_id": p["prompt_id"], "prompt": list(p["messages"]), "completion": [{"role": "assistant", "content": reply}],
                         "weight": 1.0})
        return rows

    def valid_model(self, start: ModelRef, rows: list[dict]) -> ModelRef:
        """The judge model LoRA-fine-tuned on `rows`, trained once and cached."""
        from ..config import SFTTrainConfig
        from ..models import cache_dir

        o = self.options
        cfg = SFTTrainConfig(lora={"r": o.valid_lora_r, "alpha": o.valid_lora_alpha, "dropout": 0.05}, learning_rate=o.valid_learning_rate,
                             epochs=o.valid_epochs, batch_size=4, max_length=512, device=o.device)
        key = stable_hash([start.fingerprint, rows, cfg.model_dump()])[:16]
        out = cache_dir() / "ds_valid" / key
        if not (out / "model" / "config.json").exists():
            log.info("ds_weight: training the valid-set model on %d rows into %s", len(rows), out)
            finetune = getattr(self.models, "finetune", None)
            if finetune is None:
                raise ConfigError("ds_weight: its model access cannot train the valid-set model: build it with "
                                  "Models(..., finetune=selfimprove.training.sft.train_sft) (a pipeline run and `selfimprove judge` do)")
            finetune(start.path, rows, out, cfg, o.device)
        return ModelRef(f"ds_valid:{key}", out / "model", f"ds_valid:{key}")

    def score(self, prompts, samples, progress=None):
        o = self.options
        rows = self.valid_rows(prompts)
        if self.model is None:
            self._gen()  # raises: not bound
        start = self.model
        self.model = self.valid_model(start, rows)
        try:
            valid = self.score_texts_cached([r["prompt"] for r in rows], [r["completion"][0]["content"] for r in rows])
            res = self.score_texts_cached([prompts[s["prompt_id"]]["messages"] for s in samples], [response_of(s) for s in samples])
        finally:
            self.model = start
        nll = lambda r: -r["logprob_sum"] / r["num_tokens"] if r["num_tokens"] else None  # noqa: E731
        valid_losses = [v for v in (nll(r) for r in valid) if v is not None]
        lv = sum(valid_losses) / len(valid_losses)
        cols: dict[str, list] = {c: [] for c in self.writes}
        errors: list[str | None] = []
        held = {r["prompt_id"] for r in rows} if o.exclude_valid else set()
        for s, r in zip(samples, res):
            li = nll(r)
            if s["prompt_id"] in held:
                w = dev = None
                errors.append("ds_weight: a valid-set prompt (its gold answer trained the valid-set model)")
            elif li is None:
                w = dev = None
                errors.append("ds_weight: empty completion")
            else:
                w = 0.0 if li == 0 else min(max(lv / li, 0.0), o.max_weight)
                dev = w if w > 1 else (o.max_deviation if w == 0 else min(1 / w, o.max_deviation))
                errors.append(None)
            cols["ds_weight"].append(w)
            cols["ds_deviation"].append(dev)
            cols["ds_loss"].append(li)
        if progress:
            progress(len(samples))
        return ScoreResult(cols, errors)
