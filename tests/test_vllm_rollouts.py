"""GRPO with vLLM rollouts (`train.vllm`): the section maps onto TRL's own vLLM fields (read back from a real
GRPOConfig), what cannot run on this device fails before any model loads, the colocated engine gets its CPU options,
two-turn rollouts hand TRL the sampling log-probs; and, with vllm-cpu installed, GRPO runs with its rollouts sampled
by a colocated engine whose weights follow training (one-turn with LoRA and a majority vote; two-turn)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from selfimprove.config import ConfigError, GRPOTrainConfig, TaskConfig
from selfimprove.errors import MissingPackage
from selfimprove.prompts import PromptLibrary
from selfimprove.tasks import make_task
from selfimprove.training import vllm_rollouts
from selfimprove.training.grpo import GRPOTrainer, grpo_config
from selfimprove.training.two_turn import rollout_logprobs


def grpo(**kw) -> GRPOTrainConfig:
    base = dict(rewards=[{"scorer": "gold", "column": "correct"}], num_generations=4, batch_size=8, max_completion_length=8,
                max_steps=2, device="cpu")
    return GRPOTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def task():
    return make_task(TaskConfig(name="arithmetic"), PromptLibrary())


def test_the_section_maps_onto_trls_vllm_fields(tmp_path):
    off = grpo_config(grpo(), tmp_path, on_cpu=True, bf16=False, total_steps=2)
    assert off.use_vllm is False
    v = {"mode": "colocate", "gpu_memory_utilization": 0.45, "tensor_parallel_size": 1, "max_model_length": 1024,
         "importance_sampling_correction": False}
    args = grpo_config(grpo(vllm=v), tmp_path, on_cpu=True, bf16=False, total_steps=2)
    assert (args.use_vllm, args.vllm_mode, args.vllm_gpu_memory_utilization, args.vllm_tensor_parallel_size) == (True, "colocate", 0.45, 1)
    assert args.vllm_max_model_length == 1024 and args.vllm_importance_sampling_correction is False and not args.vllm_enable_sleep_mode
    server = grpo_config(grpo(vllm={"mode": "server", "server_url": "http://gpu-7:8001"}), tmp_path, on_cpu=False, bf16=False, total_steps=2)
    assert (server.use_vllm, server.vllm_mode, server.vllm_server_base_url) == (True, "server", "http://gpu-7:8001")


def test_what_cannot_run_here_fails_before_any_model_loads(task, monkeypatch, no_model_loads):
    monkeypatch.setattr(vllm_rollouts, "require", lambda feature, where: None)  # as if vllm were installed
    with pytest.raises(ConfigError, match=r"train.vllm.mode server: .*NCCL.*CUDA"):
        GRPOTrainer(grpo(vllm={"mode": "server"})).check(task)
    with pytest.raises(ConfigError, match=r"train.vllm.enable_sleep_mode"):
        GRPOTrainer(grpo(vllm={"enable_sleep_mode": True})).check(task)
    GRPOTrainer(grpo(vllm={"mode": "colocate"})).check(task)
    monkeypatch.undo()
    monkeypatch.setattr("selfimprove.optional.installed", lambda module: module != "vllm")
    with pytest.raises(MissingPackage, match=r"train.vllm: vllm needs the vllm package.*vllm-cpu"):
        GRPOTrainer(grpo(vllm={"mode": "colocate"})).check(task)
    with pytest.raises(ValueError, match=r"train.vllm.tensor_parallel_size \(2\) must divide the training processes \(1\)"):
        grpo(vllm={"tensor_parallel_size": 2})


def test_the_colocated_engine_gets_float32_and_eager_on_cpu(monkeypatch):
    from trl.generation import vllm_generation

    built = []
    monkeypatch.setattr(vllm_generation, "LLM", lambda **kw: built.append(kw), raising=False)
    original = vllm_generation.LLM
    cfg = grpo(vllm={"mode": "colocate"}).vllm
    with vllm_rollouts.engine_options(cfg, on_cpu=True):
        vllm_generation.LLM(model="m", gpu_memory_utilization=0.3)
    with vllm_rollouts.engine_options(cfg, on_cpu=False):
        vllm_generation.LLM(model="m")
    with vllm_rollouts.engine_options(cfg.model_copy(update={"dtype": "bfloat16"}), on_cpu=False):
        vllm_generation.LLM(model="m")
    assert built == [{"model": "m", "gpu_memory_utilization": 0.3, "dtype": "float32", "enforce_eager": True},
                     {"model": "m"}, {"model": "m", "dtype": "bfloat16"}]
    assert vllm_generation.LLM is original  # restored after the trainer is built


def test_two_turn_rollouts_hand_trl_the_sampling_logprobs():
    attempt, instruction, revision = [5, 6], [7, 8, 9], [10]
    pieces = [[(attempt, 1), (instruction, 0), (revision, 2)]]
    logps = {id(attempt): [-0.5, -0.25], id(revision): [-1.0]}
    assert rollout_logprobs(pieces, logps) == [[-0.5, -0.25, 0.0, 0.0, 0.0, -1.0]]  # the instruction (env_mask 0) gets 0.0
    assert rollout_logprobs(pieces, {}) is None  # model.generate: TRL computes them itself


# ---- with vllm-cpu (the oldest-versions environment of .ci/vllm-tests)


@pytest.fixture(scope="module")
def vllm_tiny_model(tmp_path_factory, builtin_model_path) -> Path:
    """A tiny random model vllm-cpu can serve: its CPU attention kernels take head_dim 64 (not the shared tiny model's 16)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-vllm-model")
    cfg = AutoConfig.from_pretrained(builtin_model_path)
    cfg.update({"num_hidden_layers": 2, "hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 2,
                "num_key_value_heads": 1, "head_dim": 64})
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).save_pretrained(out)
    AutoTokenizer.from_pretrained(builtin_model_path).save_pretrained(out)
    return out


