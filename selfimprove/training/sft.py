"""Supervised fine-tuning on selected samples with TRL's `SFTTrainer`, LoRA through PEFT, each row's loss
multiplied by its `weight` (TRL 1.16 has no per-row weights: `WeightedSFTTrainer` adds them).

Rows are conversational prompt-completion pairs, so the loss covers the assistant turn only (a completion of several
turns: every assistant turn in it, see `turn_masks.py`). The loss is
TRL's: the sum of completion-token losses divided by the completion tokens of the whole (accumulated) batch;
a weight scales its row's token losses, so with every weight 1 it is TRL's loss exactly, and a row of weight 0
adds no gradient of its own (its tokens still count in the denominator, as TRL counts every completion token).
On CPU everything runs in float32 without gradient checkpointing: TRL's bf16 default is about 200x slower on
CPUs without bf16 matrix units.
"""

from __future__ import annotations

from pathlib import Path

from .base import Trainer
from .common import check_weights, fit_and_save, load_model_and_tokenizer, peft_config, progress_callback, require_rows, total_steps, training_setup, trl_args
from .turn_masks import is_multi_turn, tokenize_turns
from .weights import WEIGHT, keep_weight_column


def sft_config(cfg, out_dir: Path, *, on_cpu: bool, bf16: bool, total_steps: int):
    """TRL's `SFTConfig` for one training stage (see `common.trl_args`): the loss covers the assistant turn only,
    no packing or padding-free (they would merge rows and their weights)."""
    from trl import SFTConfig

    semantics = dict(bf16=bf16, fp16=False, use_cpu=on_cpu, max_length=cfg.max_length, completion_only_loss=True, assistant_only_loss=False,
                     packing=False, padding_free=False, loss_type="nll")
    return trl_args(SFTConfig, cfg, out_dir, semantics, total_steps, model_init_kwargs=None)


def weighted_sft_trainer_class():
    """TRL's SFTTrainer with per-row weights (built on first use so that importing this module imports no TRL)."""
    from functools import partial

    from trl import SFTTrainer as TRLSFTTrainer

    def scale_log_probs(weight, module, args, output):
        # The fused LM head returns per-token log-probs (zero on ignored positions) that TRL's loss sums; scaling a
        # row's log-probs scales its loss terms and nothing else (label_mask, entropy and accuracy are separate).
        if getattr(output, "log_probs", None) is not None:
            output.log_probs = output.log_probs * weight.to(output.log_probs.device, output.log_probs.dtype)[:, None]
        return output

    class WeightedSFTTrainer(TRLSFTTrainer):
        """`compute_loss` with the batch's `weight` applied to each row's token losses (see the module docstring)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            a = self.args
            if a.loss_type != "nll" or a.label_smoothing_factor or self.compute_loss_func is not None or a.packing or a.padding_free:
                raise ValueError("weighted SFT needs loss_type nll, no label smoothing, no custom loss, no packing or padding-free")
            keep_weight_column(self)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            weight = inputs.pop(WEIGHT, None)
            if weight is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            handle = model.register_forward_hook(partial(scale_log_probs, weight))
            try:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            finally:
                handle.remove()

    return WeightedSFTTrainer


class SFTTrainer(Trainer):
    """`train.method: sft`: rows `prompt` + `completion` (chat lists), weighted by `weight` when present."""

    name = "sft"
    reads = ("prompt", "completion")
    supports_weights = True
    supports_control = True

    def train(self, model_path, rows: list[dict], out_dir: Path, progress=None) -> dict:
        return train_sft(model_path, rows, out_dir, self.cfg, self.cfg.device, progress, control=self.control)


def train_sft(model_path, rows: list[dict], out_dir: Path, cfg, device: str = "auto", progress=None, control=None) -> dict:
    """Fine-tune `model_path` on `rows` (`prompt`, `completion` chat lists); save the merged model to `out_dir/model`.

    Returns training stats (steps, loss, seconds, trainable parameters) for the manifest.
    """
    import torch

    require_rows(rows, cfg.min_rows)
    check_weights(rows)
    dev, dtype, on_cpu = training_setup(device)
    args = sft_config(cfg, out_dir, on_cpu=on_cpu, bf16=dtype == torch.bfloat16, total_steps=total_steps(len(rows), cfg))  # before the model (ZeRO-3)
    model, tok = load_model_and_tokenizer(model_path, torch.float32 if on_cpu else dtype)
    trainer = weighted_sft_trainer_class()(
        model=model,
        args=args,
        train_dataset=sft_dataset(rows, tok),
        processing_class=tok,
        peft_config=peft_config(cfg.lora),
        callbacks=[progress_callback(progress)],
    )
    return fit_and_save(trainer, tok, out_dir, lora=cfg.lora is not None, rows=len(rows), dev=dev, dtype=dtype, control=control)


def sft_dataset(rows: list[dict], tok):
    """The rows as TRL's dataset: prompt-completion chat pairs with their weights; where a completion holds several
    turns, every row tokenized with its assistant turns' mask (`turn_masks`), which TRL turns into labels."""
    import datasets

    if is_multi_turn(rows):
        return datasets.Dataset.from_list([{**tokenize_turns(tok, r["prompt"], r["completion"]), WEIGHT: float(r.get(WEIGHT, 1.0))} for r in rows])
    return datasets.Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"], WEIGHT: float(r.get(WEIGHT, 1.0))} for r in rows])
