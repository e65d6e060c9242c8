"""Training under `accelerate launch` with DeepSpeed (`train.distributed`): the train stage writes the accelerate and
DeepSpeed configs, the rows and the job into `<stage>/launch/`, runs this module as the child's entry point, streams
the child's log into the stage log and its progress into the bar, and fails the stage with the child's last lines when
it fails. Every rank saves (ZeRO-3 gathers the shards); the parent then merges LoRA into the starting model on the CPU,
or converts the fully trained weights, and writes the float32 `model/` every backend loads.

    python -m selfimprove.training.launch <stage>/launch     (what accelerate launch runs on every rank)
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
from collections import deque
from pathlib import Path

from ..errors import StageError
from ..optional import require

log = logging.getLogger("selfimprove.training")
PROGRESS = "SELFIMPROVE_PROGRESS"


def deepspeed_config(dist) -> dict:
    """The generated DeepSpeed config: ZeRO stage, optional CPU offload; batch sizes, clipping and precision are
    'auto' (filled from train: by transformers)."""
    zero: dict = {"stage": 2 if dist.deepspeed == "zero2" else 3, "overlap_comm": False, "contiguous_gradients": True}
    if dist.offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if zero["stage"] == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if zero["stage"] == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {"zero_optimization": zero, "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"}, "gradient_clipping": "auto",
            "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto", "train_batch_size": "auto"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_config(dist, ds_path: Path) -> str:
    """accelerate's config file (YAML; JSON is valid YAML) for one machine with `num_processes` DeepSpeed ranks."""
    return json.dumps({
        "compute_environment": "LOCAL_MACHINE", "distributed_type": "DEEPSPEED", "machine_rank": 0, "num_machines": 1,
        "num_processes": dist.num_processes, "use_cpu": False, "rdzv_backend": "static", "same_network": True,
        "main_process_port": dist.main_process_port or free_port(),
        "deepspeed_config": {"deepspeed_config_file": str(ds_path), "zero3_init_flag": dist.deepspeed == "zero3"},
    }, indent=1)


def child_env() -> dict:
    """The child's environment: DeepSpeed's CPU accelerator where there is no GPU (a plumbing run; it builds one op
    with the C++ compiler on first use, cached in TORCH_EXTENSIONS_DIR), this package importable, unbuffered output."""
    env = dict(os.environ)
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if not has_gpu:
        env.setdefault("DS_ACCELERATOR", "cpu")
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def launch_training(cfg, model_path, rows: list[dict], out_dir: Path, *, task_cfg: dict | None = None, prompts_dir: str | None = None,
                    progress=None) -> dict:
    """Train in a child process under accelerate + DeepSpeed; returns the child's stats (as `Trainer.train`)."""
    require("deepspeed", "train.distributed")
    dist = cfg.distributed
    out_dir = Path(out_dir).resolve()  # the child runs in launch/: every path it reads is absolute
    model_path = Path(model_path).resolve() if Path(model_path).exists() else model_path  # else a hub id
    prompts_dir = str(Path(prompts_dir).resolve()) if prompts_dir else None
    launch = out_dir / "launch"
    launch.mkdir(parents=True, exist_ok=True)
    ds_path = launch / "deepspeed.json"
    if dist.config:
        own = Path(dist.config).expanduser()
        if not own.is_file():
            raise StageError(f"train.distributed.config: {own} is not a file")
        ds = json.loads(own.read_text())
        zero = ds.get("zero_optimization") or {}
        if zero.get("stage") == 3:  # without it the ranks save a DeepSpeed checkpoint, not the weights
            if zero.get("stage3_gather_16bit_weights_on_model_save") is False:
                raise StageError("train.distributed.config: ZeRO-3 needs stage3_gather_16bit_weights_on_model_save: true "
                                 "(the stage saves the trained weights, not a DeepSpeed checkpoint)")
            zero["stage3_gather_16bit_weights_on_model_save"] = True
        ds_path.write_text(json.dumps(ds, indent=1))
    else:
        ds_path.write_text(json.dumps(deepspeed_config(dist), indent=1))
    acc_path = launch / "accelerate.yaml"
    acc_path.write_text(accelerate_config(dist, ds_path))
    with open(launch / "rows.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps(r, default=str) + "\n")
    (launch / "job.json").write_text(json.dumps({"train": cfg.model_dump(exclude={"distributed"}), "model_path": str(model_path),
                                                 "out_dir": str(out_dir), "task": task_cfg, "prompts_dir": prompts_dir}))
    stats_path = launch / "stats.json"
    stats_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(acc_path), "-m", "selfimprove.training.launch", str(launch)]
    log.info("launching: %s", " ".join(cmd))
    tail: deque[str] = deque(maxlen=40)
    with open(launch / "child.log", "w") as child_log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env(), cwd=str(launch))
        try:
            for line in proc.stdout:
                child_log.write(line)
                child_log.flush()
                if line.startswith(PROGRESS):
                    _, step, total = line.split()
                    if progress:
                        progress(int(step), int(total))
                    continue
                tail.append(line.rstrip())
                log.info("child: %s", line.rstrip())
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if rc != 0 or not stats_path.exists():
        raise StageError(child_failure(rc, list(tail), launch / "child.log"))
    finish(model_path, out_dir, lora=cfg.lora is not None)
    return json.loads(stats_path.read_text())


