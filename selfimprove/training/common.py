"""What every trainer shares: device and dtype, model and tokenizer loading, LoRA through PEFT, the progress
callback, the read-back check of TRL settings, and saving (adapter, then the merged float32 model)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from ..errors import StageError
from ..models import save_model

log = logging.getLogger("selfimprove.training")


def training_setup(device: str):
    """(device, dtype, on_cpu): float32 on CPU and on GPUs without bf16, bfloat16 otherwise."""
    from ..devices import pick_device, training_dtype

    dev = pick_device(device or "auto")
    return dev, training_dtype(dev), dev.type == "cpu"


def load_model_and_tokenizer(model_path, dtype):
    """The causal LM in `dtype` and its tokenizer (pad token = EOS when it has none)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
    return model, tok


def peft_config(lora):
    """PEFT's LoraConfig for the `train.lora` section (None: full fine-tuning)."""
    if lora is None:
        return None
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
                          task_type="CAUSAL_LM")


def progress_callback(progress):
    """A TrainerCallback reporting (step, max_steps) to `progress` and TRL's logs to the stage log."""
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


def quiet(trainer) -> None:
    """Logs go to the stage's log.txt, not stdout."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def checkpointing_keyword(config_cls) -> str:
    """`activation_checkpointing` (transformers >= 5.24; `gradient_checkpointing` there is a deprecated alias,
    to be removed in v6) or `gradient_checkpointing` (before)."""
    fields = getattr(config_cls, "__dataclass_fields__", {})
    return "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"


def check_settings(args, semantics: dict) -> None:
    """Every setting that decides what is trained must read back as set (TRL's defaults differ from transformers'
    and move between releases); a renamed, ignored or overridden one fails here, naming the versions."""
    wrong = {k: getattr(args, k, None) for k, v in semantics.items() if getattr(args, k, None) != v}
    if wrong:
        import transformers
        import trl

        raise StageError(
            f"TRL {trl.__version__} / transformers {transformers.__version__} did not keep the training settings "
            f"selfimprove set: got {wrong}, wanted { {k: semantics[k] for k in wrong} }; report these versions"
        )


def save_trained(model, tokenizer, out_dir: Path, lora: bool) -> None:
    """With LoRA: the adapter alone to `out_dir/adapter` (for vLLM's LoRARequest or sharing), then merge; the
    merged model in float32 to `out_dir/model` (the next iteration's generator)."""
    import torch

    if lora:
        model.save_pretrained(out_dir / "adapter")
        model = model.merge_and_unload()
    save_model(model.to(torch.float32), tokenizer, out_dir / "model")


def trl_args(config_cls, cfg, out_dir: Path, semantics: dict, total_steps: int, **extra):
    """A TRL config (`SFTConfig`, `DPOConfig`, ...) for one training stage: the schedule, logging and saving every
    trainer shares, the learning rate, and `semantics` (every setting that decides what is trained, stated because
    TRL's defaults differ from transformers' and move between releases: bf16 and gradient checkpointing on, ...),
    which are read back so that a renamed, ignored or overridden setting fails here. Checkpointing is off (float32
    on CPU without it; the keyword is the installed release's)."""
    semantics = {**semantics, "learning_rate": cfg.learning_rate, checkpointing_keyword(config_cls): False}
    if under_deepspeed():
        semantics["use_cpu"] = False  # use_cpu would bypass DeepSpeed; its CPU accelerator (DS_ACCELERATOR=cpu) runs on CPUs
    args = config_cls(
        output_dir=str(out_dir / "trainer"),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        num_train_epochs=cfg.epochs,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=int(round(cfg.warmup_ratio * total_steps)),
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=1,
        save_strategy="no",
        report_to=cfg.report_to or "none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        **extra,
        **semantics,
    )
    # both spellings of checkpointing must read False, whichever one this release acts on
    check_settings(args, {**semantics, "gradient_checkpointing": False})
    return args


def under_deepspeed() -> bool:
    """Whether this process was started by `accelerate launch` with a DeepSpeed config (training/launch.py)."""
    import os

    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"


def world_size() -> int:
    """Training processes (accelerate launch sets WORLD_SIZE; 1 in-process)."""
    import os

    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def total_steps(rows: int, cfg) -> int:
    """Optimizer steps of a run over `rows` rows (for the warmup), over all processes."""
    return max(1, math.ceil(math.ceil(rows / (cfg.batch_size * cfg.gradient_accumulation_steps * world_size())) * cfg.epochs))


def check_weights(rows: list[dict]) -> None:
    """Every row's `weight` (default 1) must be a number >= 0."""
    bad = [i for i, r in enumerate(rows) if not (isinstance(r.get("weight", 1.0), (int, float)) and r.get("weight", 1.0) >= 0)]
    if bad:
        raise ValueError(f"train rows need a weight >= 0; row {bad[0]} has {rows[bad[0]].get('weight')!r}")


def require_rows(rows: list[dict], min_rows: int) -> None:
    if len(rows) < min_rows:
        raise StageError(
            f"only {len(rows)} training rows were selected (train.min_rows = {min_rows}); "
            "sample more (generate.n, data.train.size), sample cooler (generate.temperature), or relax select.*"
        )


def per_step_logs(log_history: list[dict], keep=None) -> list[dict]:
    """The numeric values TRL logged per step (`keep(key)` filters them; the run's closing summary is left out)."""
    out = []
    for h in log_history:
        if "train_runtime" in h or "step" not in h:
            continue
        vals = {k: v for k, v in h.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and (keep is None or keep(k))}
        if vals:
            out.append({"step": h["step"], **vals})
    return out


def fit_and_save(trainer, tokenizer, out_dir: Path, *, lora: bool, rows: int, dev, dtype, control=None, keep_logs=None) -> dict:
    """Train a built TRL trainer (its log to the stage's log.txt), save it (`save_trained`) and return steps, losses,
    seconds, sizes and the per-step logs (`keep_logs` filters their keys) for the train stage's manifest. `control`
    (`training.control.TrainingControl`): in-training dev evaluation, the best checkpoint, step stop rules."""
    import time

    from .control import add_control

    quiet(trainer)
    controlled: dict = {}
    add_control(trainer, control, tokenizer, controlled)
    trainable = sum(getattr(p, "ds_numel", p.numel()) for p in trainer.model.parameters() if p.requires_grad)  # ds_numel: ZeRO-3 shards
    t0 = time.time()
    result = trainer.train()
    seconds = time.time() - t0
    if under_deepspeed():
        # every rank takes part (ZeRO-3 gathers the shards); the parent merges LoRA and writes the float32 model
        trainer.save_model(str(out_dir / ("adapter" if lora else "trained")))
    else:
        save_trained(trainer.model, tokenizer, out_dir, lora=lora)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        **controlled,
        "per_step": per_step_logs(trainer.state.log_history, keep_logs),
        "steps": trainer.state.global_step,
        "train_loss": float(result.training_loss),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "train_seconds": round(seconds, 2),
        "trainable_parameters": trainable,
        "rows": rows,
        "device": str(dev),
        "dtype": str(dtype),
    }
