"""The generator's hand-off to training and back (`backend.hand_off`): the held engine is suspended, not closed, and
the next model asked of the same backend goes onto it; layouts that cannot load in place restart the engine."""

import json
import shutil

import pytest
from pydantic import ValidationError

from selfimprove.config import VLLMBackendConfig
from selfimprove.errors import BackendError, ConfigError
from selfimprove.generation import Generator
from selfimprove.generation.base import GeneratorInfo
from selfimprove.generation.vllm_hand_off import check_hand_off, resolve_hand_off, why_not_in_place
from selfimprove.generation.vllm_worker import retie_output_layer
from selfimprove.models import ModelRef
from selfimprove.runtime import held_models
from selfimprove.runtime.held_models import HeldModels


class Engine(Generator):
    """Records what the held-models code asks of an engine that can keep itself across training."""

    made: list = []

    def __init__(self, model_path, backend, adapter=None):
        self.path, self.keep, self.calls = str(model_path), backend.hand_off != "restart", []
        self.info = GeneratorInfo("vllm", self.path, {})
        Engine.made.append(self)

    def generate(self, requests, params, progress=None):
        return []

    def suspend(self):
        self.calls.append("suspend")
        if not self.keep:
            self.close()
        return self.keep

    def resume(self, model_path):
        self.calls.append(("resume", str(model_path)))
        if "other-layout" in str(model_path):
            raise ValueError(f"{model_path} cannot replace the engine's weights in place: its hidden_size differ")
        self.path = str(model_path)
        return "loaded in place"

    def close(self):
        self.calls.append("close")


@pytest.fixture
def models(tmp_path, monkeypatch):
    Engine.made = []
    monkeypatch.setattr(held_models, "make_generator", lambda backend, path: Engine(path, backend))
    return lambda mode: HeldModels(store=None, base="base", backend=VLLMBackendConfig(hand_off=mode), task=None,
                                   status=lambda msg: __import__("contextlib").nullcontext())


def ref(name):
    return ModelRef(name, f"/models/{name}", f"fp-{name}")


def test_a_kept_engine_takes_the_next_iteration_in_place(models):
    m = models("keep")
    first = m.generator(ref("base"))
    m.release(hand_off=True)  # training is next
    assert first.calls == ["suspend"]
    again = m.generator(ref("iter_1"))
    assert again is first and Engine.made == [first]  # no second engine
    assert first.calls[-1] == ("resume", "/models/iter_1") and first.path == "/models/iter_1"
    assert m.generator(ref("iter_1")) is first and len(first.calls) == 2  # awake now: asked again, nothing happens
    m.release()  # the job ends: closed, not suspended
    assert first.calls[-1] == "close" and not m.holds_generator


def test_restart_closes_and_a_layout_that_differs_starts_a_new_engine(models):
    m = models("restart")
    first = m.generator(ref("base"))
    m.release(hand_off=True)
    assert first.calls == ["suspend", "close"]
    second = m.generator(ref("iter_1"))
    assert second is not first and ("resume", "/models/iter_1") not in first.calls

    k = models("keep")
    kept = k.generator(ref("base"))
    k.release(hand_off=True)
    other = k.generator(ref("other-layout"))
    assert other is not kept and kept.calls[-2:] == [("resume", "/models/other-layout"), "close"]


def test_a_suspended_engine_is_not_reused_for_another_backend(models):
    m = models("keep")
    first = m.generator(ref("base"))
    m.release(hand_off=True)
    second = m.generator(ref("iter_1"), backend=VLLMBackendConfig(hand_off="keep", max_model_len=1024))
    assert second is not first and first.calls == ["suspend", "close"]


def test_hand_off_settings_are_checked_before_an_engine_starts():
    with pytest.raises(ConfigError, match=r"backend.hand_off: sleep.*CPU.*keep"):
        check_hand_off(VLLMBackendConfig(hand_off="sleep"), on_cpu=True)
    check_hand_off(VLLMBackendConfig(hand_off="keep"), on_cpu=True)
    with pytest.raises(ValidationError, match="data_parallel_size"):
        VLLMBackendConfig(hand_off="sleep", data_parallel_size=2)
    assert resolve_hand_off("auto", on_cpu=True) == "restart" and resolve_hand_off("keep", on_cpu=True) == "keep"
    # how the engine is handed over does not change what it outputs: finished stages keep their hashes
    assert VLLMBackendConfig(hand_off="keep").identity() == VLLMBackendConfig().identity()


def test_in_place_loading_needs_the_same_layout(tiny_model_path, tmp_path):
    same = tmp_path / "same"
    shutil.copytree(tiny_model_path, same)
    assert why_not_in_place(tiny_model_path, same) is None
    wider = tmp_path / "wider"
    shutil.copytree(tiny_model_path, wider)
    cfg = json.loads((wider / "config.json").read_text())
    cfg["hidden_size"] *= 2
    (wider / "config.json").write_text(json.dumps(cfg))
    assert "hidden_size" in why_not_in_place(tiny_model_path, wider)
    for f in same.glob("*.safetensors"):
        f.unlink()
    assert "safetensors" in why_not_in_place(tiny_model_path, same)


