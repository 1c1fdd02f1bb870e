"""The ``bci-train valence`` config (:class:`ValenceConfig`), read by :func:`load_config`.

Tables ``[synth]`` (:class:`training.valence.data.SynthConfig`), ``[features]``, ``[fit]``
(:class:`training.valence.fit.FitConfig`), ``[evaluate]``, ``[export]``; every key optional, unknown keys refused
with the file and key named (:mod:`training.config`). Example: ``configs/train-valence-synth.toml``. Imports torch
(through :mod:`training.valence.fit`): the CLI loads this module only when a command runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from bci_stream.card import FeatureSpec, Preprocessing
from bci_stream.features import default_feature_spec, validate_feature_spec

from ..config import Strict, load, strict_model_of
from .data import FeatureSetup, SynthConfig
from .fit import FitConfig


class FeaturesTable(Strict):
    """``[features]``: the band-power features (defaults: :func:`bci_stream.features.default_feature_spec`)."""

    bands: list[tuple[float, float]] | None = None
    window: float | None = Field(None, gt=0)  # s
    hop: float | None = Field(None, gt=0)  # s
    segment: float | None = Field(None, gt=0)  # s, Welch segment
    reference: str | None = None
    bandpass: tuple[float, float] | None = None
    filter: str | None = None
    notch: float | None = None


class EvaluateTable(Strict):
    schemes: list[str] | None = None
    folds: int | None = Field(None, ge=2)
    seed: int | None = None


class ExportTable(Strict):
    name: str | None = None
    version: str | None = None
    context: int | None = Field(None, ge=1)
    out: str | None = None


SynthTable = strict_model_of(SynthConfig, "SynthTable")
FitTable = strict_model_of(FitConfig, "FitTable")


class ValenceConfig(Strict):
    """A ``bci-train valence`` config: ``[synth]`` (:class:`SynthConfig`), ``[features]``, ``[fit]``
    (:class:`training.valence.fit.FitConfig`), ``[evaluate]``, ``[export]``; every key optional."""

    synth: SynthTable | None = None  # type: ignore[valid-type]
    features: FeaturesTable | None = None
    fit: FitTable | None = None  # type: ignore[valid-type]
    evaluate: EvaluateTable | None = None
    export: ExportTable | None = None


@dataclass
class Config:
    """The validated config as the commands use it (tables as dicts of the keys given)."""

    synth: SynthConfig = field(default_factory=SynthConfig)
    features: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    evaluate: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"

    def feature_setup(self, channels: list[str]) -> FeatureSetup:
        f = dict(self.features)
        base = default_feature_spec()
        spec = FeatureSpec(
            bands=[tuple(b) for b in f.get("bands", base.bands)],
            window=f.get("window", base.window),
            hop=f.get("hop", base.hop),
            segment=f.get("segment", base.segment),
            reference=f.get("reference", base.reference),
        )
        validate_feature_spec(spec, target=f"{self.source} [features]")
        prep = Preprocessing(
            bandpass=tuple(f.get("bandpass", (0.3, 45.0))),
            notch=f.get("notch"),
            filter=f.get("filter", "causal-butter-4"),
        )
        return FeatureSetup(spec, prep, channels)


def load_config(path: str | Path | None) -> Config:
    """Read and validate a valence config (None: the defaults); errors name the file, the key and the rule."""
    if path is None:
        return Config()
    model = load(ValenceConfig, path, example="configs/train-valence-synth.toml", what="valence config")
    raw = model.model_dump(exclude_unset=True)
    return Config(
        synth=SynthConfig(**raw.get("synth", {})),
        features=raw.get("features", {}),
        fit=raw.get("fit", {}),
        evaluate=raw.get("evaluate", {}),
        export=raw.get("export", {}),
        source=str(path),
    )


__all__ = ["Config", "ValenceConfig", "load_config"]
