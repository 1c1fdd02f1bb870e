"""The training side's errors: children of :mod:`bci_stream.errors`, so both CLIs treat them alike.

``bci-train`` prints a :class:`~bci_stream.errors.BciStreamError` as one line and exits 2; anything else is a bug
and raises with its traceback (exit 1). Two of the classes here also derive from a builtin (``ValueError``,
``FileNotFoundError``): callers that caught those before the one hierarchy keep working for one release; the CLIs do
not catch the builtins.
"""

from __future__ import annotations

from bci_stream.errors import BciStreamError, ConfigError, TrainingError


class TrainingDataError(TrainingError, ValueError):
    """The recordings or sequences cannot give a labelled, splittable training set (the message says why)."""


class SettingError(ConfigError, ValueError):
    """A training setting (config key or command-line value) breaks its rule; the message names it and the value."""


class ConfigFileNotFoundError(ConfigError, FileNotFoundError):
    """A config file named on the command line does not exist."""


__all__ = [
    "BciStreamError",
    "ConfigError",
    "ConfigFileNotFoundError",
    "SettingError",
    "TrainingDataError",
    "TrainingError",
]