def test_layouts_are_compared_as_transformers_reads_them(tiny_model_path, tmp_path):
    """A base whose config.json predates transformers 5 (top-level rope_theta) matches its fine-tune saved by
    transformers 5 (rope_parameters); another rope base does not."""
    old = tmp_path / "old-format"
    shutil.copytree(tiny_model_path, old)
    cfg = json.loads((old / "config.json").read_text())
    theta = cfg.pop("rope_parameters")["rope_theta"]
    (old / "config.json").write_text(json.dumps({**cfg, "rope_theta": theta}))
    assert why_not_in_place(old, tiny_model_path) is None
    (old / "config.json").write_text(json.dumps({**cfg, "rope_theta": theta * 10}))
    assert "rope_parameters" in why_not_in_place(old, tiny_model_path)
    assert "not a local folder" in why_not_in_place("no-such-org/no-such-model", tiny_model_path)


class Module:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class Model:
    """What retie_output_layer reads of a vLLM model: `lm_head` and named modules."""

    def __init__(self, head, modules: dict):
        if head is not None:
            self.lm_head = head
        self.modules = modules

    def named_modules(self):
        return iter(self.modules.items())


class UnquantizedEmbeddingMethod:
    def __init__(self):
        self.processed = []

    def process_weights_after_loading(self, layer):
        self.processed.append(layer)


def test_a_tied_output_layer_is_tied_again_where_the_model_has_one():
    tied = Module(tie_word_embeddings=True)
    embed, method = Module(weight="new"), UnquantizedEmbeddingMethod()
    head = Module(weight="old", quant_method=method)
    assert retie_output_layer(Model(head, {"model.embed_tokens": embed}), tied)
    assert head.weight == "new" and method.processed == [head]  # the CPU's packed GEMM is rebuilt from the new weights
    gpt2_head = Module(weight="old", quant_method=Module())  # a quantized head: its processing is not redone
    assert retie_output_layer(Model(gpt2_head, {"transformer.wte": embed}), tied) and gpt2_head.weight == "new"
    assert not retie_output_layer(Model(head, {}), Module(tie_word_embeddings=False))
    assert not retie_output_layer(Model(None, {"model.embed_tokens": embed}), tied)  # logits from the embeddings (Gemma-2)
    with pytest.raises(RuntimeError, match="no input embeddings"):
        retie_output_layer(Model(Module(weight="old"), {"model.layers.0": Module()}), tied)


class FakeLLM:
    """Records the vLLM calls of a hand-off; `fail` makes the in-place load raise."""

    def __init__(self, fail=False, prefix_reset=True):
        self.calls, self.fail, self.prefix_reset = [], fail, prefix_reset

    def wake_up(self, tags=None):
        self.calls.append(("wake_up", tags))

    def collective_rpc(self, method, kwargs=None):
        self.calls.append((method, kwargs["weights_path"]))
        if self.fail:
            raise RuntimeError("CUDA out of memory")

    def reset_prefix_cache(self):
        self.calls.append("reset_prefix_cache")
        return self.prefix_reset


def engine(llm, model_path, asleep):
    from selfimprove.generation.vllm import VLLMGenerator

    gen = object.__new__(VLLMGenerator)
    gen.llm, gen.model_path, gen.asleep, gen.hand_off = llm, str(model_path), asleep, "sleep"
    gen.info = GeneratorInfo("vllm", str(model_path), {})
    return gen


def test_waking_from_level_2_loads_the_weights_before_the_kv_cache_is_allocated(tiny_model_path, tmp_path):
    nxt = tmp_path / "iter_1"
    shutil.copytree(tiny_model_path, nxt)
    llm = FakeLLM()
    gen = engine(llm, tiny_model_path, asleep=2)
    assert "loaded" in gen.resume(nxt)
    assert llm.calls == [("wake_up", ["weights"]), ("selfimprove_load_in_place", str(nxt)), "reset_prefix_cache",
                         ("wake_up", ["kv_cache"])]
    assert gen.model_path == str(nxt) and gen.asleep == 0
    level1 = engine(FakeLLM(), tiny_model_path, asleep=1)
    level1.resume(tiny_model_path)  # the same weights kept in CPU memory: woken, nothing loaded
    assert level1.llm.calls == [("wake_up", None)]


@pytest.mark.parametrize("llm", [FakeLLM(fail=True), FakeLLM(prefix_reset=False)], ids=["load fails", "prefix cache kept"])
def test_a_failed_hand_off_closes_the_engine_and_says_so(tiny_model_path, tmp_path, llm):
    nxt = tmp_path / "iter_1"
    shutil.copytree(tiny_model_path, nxt)
    gen = engine(llm, tiny_model_path, asleep=0)
    with pytest.raises(BackendError, match="its weights may be half replaced, so it was closed"):
        gen.resume(nxt)
    assert "llm" not in gen.__dict__ and gen.model_path is None  # no claim left about what a broken engine holds


def test_held_models_start_a_new_engine_when_the_hand_off_fails(models, monkeypatch):
    m = models("keep")
    first = m.generator(ref("base"))
    m.release(hand_off=True)

    def broken(model_path):
        first.calls.append(("resume", str(model_path)))
        raise BackendError("handing the engine over failed; it was closed")

    monkeypatch.setattr(first, "resume", broken)
    second = m.generator(ref("iter_1"))
    assert second is not first and second.path == "/models/iter_1" and len(Engine.made) == 2
