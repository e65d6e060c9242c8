"""The generator's hand-off to training and back (`backend.hand_off`): the held engine is suspended, not closed, and
the next model asked of the same backend goes onto it; layouts that cannot load in place restart the engine."""

import json
import shutil

import pytest
from pydantic import ValidationError

from selfimprove.config import VLLMBackendConfig
from selfimprove.errors import ConfigError
from selfimprove.generation import Generator
from selfimprove.generation.base import GeneratorInfo
from selfimprove.generation.vllm_hand_off import check_hand_off, resolve_hand_off, why_not_in_place
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
