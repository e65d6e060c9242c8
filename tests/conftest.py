"""Shared fixtures: a tiny random-initialised model with SmolLM2's real tokenizer, shared data paths."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def builtin_model_path() -> Path:
    """The real SmolLM2-135M-Instruct, dequantized once into the user cache."""
    from selfimprove.models import resolve_builtin

    return resolve_builtin("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory, builtin_model_path) -> Path:
    """2 layers, hidden 64, SmolLM2's tokenizer and chat template: real code paths in seconds."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny-model")
    cfg = AutoConfig.from_pretrained(builtin_model_path)
    cfg.num_hidden_layers = 2
    cfg.hidden_size = 64
    cfg.intermediate_size = 128
    cfg.num_attention_heads = 4
    cfg.num_key_value_heads = 2
    cfg.head_dim = 16
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(builtin_model_path).save_pretrained(out)
    return out


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if anything resolves a model (config and data checks must come before any model loads)."""
    from selfimprove import models

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the config was checked")

    monkeypatch.setattr(models, "resolve_builtin", boom)
    monkeypatch.setattr(models, "resolve_model", boom)


@pytest.fixture
def tiny_pipeline(tmp_path, tiny_model_path):
    """A factory for the two-iteration tiny-model pipeline file (see `tiny_pipeline_yaml`)."""
    return lambda **kw: tiny_pipeline_yaml(tmp_path, tiny_model_path, **kw)


def tiny_pipeline_yaml(tmp_path: Path, model: Path, *, eval_n: int = 2, data_extra: str = "", extra: str = "") -> Path:
    """The two-iteration 1-digit arithmetic pipeline the tiny-model loop tests run; `data_extra` adds lines under
    `data:`, `extra` top-level sections."""
    p = tmp_path / "tiny.yaml"
    p.write_text(textwrap.dedent(f"""\
        name: tiny
        run_dir: {tmp_path / 'runs'}
        model: {model}
        iterations: 2
        task: {{name: arithmetic, options: {{digits: 1}}}}
        data:
          train: {{size: 6, seed: 1}}
          eval: {{size: 5, seed: 2}}
        backend: {{batch_size: 16}}
        generate: {{n: 3, temperature: 1.0, max_tokens: 12, shard_size: 4}}
        select: {{correct_only: false, require_finished: false, max_per_prompt: 2}}
        train: {{epochs: 1, batch_size: 4, lora: {{r: 4, alpha: 8}}}}
        eval: {{greedy: true, n: {eval_n}, max_tokens: 8, bootstrap: 50}}
    """).replace("data:\n", "data:\n" + textwrap.indent(textwrap.dedent(data_extra), "  "), 1) + textwrap.dedent(extra))
    return p
