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


def validate_options(model: type[BaseModel], data: Any, where: str):
    """`data` (a dict, an instance of `model`, or None) as `model`; ConfigError naming `where.<key>` otherwise."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(dict(data or {}))
    except ValidationError as e:
        lines = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown option; known: {sorted(model.model_fields)}"
            lines.append(f"{where}{'.' + key if key else ''}: {msg}")
        raise ConfigError("\n".join(lines) if len(lines) == 1 else "invalid options:\n  " + "\n  ".join(lines)) from None
