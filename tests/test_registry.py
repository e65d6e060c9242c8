"""One lazy registry for tasks, backends, scorers, row builders and trainers; typed options; tagged unions for
backend and training method; plug-ins by `package.module:Class` name."""

import sys
import textwrap

import pytest

from selfimprove.config import ConfigError, PluginBackendConfig, TaskConfig, TransformersBackendConfig, VLLMBackendConfig, load_pipeline, parse_backend
from selfimprove.pipeline.loop import prepare
from selfimprove.prompts import PromptLibrary
from selfimprove.registry import BACKENDS, SCORERS, TASKS, TRAINERS, Registry
from selfimprove.scoring import make_scorer
from selfimprove.tasks import make_task

BASE = """
name: t
model: builtin:smollm2-135m-instruct
task: {name: arithmetic, options: {digits: 1}}
data:
  train: {size: 4, seed: 1}
  eval: {size: 4, seed: 2}
"""


def write(tmp_path, text, name="p.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """A user's own package with a scorer, a trainer and a backend, importable as `myplugins`."""
    (tmp_path / "myplugins.py").write_text(textwrap.dedent('''
        from pydantic import Field
        from selfimprove.options import Options
        from selfimprove.scoring.base import Scorer, ScoreResult
        from selfimprove.training.base import Trainer
        from selfimprove.generation.base import Generator

        class LengthOptions(Options):
            max_chars: int = Field(100, gt=0)

        class Length(Scorer):
            """`short`: the completion has at most max_chars characters."""
            name = "length"
            writes = ("short",)
            Options = LengthOptions

            def score(self, prompts, samples, progress=None):
                return ScoreResult({"short": [len(s["completion"]) <= self.options.max_chars for s in samples]}, [None] * len(samples))

        class NeedsPairs(Trainer):
            name = "needs_pairs"
            reads = ("chosen", "rejected")

            def train(self, model_path, rows, out_dir, progress=None):
                raise NotImplementedError

        class NotAScorer:
            pass

        class Echo(Generator):
            def __init__(self, model_path, backend, adapter=None):
                self.backend = backend

            def generate(self, requests, params, progress=None):
                return []
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "myplugins"
    sys.modules.pop("myplugins", None)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(ConfigError, match=r"^score\[0\]\.name: unknown scorer 'judgy'; known: \[.*'majority_vote'.*\]"):
        SCORERS.get("judgy", "score[0].name")
    with pytest.raises(ConfigError, match=r"task\.name: unknown task"):
        TASKS.get("nope", "task.name")


def test_entries_are_imported_only_when_used():
    reg = Registry("thing", "selfimprove.scoring.base:Scorer", {"a": "no_such_module_xyz:Thing"})
    assert reg.names() == ["a"]  # registering imported nothing
    with pytest.raises(ConfigError, match="cannot import 'no_such_module_xyz'"):
        reg.get("a", "where")


def test_plugin_by_module_path_with_typed_options(plugin_module, tmp_path, no_model_loads):
    task = make_task(TaskConfig(name="arithmetic"), PromptLibrary())
    scorer = make_scorer(f"{plugin_module}:Length", task, {"max_chars": 3})
    assert scorer.options.max_chars == 3
    res = scorer.score({}, [{"prompt_id": "p", "completion": "12"}, {"prompt_id": "p", "completion": "1234"}])
    assert res.columns["short"] == [True, False]
    with pytest.raises(ConfigError, match=r"score\[0\]\.options\.max_chars: Input should be greater than 0"):
        make_scorer(f"{plugin_module}:Length", task, {"max_chars": 0}, "score[0]")
    with pytest.raises(ConfigError, match=r"score\[0\]\.options\.max_char: unknown option; known: \['max_chars'\]"):
        make_scorer(f"{plugin_module}:Length", task, {"max_char": 3}, "score[0]")
    with pytest.raises(ConfigError, match="is not a selfimprove.scoring.base.Scorer subclass"):
        make_scorer(f"{plugin_module}:NotAScorer", task)
    # registered under a name, then used from YAML like a builtin (and its column feeds a filter-free pipeline)
    SCORERS.register("length", f"{plugin_module}:Length")
    try:
        cfg = load_pipeline(write(tmp_path, BASE + "score: [{name: gold}, {name: length, options: {max_chars: 40}}]\n"))
        ctx, _ = prepare(cfg)
    finally:
        SCORERS._entries.pop("length")
        SCORERS._loaded.pop("length", None)


def test_builtin_scorer_options_are_typed(no_model_loads, tmp_path):
    cfg = load_pipeline(write(tmp_path, BASE + "score: [{name: gold}, {name: majority_vote, options: {abstain_below: 2}}]\n"))
    with pytest.raises(ConfigError, match=r"score\[1\]\.options\.abstain_below: Input should be less than or equal to 1"):
        prepare(cfg)
    cfg = load_pipeline(write(tmp_path, BASE + "score: [{name: gold}, {name: pointwise_judge, options: {mode: guess}}]\n"))
    with pytest.raises(ConfigError, match=r"score\[1\]\.options\.mode: Input should be 'generate' or 'logprobs'"):
        prepare(cfg)
    cfg = load_pipeline(write(tmp_path, BASE + "score: [{name: gold}, {name: p_true, options: {backend: {name: vllm, api: chat}}}]\n"))
    with pytest.raises(ConfigError, match=r"score\[1\]\.options\.backend"):
        prepare(cfg)


def test_backend_is_a_tagged_union(tmp_path, plugin_module):
    assert isinstance(parse_backend({}), TransformersBackendConfig)
    assert isinstance(parse_backend({"name": "vllm", "tensor_parallel_size": 2}), VLLMBackendConfig)
    with pytest.raises(ConfigError) as e:
        load_pipeline(write(tmp_path, BASE), ["backend.tensor_parallel_size=2"])
    assert "backend.tensor_parallel_size: unknown key for backend 'transformers'" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_pipeline(write(tmp_path, BASE), ["backend.name=vllm", "backend.base_url=http://x"])
    assert "backend.base_url: unknown key for backend 'vllm'" in str(e.value)
    # a plug-in backend by module path, built by make_generator like the builtins
    from selfimprove.generation import make_generator

    cfg = load_pipeline(write(tmp_path, BASE), [f"backend.name={plugin_module}:Echo", "backend.options={k: 1}"])
    assert isinstance(cfg.backend, PluginBackendConfig) and cfg.backend.options == {"k": 1}
    with pytest.raises(ConfigError, match=r"backend\.options\.k: unknown option; known: \[\]"):  # Echo declares no options
        make_generator(cfg.backend, "m")
    cfg = load_pipeline(write(tmp_path, BASE), [f"backend.name={plugin_module}:Echo"])
    assert make_generator(cfg.backend, "m").backend is cfg.backend
    assert BACKENDS.get("transformers").__name__ == "TransformersGenerator"


def test_training_method_is_a_tagged_union(tmp_path, plugin_module, no_model_loads):
    cfg = load_pipeline(write(tmp_path, BASE))
    assert cfg.train.method == "sft" and prepare(cfg).plan.names == ["generate", "score", "select", "train"]
    with pytest.raises(ConfigError, match=r"train\.method: unknown training method 'dpoo'"):
        load_pipeline(write(tmp_path, BASE), ["train.method=dpoo"])
    with pytest.raises(ConfigError, match=r"train\.options: unknown key for method 'sft'"):
        load_pipeline(write(tmp_path, BASE), ["train.options={a: 1}"])
    assert TRAINERS.get("sft").stages == ("generate", "score", "select", "train")
    cfg = load_pipeline(write(tmp_path, BASE), ["stages=[generate,score,eval]"])
    assert prepare(cfg).plan.names == ["generate", "score"]


def test_judge_backend_and_plugin_backend_options_are_checked_up_front(tmp_path, plugin_module, no_model_loads):
    cfg = load_pipeline(write(tmp_path, BASE + "score: [{name: gold}, {name: p_true, options: {backend: {name: openai, dtype: float32}}}]\n"))
    with pytest.raises(ConfigError) as e:
        prepare(cfg)
    assert str(e.value).startswith("score[1].options.backend: dtype: unknown key for backend 'openai'")
    (tmp_path / "gen_with_options.py").write_text(textwrap.dedent('''
        from selfimprove.options import Options
        from myplugins import Echo

        class EchoOptions(Options):
            temperature_offset: float = 0.0

        class EchoWithOptions(Echo):
            Options = EchoOptions
    '''))
    cfg = load_pipeline(write(tmp_path, BASE), ["backend.name=gen_with_options:EchoWithOptions", "backend.options={temp: 1}"])
    with pytest.raises(ConfigError, match=r"backend\.options\.temp: unknown option; known: \['temperature_offset'\]"):
        prepare(cfg)
    cfg = load_pipeline(write(tmp_path, BASE), ["backend.name=no_such_pkg_xyz:Gen"])
    with pytest.raises(ConfigError, match=r"backend\.name: cannot import 'no_such_pkg_xyz'"):
        prepare(cfg)


def test_train_device_follows_the_backend(tmp_path):
    assert load_pipeline(write(tmp_path, BASE)).train.device == "auto"
    assert load_pipeline(write(tmp_path, BASE), ["backend.device=cpu"]).train.device == "cpu"
    assert load_pipeline(write(tmp_path, BASE), ["backend.device=cpu", "train.device=cuda:1"]).train.device == "cuda:1"
    assert load_pipeline(write(tmp_path, BASE), ["backend.name=openai"]).train.device == "auto"


def test_required_option_names_what_it_wants(no_model_loads):
    task = make_task(TaskConfig(name="arithmetic"), PromptLibrary())
    with pytest.raises(ConfigError, match=r"score\.options\.model: required \(Hub id or local folder"):
        make_scorer("reward_model", task)
