"""Weighted DPO with an optional per-sequence NLL term on the chosen response (ScPO, IRPO), on TRL's DPOTrainer:

    loss = mean_i  w_i * ( -log sigmoid(beta * ((c_i - c_ref_i) - (r_i - r_ref_i)))  +  alpha * NLL(y+_i) / |y+_i| )

with c, r the summed log-probs of the chosen and rejected completions under the policy, c_ref, r_ref under the
reference, w_i the row's `weight`. TRL 1.16 has neither per-row weights nor this NLL term (`rpo_alpha` is gone;
its `loss_type=["sigmoid", "sft"]` adds a token mean over the whole batch). With every weight 1 and alpha 0 the
loss is TRL's sigmoid loss exactly. The reference is the iteration's starting model (with LoRA: the adapter
switched off) unless `train.reference` names another model; `precompute_ref` computes its log-probs once.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .base import Monitor, Trainer
from .common import check_weights, fit_and_save, load_model_and_tokenizer, peft_config, progress_callback, require_rows, total_steps, training_setup, trl_args
from .weights import WEIGHT, keep_weight_column


def dpo_config(cfg, out_dir: Path, *, on_cpu: bool, bf16: bool, total_steps: int):
    """TRL's `DPOConfig` for one training stage (see `common.trl_args`; DPO's own defaults are a 1e-6 learning rate,
    bf16 and gradient checkpointing): the sigmoid loss with the reverse KL, which `_compute_loss` below replaces."""
    from trl import DPOConfig

    semantics = dict(bf16=bf16, fp16=False, use_cpu=on_cpu, max_length=cfg.max_length, beta=cfg.beta, loss_type=["sigmoid"],
                     f_divergence_type="reverse_kl", ld_alpha=None, use_weighting=False, label_smoothing=0.0, padding_free=False,
                     precompute_ref_log_probs=cfg.precompute_ref, disable_dropout=True)
    return trl_args(DPOConfig, cfg, out_dir, semantics, total_steps)


def weighted_dpo_trainer_class():
    """TRL's DPOTrainer with per-row weights and the NLL term (built on first use: importing this module imports no TRL)."""
    import torch
    import torch.nn.functional as F
    from trl import DPOTrainer as TRLDPOTrainer

    class WeightedDPOTrainer(TRLDPOTrainer):
        """`_compute_loss` replaced by the module docstring's loss; the forward and the reference log-probs are TRL's."""

        def __init__(self, *args, nll_alpha: float = 0.0, **kwargs):
            super().__init__(*args, **kwargs)
            if (list(self.loss_types) != ["sigmoid"] or self.f_divergence_type != "reverse_kl" or self.ld_alpha is not None
                    or self.args.use_weighting or self.aux_loss_enabled or list(self.loss_weights) != [1.0]):
                raise ValueError("weighted DPO implements the sigmoid loss with the reverse KL only (no loss weights, WPO "
                                 "weighting, length-desensitised DPO or MoE router loss)")
            self.nll_alpha = float(nll_alpha)
            keep_weight_column(self)

        def compute_ref_log_probs(self, model, inputs):
            inputs = {k: v for k, v in inputs.items() if k != WEIGHT}
            return super().compute_ref_log_probs(model, inputs)

        def _compute_loss(self, model, inputs, return_outputs):
            mode = "train" if self.model.training else "eval"
            inputs = dict(inputs)
            weight = inputs.pop(WEIGHT, None)
            completion_mask = inputs["completion_mask"]
            model_kwargs = {k: v for k, v in inputs.items() if k not in ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")}
            model_kwargs["use_cache"] = False
            labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
            outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
            shift_mask = completion_mask[..., 1:]
            per_token_logps = outputs.log_probs[:, -shift_mask.size(1):]  # zero outside the completion
            chosen_logps, rejected_logps = per_token_logps.sum(dim=1).chunk(2, dim=0)  # the batch is [chosen; rejected]
            if self.precompute_ref_logps:
                ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                ref_chosen, ref_rejected = self.compute_ref_log_probs(self.model if self.ref_model is None else self.ref_model, inputs)
            chosen_logratios = chosen_logps - ref_chosen
            rejected_logratios = rejected_logps - ref_rejected
            dpo = -F.logsigmoid(self.beta * (chosen_logratios - rejected_logratios))
            chosen_tokens = shift_mask.chunk(2, dim=0)[0].sum(dim=1).clamp(min=1)
            nll = -per_token_logps.chunk(2, dim=0)[0].sum(dim=1) / chosen_tokens
            w = torch.ones_like(dpo) if weight is None else weight.to(dpo.device, dpo.dtype)
            per_row = dpo + self.nll_alpha * nll if self.nll_alpha else dpo
            loss = (w * per_row).mean()

            gather = self.accelerator.gather
            chosen_rewards = self.beta * chosen_logratios.detach()
            rejected_rewards = self.beta * rejected_logratios.detach()
            m = self._metrics[mode]
            m["rewards/chosen"].append(gather(chosen_rewards).mean().item())
            m["rewards/rejected"].append(gather(rejected_rewards).mean().item())
            m["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
            m["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
            m["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
            m["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())
            m["nll/chosen"].append(gather(nll.detach()).mean().item())
            m["weight"].append(gather(w.detach()).mean().item())
            if mode == "train":
                self._total_train_tokens += self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item() // self._tp_size
            m["num_tokens"] = [self._total_train_tokens]
            if return_outputs:
                raise NotImplementedError("weighted DPO computes no eval logits; selfimprove evaluates with its own eval stage")
            return loss

    return WeightedDPOTrainer


RUN_REFERENCES = ("base", "previous")


class DPOTrainer(Trainer):
    """`train.method: dpo`: rows `prompt`, `chosen`, `rejected` (chat lists) and `weight`."""

    name = "dpo"
    reads = ("prompt", "chosen", "rejected")
    supports_weights = True
    supports_control = True
    monitors = (Monitor("rewards/accuracies"), Monitor("rewards/margins"), Monitor("nll/chosen"))

    def __init__(self, cfg, where: str = "train"):
        super().__init__(cfg, where)
        ref = cfg.reference
        if ref.startswith("iter_") and not ref[5:].isdigit():
            raise ConfigError(f"{where}.reference: {ref!r} is not iter_<k>")

    def train(self, model_path, rows: list[dict], out_dir: Path, progress=None) -> dict:
        import datasets
        import torch

        cfg = self.cfg
        if cfg.reference in RUN_REFERENCES or cfg.reference.startswith("iter_"):
            raise ConfigError(f"train.reference: {cfg.reference} names a model of a pipeline run, which the train stage resolves; "
                              "outside a run give its folder (runs/<name>/iter_<k>/train/model) or `start`")
        require_rows(rows, cfg.min_rows)
        check_weights(rows)
        dev, dtype, on_cpu = training_setup(cfg.device)
        args = dpo_config(cfg, out_dir, on_cpu=on_cpu, bf16=dtype == torch.bfloat16, total_steps=total_steps(len(rows), cfg))  # before the model (ZeRO-3)
        model, tok = load_model_and_tokenizer(model_path, torch.float32 if on_cpu else dtype)
        ref_model = None
        if cfg.reference != "start":
            from ..models import resolve_model

            ref_model, _ = load_model_and_tokenizer(resolve_model(cfg.reference), torch.float32 if on_cpu else dtype)
        ds = datasets.Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"],
                                          WEIGHT: float(r.get(WEIGHT, 1.0))} for r in rows])
        trainer = weighted_dpo_trainer_class()(
            model=model, ref_model=ref_model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config(cfg.lora),
            callbacks=[progress_callback(progress)], nll_alpha=cfg.nll_alpha,
        )
        stats = fit_and_save(trainer, tok, out_dir, lora=cfg.lora is not None, rows=len(rows), dev=dev, dtype=dtype, control=self.control,
                             keep_logs=lambda k: k.startswith(("rewards/", "nll/", "logps/", "dev/")) or k in ("loss", "weight"))
        last = next((h for h in reversed(trainer.state.log_history) if "rewards/accuracies" in h), {})
        stats.update({k: last[k] for k in ("rewards/accuracies", "rewards/margins", "nll/chosen") if k in last})
        return stats
