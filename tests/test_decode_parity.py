"""The pruned decoder is right on every transformers version pyproject admits, and can never decode without context.

transformers 5.24 renamed the forward's KV-cache keyword (`past_key_values` -> `cache`); every other 5.x
release swallows an unknown keyword, which once made the decoder see one token per step and no prompt.
CI runs this file under the newest transformers and under the oldest one admitted (.ci/vllm-tests).
"""

from __future__ import annotations

import pytest
import torch

from selfimprove.config import TransformersBackendConfig
from selfimprove.errors import BackendError
from selfimprove.generation import Request, SamplingParams, decode, make_generator

QUESTIONS = [
    "What is 2 + 3? Answer with the number only.",
    "What is 14 + 27?",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did she sell altogether?",
    "Write a Python function that returns the square of a number.",
    "Name three primary colours.",
    "What is the capital of France?",
    "Count from 1 to 5.",
    "Is 17 a prime number? Explain briefly.",
]
REQS = [Request(f"q{i}", [{"role": "user", "content": q}]) for i, q in enumerate(QUESTIONS)]


def _texts(model_path, prune: bool, max_tokens: int = 40) -> list[str]:
    g = make_generator(TransformersBackendConfig(batch_size=8, prune_finished=prune), model_path)
    try:
        return [o[0].text for o in g.generate(REQS, SamplingParams(n=1, temperature=0.0, max_tokens=max_tokens))]
    finally:
        g.close()


@pytest.mark.slow
def test_pruned_decoder_matches_generate_on_the_real_model(builtin_model_path):
    import transformers

    pruned, generated = _texts(builtin_model_path, True), _texts(builtin_model_path, False)
    assert pruned == generated, f"transformers {transformers.__version__}"
    assert "5" in pruned[0] and "Paris" in pruned[5], pruned  # sensible text, not context-free decoding


def test_cache_keyword_follows_the_installed_transformers(tiny_model_path):
    from packaging.version import Version
    from transformers import AutoModelForCausalLM, __version__

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    assert decode.cache_keyword(model) == ("cache" if Version(__version__) >= Version("5.24.0") else "past_key_values")


class _Forgetful(torch.nn.Module):
    """A model whose forward takes the cache keyword and drops it, as an older release does with an unknown one."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config = inner, inner.config

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, use_cache=None, logits_to_keep=0, **kw):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=logits_to_keep)


def _batch(tiny_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path).eval()
    texts = [tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True) for r in REQS[:3]]
    return model, tok, tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def test_an_ignored_cache_is_refused_loudly(tiny_model_path):
    model, tok, enc = _batch(tiny_model_path)
    with pytest.raises(BackendError, match="ignored the KV cache"):
        decode.decode_pruned(_Forgetful(model), tok, enc.input_ids, enc.attention_mask, max_new_tokens=4, temperature=0.0,
                             top_p=1.0, eos_ids={tok.eos_token_id})


def test_a_model_without_a_cache_keyword_is_refused(tiny_model_path):
    model, tok, enc = _batch(tiny_model_path)

    class NoCache(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = model.config

        def forward(self, input_ids=None, attention_mask=None, **kw):
            return model(input_ids=input_ids, attention_mask=attention_mask)

    with pytest.raises(BackendError, match="prune_finished: false"):
        decode.decode_pruned(NoCache(), tok, enc.input_ids, enc.attention_mask, max_new_tokens=2, temperature=0.0, top_p=1.0,
                             eos_ids={tok.eos_token_id})


def test_the_other_keyword_decodes_the_same_or_is_refused(tiny_model_path, monkeypatch):
    """Whichever name a version accepts, the decoder either decodes with context or stops; never a silent difference."""
    model, tok, enc = _batch(tiny_model_path)
    kw = dict(max_new_tokens=6, temperature=0.0, top_p=1.0, eos_ids={tok.eos_token_id})
    right = [r.tokens for r in decode.decode_pruned(model, tok, enc.input_ids, enc.attention_mask, **kw)]
    other = "past_key_values" if decode.cache_keyword(model) == "cache" else "cache"
    monkeypatch.setattr(decode, "cache_keyword", lambda m: other)
    try:
        got = [r.tokens for r in decode.decode_pruned(model, tok, enc.input_ids, enc.attention_mask, **kw)]
    except BackendError:
        return
    assert got == right