def child_failure(rc: int, tail: list[str], log_path: Path) -> str:
    """The child's own error first (the last `SomethingError: ...` a rank printed), then its traceback's last lines
    without the launcher's report around them."""
    ranks = [t for t in tail if re.match(r"\[rank\d+\]:", t)] or [t for t in tail if t.strip()]
    errors = [t for t in ranks if re.search(r"(Error|Exception)\b.*:", t)]
    first = re.sub(r"^\[rank\d+\]:\s*", "", errors[-1]) if errors else "no error line (see the log)"
    return (f"training under accelerate + DeepSpeed failed (exit code {rc}): {first}\nfull log: {log_path}\n"
            + "\n".join(ranks[-12:]))


def finish(model_path, out_dir: Path, lora: bool) -> None:
    """The float32 `model/` from what the ranks saved: LoRA merged into the starting model (on the CPU, after training,
    never under ZeRO-3), or the fully trained weights converted."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..models import merge_lora, save_model

    if lora:
        merge_lora(model_path, out_dir / "adapter", out_dir / "model")
    else:
        trained = out_dir / "trained"
        model = AutoModelForCausalLM.from_pretrained(trained, dtype=torch.float32)
        save_model(model, AutoTokenizer.from_pretrained(trained), out_dir / "model")
        shutil.rmtree(trained)


def main(launch_dir: str) -> None:
    """One rank: rebuild the trainer from the job, train (the trainer sees it runs under DeepSpeed), rank 0 writes stats."""
    from pydantic import TypeAdapter

    from ..config import TaskConfig, TrainConfig
    from ..models import model_ref
    from ..prompts import PromptLibrary
    from ..tasks import make_task
    from .base import make_trainer

    launch = Path(launch_dir)
    job = json.loads((launch / "job.json").read_text())
    cfg = TypeAdapter(TrainConfig).validate_python(job["train"])
    rows = [json.loads(line) for line in (launch / "rows.jsonl").read_text().splitlines() if line.strip()]
    rank = int(os.environ.get("RANK", "0"))
    trainer = make_trainer(cfg)
    if job["task"] is not None:
        trainer.attach(make_task(TaskConfig(**job["task"]), PromptLibrary(job["prompts_dir"])), None, model_ref(job["model_path"]))

    def progress(step: int, total: int | None) -> None:
        if rank == 0 and total:
            print(f"{PROGRESS} {step} {total}", flush=True)

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    stats = trainer.train(job["model_path"], rows, Path(job["out_dir"]), progress=progress)
    if rank == 0:
        tmp = launch / "stats.json.tmp"
        tmp.write_text(json.dumps(stats, default=str))
        os.replace(tmp, launch / "stats.json")


if __name__ == "__main__":
    main(sys.argv[1])