def run_in_child(model: Path, cfg: dict, out: Path) -> dict:
    """One GRPO stage in a child process (a vLLM engine in the test process would outlive the test)."""
    import subprocess

    script = """
import json, sys
from pathlib import Path
from selfimprove.config import GRPOTrainConfig, TaskConfig
from selfimprove.prompts import PromptLibrary
from selfimprove.registry import SCORERS
from selfimprove.scoring.base import Scorer, ScoreResult
from selfimprove.tasks import make_task
from selfimprove.training.grpo import GRPOTrainer

class CharVariety(Scorer):  # a reward with spread on a random model's text (gold and the vote: 0 everywhere, no gradient)
    name, writes = "char_variety", ("variety",)
    def score(self, prompts, samples, progress=None):
        return ScoreResult({"variety": [len(set(s["completion"])) / 20 for s in samples]}, [None] * len(samples))

SCORERS._entries["char_variety"] = "__main__:CharVariety"
task = make_task(TaskConfig(name="arithmetic"), PromptLibrary())
rows = [{"prompt_id": f"p{i}", "messages": [{"role": "user", "content": f"What is {i} + {i}?"}], "reference": str(2 * i)}
        for i in range(8)]
stats = GRPOTrainer(GRPOTrainConfig(**json.loads(sys.argv[1]))).attach(task).train(Path(sys.argv[2]), rows, Path(sys.argv[3]))
Path(sys.argv[3], "stats.json").write_text(json.dumps(stats, default=str))
"""
    r = subprocess.run([sys.executable, "-c", script, json.dumps(cfg), str(model), str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads((out / "stats.json").read_text())


@pytest.mark.slow
@pytest.mark.vllm
def test_grpo_samples_its_rollouts_on_a_colocated_vllm_cpu_engine_that_follows_training(vllm_tiny_model, tmp_path):
    pytest.importorskip("vllm")
    cfg = dict(rewards=[{"scorer": "char_variety"}, {"scorer": "majority_vote", "column": "is_majority"}],
               num_generations=4, batch_size=8, max_completion_length=12, max_steps=3, device="cpu", learning_rate=0.05,
               lora={"r": 8, "alpha": 16, "dropout": 0.0}, vllm={"mode": "colocate", "gpu_memory_utilization": 0.1})
    stats = run_in_child(vllm_tiny_model, cfg, tmp_path / "one")
    steps = stats["per_step"]
    assert [s["step"] for s in steps] == [1, 2, 3] and all(s["frac_reward_zero_std"] < 1 for s in steps)  # gradients every step
    # TRL compares vLLM's sampling log-probs with the trained model's: at the start they agree to float noise, and they still
    # do after two large LoRA steps, because each rollout's engine holds the merged weights (without the sync they would
    # be the base model's, log-probs apart by the size of the update)
    assert all(s["sampling/sampling_logp_difference/max"] < 0.05 for s in steps), steps
    # the majority vote saw whole groups (its audit logs the health of every group)
    assert all("distinct_answers" in s and "answer_entropy" in s for s in steps)
    assert (tmp_path / "one" / "adapter").exists()

    # full fine-tuning moves the input embeddings, which this model's output layer shares: vLLM's in-place reload would
    # leave that layer with the old weights unless it is tied again (vllm_worker.retie_output_layer; without it this fails)
    full = dict(cfg, lora=None, max_steps=2, learning_rate=0.01)
    stats = run_in_child(vllm_tiny_model, full, tmp_path / "full")
    assert all(s["sampling/sampling_logp_difference/max"] < 0.05 for s in stats["per_step"]), stats["per_step"]

    two = dict(cfg, rewards=[{"scorer": "char_variety"}], turns={"template": "self_correct", "kl": [0.1, 0.01]}, max_steps=2)
    stats = run_in_child(vllm_tiny_model, two, tmp_path / "two")
    assert all(s["sampling/sampling_logp_difference/max"] < 0.05 and "turn2_reward" in s and "kl_turn1" in s for s in stats["per_step"])
