"""Training under accelerate + DeepSpeed (`train.distributed`) on this CPU: one DeepSpeed rank (its CPU accelerator)
trains SFT, weighted DPO and GRPO on the tiny model in a child process, and the stage's output is what an in-process
run writes (a loadable float32 model/, the adapter, the stats), with the same first-step loss. The first launch
builds a DeepSpeed op with the C++ compiler (cached in TORCH_EXTENSIONS_DIR)."""

import json

import pytest

from selfimprove.config import DPOTrainConfig, SFTTrainConfig
from selfimprove.errors import StageError
from selfimprove.training.base import make_trainer
from selfimprove.training.launch import launch_training

pytestmark = pytest.mark.slow

SFT_ROWS = [{"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}], "completion": [{"role": "assistant", "content": f"{2 * i}"}],
             "weight": 1.0} for i in range(8)]
DPO_ROWS = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "chosen": [{"role": "assistant", "content": f"{i + 1}"}],
             "rejected": [{"role": "assistant", "content": f"{i + 2}"}], "weight": w} for i, w in enumerate([1.0, 0.5, 0.25, 1.0])]
PROMPTS = [{"prompt_id": f"p{i}", "messages": [{"role": "user", "content": f"What is {i} + {i}?"}], "reference": str(2 * i)} for i in range(4)]
LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


@pytest.fixture(autouse=True)
def _deepspeed():
    pytest.importorskip("deepspeed")


def check_model(out):
    from transformers import AutoModelForCausalLM

    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg.get("dtype", cfg.get("torch_dtype")) == "float32"
    AutoModelForCausalLM.from_pretrained(out / "model")  # loadable as every backend loads it


def test_sft_under_deepspeed_matches_in_process(tiny_model_path, tmp_path):
    cfg = SFTTrainConfig(lora=LORA, epochs=1, batch_size=4, device="cpu", learning_rate=1e-3,
                         distributed={"deepspeed": "zero2", "num_processes": 1})
    seen = []
    stats = launch_training(cfg, tiny_model_path, SFT_ROWS, tmp_path / "ds", progress=lambda s, t: seen.append((s, t)))
    local = make_trainer(cfg.model_copy(update={"distributed": None})).train(tiny_model_path, SFT_ROWS, tmp_path / "local")
    assert stats["steps"] == local["steps"] == 2 and seen[-1] == (2, 2)
    assert stats["first_loss"] == pytest.approx(local["first_loss"], rel=1e-4)
    for name in ("deepspeed.json", "accelerate.yaml", "child.log"):
        assert (tmp_path / "ds" / "launch" / name).exists()
    assert json.loads((tmp_path / "ds" / "launch" / "deepspeed.json").read_text())["zero_optimization"]["stage"] == 2
    assert (tmp_path / "ds" / "adapter" / "adapter_config.json").exists()
    check_model(tmp_path / "ds")


def test_weighted_dpo_and_full_finetuning_under_zero3(tiny_model_path, tmp_path):
    cfg = DPOTrainConfig(lora=None, epochs=1, batch_size=2, device="cpu", nll_alpha=1.0,
                         distributed={"deepspeed": "zero3", "num_processes": 1})
    stats = launch_training(cfg, tiny_model_path, DPO_ROWS, tmp_path)
    assert stats["steps"] == 2 and "nll/chosen" in stats
    assert not (tmp_path / "trained").exists() and not (tmp_path / "adapter").exists()
    check_model(tmp_path)


def test_grpo_pipeline_stage_under_deepspeed(tiny_model_path, tmp_path, monkeypatch):
    """`train.distributed` in a pipeline YAML with a relative run_dir: the train stage launches the child (which runs
    in the stage's launch/ folder and rebuilds the task for the rewards), and the next stage evaluates its model."""
    import textwrap

    from selfimprove.config import load_pipeline
    from selfimprove.pipeline.loop import run_pipeline

    monkeypatch.chdir(tmp_path)
    p = tmp_path / "grpo.yaml"
    p.write_text(textwrap.dedent(f"""
        name: g
        run_dir: runs
        model: {tiny_model_path}
        task: {{name: arithmetic, options: {{digits: 1}}}}
        data: {{train: {{size: 4, seed: 1}}, eval: {{size: 3, seed: 2}}}}
        train:
          method: grpo
          rewards: [{{scorer: majority_vote, column: is_majority}}, {{scorer: gold, column: correct, weight: 0.5}}]
          num_generations: 4
          batch_size: 8
          max_completion_length: 6
          max_steps: 1
          lora: {{r: 4, alpha: 8, dropout: 0.0}}
          distributed: {{deepspeed: zero2, num_processes: 1}}
        eval: {{greedy: true, n: 1, max_tokens: 4, bootstrap: 20}}
    """))
    summary = run_pipeline(load_pipeline(p))
    stages = {it["iteration"]: it["stages"] for it in summary["iterations"]}[1]
    assert sorted(stages) == ["eval", "train"]
    train = stages["train"]["train"]
    assert train["steps"] == 1 and set(train["per_step"][0]) >= {"reward", "frac_reward_zero_std", "rewards/gold:correct/mean"}
    root = tmp_path / "runs" / "g" / "iter_1" / "train"
    assert (root / "launch" / "accelerate.yaml").exists() and (root / "adapter" / "adapter_config.json").exists()
    check_model(root)
    assert "accuracy" in {it["iteration"]: it for it in summary["iterations"]}[1]["metrics"]
    html = (tmp_path / "runs" / "g" / "report.html").read_text()
    assert "<h2>Training signal</h2>" in html and "zero-spread groups" in html


def test_a_failing_child_fails_the_stage_with_its_error(tiny_model_path, tmp_path):
    cfg = SFTTrainConfig(lora=LORA, epochs=1, batch_size=4, device="cpu", distributed={"num_processes": 1})
    with pytest.raises(StageError, match=r"failed \(exit code [1-9]\): OSError: .*no-such-model.*\nfull log: .*child.log"):
        launch_training(cfg, tmp_path / "no-such-model", SFT_ROWS, tmp_path)
    own = lambda path: cfg.model_copy(update={"distributed": cfg.distributed.model_copy(update={"config": str(path)})})  # noqa: E731
    with pytest.raises(StageError, match="train.distributed.config: .* is not a file"):
        launch_training(own(tmp_path / "x.json"), tiny_model_path, SFT_ROWS, tmp_path)
    (tmp_path / "z3.json").write_text(json.dumps({"zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": False}}))
    with pytest.raises(StageError, match="ZeRO-3 needs stage3_gather_16bit_weights_on_model_save: true"):
        launch_training(own(tmp_path / "z3.json"), tiny_model_path, SFT_ROWS, tmp_path)
