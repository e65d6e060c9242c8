"""Supervised fine-tuning on selected samples with TRL's `SFTTrainer`, LoRA through PEFT.

Rows are conversational prompt-completion pairs, so the loss covers the assistant turn only.
On CPU everything runs in float32 without gradient checkpointing: TRL's bf16 default is about
200x slower on CPUs without bf16 matrix units.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from ..config import TrainConfig
from ..errors import StageError
from ..generation.hf import pick_device
from ..models import save_model

log = logging.getLogger("selfimprove.training")


def _progress_callback(progress):
    from transformers import TrainerCallback

    class _Bar(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            if progress:
                progress(0, state.max_steps)

        def on_step_end(self, args, state, control, **kw):
            if progress:
                progress(state.global_step, state.max_steps)

        def on_log(self, args, state, control, logs=None, **kw):
            if logs:
                log.info("step %s: %s", state.global_step, logs)

    return _Bar()


def _checkpointing_keyword(config_cls) -> str:
    """`activation_checkpointing` (transformers >= 5.24; `gradient_checkpointing` there is a deprecated alias,
    to be removed in v6) or `gradient_checkpointing` (before)."""
    fields = getattr(config_cls, "__dataclass_fields__", {})
    return "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"


def sft_config(cfg: TrainConfig, out_dir: Path, *, on_cpu: bool, bf16: bool, total_steps: int):
    """TRL's `SFTConfig` for one training stage, every setting that decides what is trained stated explicitly
    (TRL's own defaults differ from transformers' and move between releases: bf16 and gradient checkpointing
    on, packing off, ...), then read back, so a renamed, ignored or overridden setting fails here."""
    from trl import SFTConfig

    checkpointing = _checkpointing_keyword(SFTConfig)
    semantics = dict(
        bf16=bf16,
        fp16=False,
        use_cpu=on_cpu,
        max_length=cfg.max_length,
        completion_only_loss=True,  # the loss covers the assistant turn only
        assistant_only_loss=False,
        packing=False,
        padding_free=False,
        loss_type="nll",
        **{checkpointing: False},  # float32 on CPU without checkpointing: see the module docstring
    )
    args = SFTConfig(
        output_dir=str(out_dir / "trainer"),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=int(round(cfg.warmup_ratio * total_steps)),
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=1,
        save_strategy="no",
        report_to=cfg.report_to or "none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        model_init_kwargs=None,
        **semantics,
    )
    # both spellings of checkpointing must read False, whichever one this release acts on
    semantics["gradient_checkpointing"] = False
    wrong = {k: getattr(args, k, None) for k, v in semantics.items() if getattr(args, k, None) != v}
    if wrong:
        import transformers
        import trl

        raise StageError(
            f"TRL {trl.__version__} / transformers {transformers.__version__} did not keep the training settings "
            f"selfimprove set: got {wrong}, wanted { {k: semantics[k] for k in wrong} }; report these versions"
        )
    return args


def train_sft(model_path, rows: list[dict], out_dir: Path, cfg: TrainConfig, device: str = "auto", progress=None) -> dict:
    """Fine-tune `model_path` on `rows` (`prompt`, `completion` chat lists); save the merged model to `out_dir/model`.

    Returns training stats (steps, loss, seconds, trainable parameters) for the manifest.
    """
    import datasets
    from peft import LoraConfig as PeftLoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    if len(rows) < cfg.min_rows:
        raise StageError(
            f"only {len(rows)} training rows were selected (train.min_rows = {cfg.min_rows}); "
            "sample more (generate.n, data.train.size), sample cooler (generate.temperature), or relax select.*"
        )
    dev = pick_device(device)
    on_cpu = dev.type == "cpu"
    dtype = torch.float32 if on_cpu or not torch.cuda.is_bf16_supported() else torch.bfloat16
    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32 if on_cpu else dtype)

    weights = {float(r.get("weight", 1.0)) for r in rows}
    if weights - {1.0}:
        raise NotImplementedError("per-sample weights other than 1.0 need the weighted SFT trainer (not in this version)")
    ds = datasets.Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    steps_per_epoch = math.ceil(len(rows) / (cfg.batch_size * cfg.gradient_accumulation_steps))
    total_steps = max(1, math.ceil(steps_per_epoch * cfg.epochs))
    args = sft_config(cfg, out_dir, on_cpu=on_cpu, bf16=dtype == torch.bfloat16, total_steps=total_steps)
    peft_config = None
    if cfg.lora is not None:
        peft_config = PeftLoraConfig(
            r=cfg.lora.r,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules=cfg.lora.target_modules,
            task_type="CAUSAL_LM",
        )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=ds,
        processing_class=tok,
        peft_config=peft_config,
        callbacks=[_progress_callback(progress)],
    )
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # logs go to the stage's log.txt, not stdout
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    t0 = time.time()
    result = trainer.train()
    seconds = time.time() - t0
    trained = trainer.model
    if cfg.lora is not None:
        trained.save_pretrained(out_dir / "adapter")  # the LoRA adapter alone, for vLLM LoRARequest or sharing
        trained = trained.merge_and_unload()
    trained = trained.to(torch.float32)
    save_model(trained, tok, out_dir / "model")
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "steps": trainer.state.global_step,
        "train_loss": float(result.training_loss),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "train_seconds": round(seconds, 2),
        "trainable_parameters": trainable,
        "rows": len(rows),
        "device": str(dev),
        "dtype": str(dtype),
    }
