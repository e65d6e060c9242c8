"""The package's seams, checked on the source: no import cycles (function-level imports count), the library layers
(scoring, selection, training, tasks, generation) never import the pipeline or the run context, the sandbox and
the store are leaves, and validating a config (`run --dry-run`, `--help`) imports no torch."""

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from import_graph import cycles, import_graph, importers_of, order_violations, package_graph  # noqa: E402

GRAPH = import_graph(REPO / "selfimprove")
RUNTIME = ("selfimprove.pipeline", "selfimprove.runtime", "selfimprove.cli", "selfimprove.evaluation", "selfimprove.judging", "selfimprove.jobs")


def test_no_import_cycles():
    assert cycles(GRAPH) == []


def test_packages_follow_their_order():
    """core < config < {tasks, generation, selection, builders} < scoring < training < runtime < {evaluation, judging} <
    jobs < pipeline < cli (scripts/import_graph.py LAYERS): no import, even inside a function, goes up or sideways."""
    assert order_violations(GRAPH) == []
    packages = package_graph(GRAPH)
    assert cycles({p: {t: "top" for t in ts} for p, ts in packages.items()}) == []


def test_the_order_check_finds_an_import_inside_a_function(tmp_path):
    pkg = tmp_path / "selfimprove"
    for sub in ("scoring", "pipeline"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "pipeline" / "loop.py").write_text("from ..scoring import base\n")
    (pkg / "scoring" / "base.py").write_text("def f():\n    from ..pipeline import loop\n")
    assert order_violations(import_graph(pkg)) == [("selfimprove.scoring.base", "selfimprove.pipeline.loop", "function")]


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    pkg = tmp_path / "selfimprove"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    assert cycles(import_graph(pkg)) == [["selfimprove.a", "selfimprove.b"]]


def test_library_layers_do_not_import_the_pipeline_runtime():
    for layer in ("selfimprove.scoring", "selfimprove.selection", "selfimprove.builders", "selfimprove.training", "selfimprove.tasks", "selfimprove.generation",
                  "selfimprove.config", "selfimprove.models", "selfimprove.registry"):
        offenders = {m: t for m, t in importers_of(GRAPH, RUNTIME).items() if m == layer or m.startswith(layer + ".")}
        assert offenders == {}, offenders


def test_sandbox_and_store_are_leaves():
    for mod, targets in GRAPH.items():
        if mod.startswith("selfimprove.sandbox"):
            assert all(t.startswith("selfimprove.sandbox") for t in targets), (mod, targets)
    assert set(GRAPH["selfimprove.store"]) == set()


def _modules_after(code: str) -> str:
    script = textwrap.dedent(f"""
        import sys
        {code}
        print(sorted(m for m in ("torch", "transformers", "trl", "peft", "vllm") if m in sys.modules))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def test_dry_run_and_help_import_no_torch(tmp_path):
    code = f"""
        from typer.testing import CliRunner
        from selfimprove.cli import app
        r = CliRunner().invoke(app, ["run", "pipelines/quickstart.yaml", "--dry-run", "--run-dir", {str(tmp_path)!r}])
        assert r.exit_code == 0, r.output
        r = CliRunner().invoke(app, ["--help"])
        assert r.exit_code == 0, r.output
        for job in (["eval", "--help"], ["judge", "--help"], ["generate", "--help"]):
            assert CliRunner().invoke(app, job).exit_code == 0
    """
    assert _modules_after(code) == "[]"


def test_registering_and_validating_every_builtin_imports_no_torch():
    code = """
        from selfimprove.registry import BACKENDS, ROW_BUILDERS, SCORERS, TASKS, TRAINERS
        for reg in (SCORERS, TASKS, ROW_BUILDERS, TRAINERS):
            for name in reg.names():
                reg.get(name)
    """
    assert _modules_after(code) == "[]"
