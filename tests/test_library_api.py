"""selfimprove's calls into transformers and TRL mean the same on every version pyproject admits.

Both libraries move between releases in ways that fail silently: a model's forward swallows unknown keywords
(transformers 5.24 renamed `past_key_values` to `cache`), TrainingArguments renames settings and keeps the
old name as an alias (`gradient_checkpointing` -> `activation_checkpointing` in 5.24, removed in v6), TRL
changes its defaults, and transformers before 5.18 reads a GGUF's tokenizer with the wrong EOS token.
CI runs this file under the newest releases (.ci/run) and under the oldest admitted ones (.ci/vllm-tests).
"""

from __future__ import annotations

import ast
import inspect
import warnings
from pathlib import Path

import pytest

from selfimprove.config import SFTTrainConfig as TrainConfig
from selfimprove.errors import StageError

PACKAGE = Path(__file__).resolve().parents[1] / "selfimprove"


def _forward_keywords(path: Path) -> set[str]:
    """Keyword names passed to `model(...)` / `self.model(...)` calls in one source file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if (isinstance(f, ast.Name) and f.id == "model") or (isinstance(f, ast.Attribute) and f.attr == "model"):
            names |= {k.arg for k in node.keywords if k.arg is not None}
    return names


def test_every_forward_keyword_is_a_named_parameter(tiny_model_path):
    """A keyword the forward does not name lands in `**kwargs` and is ignored: it must never happen."""
    from transformers import AutoModelForCausalLM

    from selfimprove.generation import decode

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    used = _forward_keywords(PACKAGE / "generation" / "decode.py") | _forward_keywords(PACKAGE / "generation" / "hf.py")
    assert {"input_ids", "attention_mask", "position_ids", "logits_to_keep"} <= used  # the scan still sees the calls
    used.add(decode.cache_keyword(model))
    named = {n for n, p in inspect.signature(model.forward).parameters.items() if p.kind is not p.VAR_KEYWORD}
    assert used <= named, f"{sorted(used - named)} would be swallowed by {type(model).__name__}.forward(**kwargs)"


def test_builtin_tokenizer_agrees_with_its_model_config(builtin_model_path):
    """transformers before 5.18 gave the GGUF's tokenizer EOS `<|im_start|>` and no pad token."""
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(builtin_model_path)
    cfg = AutoConfig.from_pretrained(builtin_model_path)
    assert tok.eos_token == "<|im_end|>" and tok.bos_token == "<|im_start|>"
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id)


def _sft_config(tmp_path, **kw):
    from selfimprove.training.sft import sft_config

    return sft_config(TrainConfig(), tmp_path, **{"on_cpu": True, "bf16": False, "total_steps": 4, **kw})


def test_sft_config_keeps_every_training_setting_without_deprecation(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # a deprecated name is a removal on the way
        warnings.simplefilter("error", DeprecationWarning)
        args = _sft_config(tmp_path)
    assert args.gradient_checkpointing is False and getattr(args, "activation_checkpointing", False) is False
    assert (args.bf16, args.fp16, args.packing, args.padding_free, args.completion_only_loss) == (False, False, False, False, True)
    assert args.max_length == TrainConfig().max_length and args.use_cpu is True


def test_sft_config_refuses_a_setting_the_library_changed(tmp_path, monkeypatch):
    from trl import SFTConfig

    original = SFTConfig.__post_init__

    def overriding(self):
        original(self)
        self.packing = True  # as a release that packs by default regardless would

    monkeypatch.setattr(SFTConfig, "__post_init__", overriding)
    with pytest.raises(StageError, match="packing"):
        _sft_config(tmp_path)


def _extra(requirements: list[str], extra: str, name: str):
    """The specifier the installed package's `extra` puts on `name` (None when it names none)."""
    from packaging.requirements import Requirement

    for text in requirements:
        req = Requirement(text)
        if req.name == name and req.marker is not None and req.marker.evaluate({"extra": extra}):
            return req.specifier
    return None


def _versions(*specs) -> list[str]:
    """Candidate vLLM versions to compare ranges on: every 0.x.y and 1.x.y (y < 10) and each version a spec names."""
    named = [s.version for spec in specs for s in spec]
    return [f"{a}.{m}.{p}" for a in (0, 1) for m in range(100) for p in range(10)] + named


def test_the_vllm_range_is_one_trl_and_ray_llm_accept():
    """Every vLLM release the `vllm` and `ray-llm` extras admit is one the installed TRL's `vllm` extra accepts, and
    the installed Ray's `llm` extra pins one of them: TRL only warns about a vLLM outside its range, so a drifting pin
    would fail at run time, not at install."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    ours = {e: next(Requirement(r).specifier for r in extras[e] if Requirement(r).name == "vllm") for e in ("vllm", "ray-llm")}
    assert ours["vllm"] == ours["ray-llm"], "the vllm and ray-llm extras must admit the same vLLM releases"
    trl = _extra(requires("trl"), "vllm", "vllm")
    assert trl is not None, "the installed TRL's vllm extra names no vllm"
    admitted = [v for v in _versions(ours["vllm"], trl) if ours["vllm"].contains(v)]
    outside = [v for v in admitted if not trl.contains(v)]
    assert admitted and not outside, f"TRL accepts vllm{trl}; selfimprove's extra admits vllm{ours['vllm']} (e.g. {outside[:3]})"
    ray = pytest.importorskip("ray")
    pinned = _extra(requires("ray"), "llm", "vllm")
    assert pinned is not None, f"ray {ray.__version__}'s llm extra names no vllm"
    both = [v for v in _versions(ours["vllm"], pinned) if pinned.contains(v) and ours["vllm"].contains(v)]
    assert both, f"ray {ray.__version__}[llm] wants vllm{pinned}; selfimprove's extra: vllm{ours['vllm']}"
