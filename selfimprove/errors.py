"""Errors a user can act on: the CLI prints their message (no traceback) and exits with `exit_code`."""


class SelfImproveError(Exception):
    exit_code = 1


class ConfigError(SelfImproveError, ValueError):
    """A configuration or input-data problem; the message names the YAML path. Exit code 2."""

    exit_code = 2


class ModelError(SelfImproveError, RuntimeError):
    """A model reference that cannot be resolved or loaded. Exit code 3."""

    exit_code = 3


class StageError(SelfImproveError, RuntimeError):
    """A stage cannot proceed (for example no training rows were selected). Exit code 1."""


class BackendError(SelfImproveError, RuntimeError):
    """A backend that would produce wrong output (e.g. a library ignoring an argument); refused loudly. Exit code 1."""


class MissingPackage(ConfigError):
    """An optional package the config needs is not installed; the message names the setting and the install line.
    A ConfigError: it is found when the config is checked, before any model loads (exit code 2)."""
