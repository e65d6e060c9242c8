"""Typed options for every registered plug-in (task, scorer, row builder, trainer, plug-in backend): each class
declares a pydantic `Options` model, and YAML `options:` are validated against it before any model loads,
errors naming the YAML path of the offending key."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError


class NoOptions(BaseModel):
    """For plug-ins without options: any key is an error."""

    model_config = ConfigDict(extra="forbid")


class Options(BaseModel):
    """Base of plug-in option models: unknown keys are errors; values are validated (and coerced) by type."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def option_errors(model: type[BaseModel], err: ValidationError, where: str) -> list[str]:
    """One line per error: `<where>.<key>: <message>`; an unknown top-level key lists the known ones, a missing
    one repeats the field's description."""
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"] if not (isinstance(p, str) and "=" in p)]  # tags of tagged unions left out
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = f"unknown option; known: {sorted(model.model_fields)}" if len(loc) == 1 else "unknown key"
        elif e["type"] == "missing" and len(loc) == 1 and loc[0] in model.model_fields:
            msg = f"required ({model.model_fields[loc[0]].description or 'no default'})"
        lines.append(f"{where}{'.' + '.'.join(loc) if loc else ''}: {msg}")
    return lines


def validate_options(model: type[BaseModel], data: Any, where: str):
    """`data` (a dict, an instance of `model`, or None) as `model`; ConfigError naming `where.<key>` otherwise."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(dict(data or {}))
    except ValidationError as e:
        lines = option_errors(model, e, where)
        raise ConfigError(lines[0] if len(lines) == 1 else "invalid options:\n  " + "\n  ".join(lines)) from None
