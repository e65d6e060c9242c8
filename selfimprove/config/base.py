"""What every config file shares: strict models (unknown keys fail, naming their YAML path), YAML loading,
`--set key.path=value` overrides, and readable validation errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Tag, ValidationError

from ..errors import ConfigError


class Strict(BaseModel):
    """A config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def tagged_union(label: str, field: str, builtins: dict[str, type], plugin: type, default: str):
    """The config models of one plug-in kind as a union chosen by `field` (`name`, `method`): a built-in's own model,
    anything else the plug-in model (whose validator checks the registry). A missing `field` means `default`. Tags
    read `<label>=<value>`, which error paths leave out and "unknown key for <label> '<value>'" names."""

    def tag(v: Any) -> str:
        value = v.get(field, default) if isinstance(v, dict) else getattr(v, field, default)
        return f"{label}={value if value in builtins else 'plugin'}"

    members = tuple(Annotated[cls, Tag(f"{label}={name}")] for name, cls in {**builtins, "plugin": plugin}.items())
    return Annotated[Union[members], Discriminator(tag)]


def _format_loc(loc: tuple[Any, ...]) -> str:
    """`("score", 0, "options")` -> `score[0].options`; the tags of tagged unions (`backend=vllm`) are left out."""
    out = ""
    for part in loc:
        if isinstance(part, str) and ("=" in part or part.startswith("function-")):
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<root>"


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        loc = _format_loc(tuple(e["loc"]))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            tags = [p.split("=", 1) for p in e["loc"] if isinstance(p, str) and "=" in p]
            which = f" for {tags[-1][0]} {tags[-1][1]!r}" if tags and tags[-1][1] != "plugin" else ""
            msg = f"unknown key{which} (check the spelling; see the documented keys in README.md)"
        lines.append(f"  {msg}" if loc == "<root>" else f"  {loc}: {msg}")  # a whole-config rule names its own keys
    return "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`generate.n=4` -> (["generate", "n"], 4); the value is parsed as YAML (numbers, lists, null)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, value = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set {text!r}: empty key")
    return path, yaml.safe_load(value) if value.strip() else ""


def apply_override(data: dict, path: list[str], value: Any) -> None:
    node = data
    for i, part in enumerate(path[:-1]):
        nxt = node.get(part) if isinstance(node, dict) else None
        if nxt is None:
            nxt = {}
            node[part] = nxt
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {'.'.join(path[: i + 1])} is not a mapping")
        node = nxt
    node[path[-1]] = value


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    return data


def deep_merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`: mappings merge key by key, anything else (lists included) replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_with_extends(path: str | Path, seen: tuple[Path, ...] = ()) -> dict:
    """A YAML file, on top of the file its `extends:` names (a path relative to it; chains allowed, cycles refused):
    a GPU-scale variant of a recipe states only what differs."""
    p = Path(path).resolve()
    if p in seen:
        raise ConfigError(f"{path}: extends: forms a cycle ({' -> '.join(str(x) for x in (*seen, p))})")
    data = load_yaml(p)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends: expected the path of another YAML file, got {parent!r}")
    base_path = (p.parent / parent).resolve()
    if not base_path.is_file():
        raise ConfigError(f"{path}: extends: {parent} not found (looked for {base_path})")
    return deep_merge(load_with_extends(base_path, (*seen, p)), data)


def load_config(path: str | Path, model: type[BaseModel], overrides: list[str] | None = None):
    """Read a YAML file (pipeline, eval suite, judge job; on top of the file its `extends:` names), apply `--set`
    overrides, validate it as `model`."""
    data = load_with_extends(path)
    for text in overrides or []:
        key, value = parse_override(text)
        apply_override(data, key, value)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, str(path))) from None


def plain_name(v: str) -> str:
    """Run, suite and job names become folder names."""
    if not v or "/" in v or v.startswith("."):
        raise ValueError("must be a plain folder name (no '/', not starting with '.')")
    return v
