"""Prompt templates are Jinja2 files in `prompts/`, referenced by name from YAML.

Search order: the pipeline's `prompts_dir`, then the templates bundled with the package.
Each rendered template's name and content hash go into the stage manifest.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

import jinja2


def after_attempt(messages: list[dict], attempt: str, instruction: str) -> list[dict]:
    """A conversation continued after the model's attempt: the messages, the attempt as the assistant's turn, then the
    instruction as the user's (a revision turn, a critique to refine with)."""
    return list(messages) + [{"role": "assistant", "content": attempt}, {"role": "user", "content": instruction}]


def shipped_dirs(kind: str) -> tuple[Path, Path]:
    """Where a shipped folder (prompts, pipelines, evals, judges, jobs) can be: a source checkout's (editable install),
    then the copy packed into the wheel."""
    here = Path(__file__).resolve().parent
    return here.parent / kind, here / "_bundled" / kind


def bundled_prompts_dir() -> Path:
    """`prompts/` of a source checkout (editable install) or the copy packed into the wheel."""
    for cand in shipped_dirs("prompts"):
        if cand.is_dir():
            return cand
    raise FileNotFoundError("bundled prompts/ folder not found; reinstall selfimprove")


def regex_replace(text: str, pattern: str, replacement: str) -> str:
    """The templates' `regex_replace` filter: `re.sub` (e.g. GSM8K's <<calculator>> annotations out of a solution)."""
    return re.sub(pattern, replacement, str(text))


class PromptLibrary:
    """Finds and renders templates; `StrictUndefined` turns a missing variable into an error."""

    def __init__(self, extra_dir: str | Path | None = None):
        self.extra_dir = str(Path(extra_dir).resolve()) if extra_dir else None  # absolute: a Ray worker rebuilds the library from it
        dirs = [Path(extra_dir)] if extra_dir else []
        dirs.append(bundled_prompts_dir())
        self.dirs = dirs
        self.env = self._environment()

    def _environment(self) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(d) for d in self.dirs]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            autoescape=False,
        )
        env.filters["regex_replace"] = regex_replace
        return env

    def __getstate__(self) -> dict:
        """Pickles without the Jinja environment (its template cache holds locks); it is rebuilt on unpickling."""
        return {k: v for k, v in self.__dict__.items() if k != "env"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.env = self._environment()

    def names(self) -> list[str]:
        out = set()
        for d in self.dirs:
            out.update(p.stem for p in d.glob("*.jinja"))
        return sorted(out)

    def exists(self, name: str) -> bool:
        return any((d / f"{name}.jinja").is_file() for d in self.dirs)

    def require(self, name: str | None, field: str) -> None:
        """Raise a ConfigError naming the config `field` when template `name` (None: not set) is in none of the folders."""
        if name is not None and not self.exists(name):
            from .errors import ConfigError

            raise ConfigError(f"{field}: no template {name!r} in {[str(d) for d in self.dirs]} (known: {self.names()})")

    def source(self, name: str) -> str:
        for d in self.dirs:
            p = d / f"{name}.jinja"
            if p.is_file():
                return p.read_text()
        raise KeyError(name)

    def digest(self, name: str) -> str:
        return hashlib.sha256(self.source(name).encode()).hexdigest()[:16]

    def render(self, name: str, **variables) -> str:
        return self.env.get_template(f"{name}.jinja").render(**variables).strip()


@lru_cache(maxsize=8)
def library(extra_dir: str | None = None) -> PromptLibrary:
    return PromptLibrary(extra_dir)
