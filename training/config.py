"""One loader for every ``bci-train`` config: TOML read in one place, validated by a strict pydantic model.

Every config model derives from :class:`Strict` (``extra="forbid"``: a mistyped key is refused, not ignored), and
every error is a :class:`bci_stream.errors.ConfigError` (:class:`training.errors.SettingError` for a
broken rule) that names the file, the key (TOML's dotted spelling,
``train.lr``), the value found and the rule broken, through the daemon's own formatter
(:func:`bci_stream.config._describe`), so the two sides word their errors alike.

The models: :class:`training.run_config.RunConfig` (``bci-train fit``), :class:`training.sweep.SweepConfig`
(``bci-train sweep``), :class:`training.valence.cli.ValenceConfig` (``bci-train valence``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from bci_stream.config import _describe
from bci_stream.errors import ConfigError

from .errors import ConfigFileNotFoundError, SettingError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every training config table: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class StrictFrozen(Strict):
    """A strict table that cannot be changed after validation (run configs: what trained is what is recorded)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def strict_model_of(dc: type, name: str) -> type[Strict]:
    """A :class:`Strict` table with the fields, types and defaults of the dataclass ``dc`` (one source of truth)."""
    import dataclasses
    import typing

    from pydantic import create_model

    hints = typing.get_type_hints(dc)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(dc):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"{dc.__name__}.{f.name} has no default")
        fields[f.name] = (hints[f.name], default)
    return create_model(name, __base__=Strict, **fields)


def read_toml(path: str | Path, *, what: str = "config") -> dict[str, Any]:
    """The tables of a TOML file; :class:`ConfigError` names the file when it is missing or not TOML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigFileNotFoundError(f"{what} file {str(path)!r} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def validate(model: type[M], raw: Mapping[str, Any], *, source: str, example: str, what: str = "config") -> M:
    """``model`` validated from ``raw``; every problem in one :class:`SettingError` (file, key, value, rule).

    ``source`` is the file (or ``<mapping>``), ``what`` the kind of config (``run config``, ``sweep config``).
    """
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(_describe(e, example=example, dotted=True, what=what) for e in exc.errors())
        raise SettingError(f"{source}: {problems}") from None


def load(model: type[M], path: str | Path, *, example: str, what: str = "config") -> M:
    """Read the TOML file ``path`` and validate it as ``model`` (see :func:`read_toml`, :func:`validate`)."""
    return validate(model, read_toml(path, what=what), source=str(path), example=example, what=what)


__all__ = ["Strict", "StrictFrozen", "load", "read_toml", "strict_model_of", "validate"]
