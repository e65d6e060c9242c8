"""A setting that needs an optional package that is not installed fails when the config is checked (`--dry-run`),
with one error type and one message form (the setting, the package, the install line), before any model loads."""

import pytest

from selfimprove import optional
from selfimprove.config import load_pipeline
from selfimprove.errors import ConfigError, MissingPackage
from selfimprove.pipeline.loop import prepare


@pytest.mark.parametrize("override, setting, install", [
    ("backend={name: vllm}", "backend.name", "selfimprove[vllm]"),
    ("backend={name: openai, base_url: 'http://localhost:8000/v1'}", "backend.name", "selfimprove[openai]"),
    ("ray={num_workers: 2}", "ray", "selfimprove[ray]"),
    ("train.distributed={deepspeed: zero2, num_processes: 2}", "train.distributed", "selfimprove[deepspeed]"),
    ("report_to=[tensorboard]", "report_to", "selfimprove[tensorboard]"),
])
def test_a_missing_package_is_found_with_the_config(monkeypatch, no_model_loads, override, setting, install):
    monkeypatch.setattr(optional, "installed", lambda module: False)
    cfg = load_pipeline("pipelines/quickstart.yaml", [override])
    with pytest.raises(MissingPackage) as e:
        prepare(cfg)
    assert str(e.value).startswith(f"{setting}: ") and "not installed" in str(e.value) and install in str(e.value)
    assert isinstance(e.value, ConfigError)  # exit code 2, like every config error


def test_installed_packages_pass():
    optional.require("ray", "ray")  # installed in the test environment (the test extra)
    with pytest.raises(MissingPackage, match="ray_llm needs the vllm package"):
        if optional.installed("vllm"):
            pytest.skip("vllm is installed here")
        optional.require("ray_llm", "backend.name")


def test_the_command_line_prints_the_install_line_as_written(monkeypatch, no_model_loads):
    """The CLI prints an error's text literally: rich markup would eat `[vllm]` out of `selfimprove[vllm]`."""
    from typer.testing import CliRunner

    from selfimprove.cli import app

    monkeypatch.setattr(optional, "installed", lambda module: False)
    res = CliRunner().invoke(app, ["run", "pipelines/quickstart.yaml", "--dry-run", "--set", "backend={name: vllm}"])
    assert res.exit_code == 2
    assert "pip install 'selfimprove[vllm]'" in " ".join(res.output.split())


def test_a_dry_run_prints_the_plan(no_model_loads):
    from typer.testing import CliRunner

    from selfimprove.cli import app

    res = CliRunner().invoke(app, ["run", "pipelines/scpo.yaml", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "generate -> score [majority_vote, gold] -> select [vote_pairs] -> train [dpo] -> eval" in " ".join(res.output.split())
