"""The model card: everything needed to feed a model correctly, stored inside the ONNX file.

The card lives in the ONNX ``metadata_props`` under the key :data:`CARD_KEY` as JSON. The daemon
refuses a model without a valid card, so a model can never be run with the wrong channels, rate,
window or normalisation. Training writes the card with :func:`write_card` at export time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ModelCardError

CARD_KEY = "bci_stream.card"
SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normalization(_Strict):
    """Per-channel z-scoring applied to each epoch after filtering.

    ``mean`` and ``std`` are in the card's input units and were fitted on the training split only.
    """

    kind: Literal["none", "channel"] = "none"
    mean: list[float] | None = None
    std: list[float] | None = None

    @model_validator(mode="after")
    def _check(self) -> Normalization:
        if self.kind == "channel":
            if self.mean is None or self.std is None:
                raise ValueError("normalization kind 'channel' needs both 'mean' and 'std'")
            if len(self.mean) != len(self.std):
                raise ValueError(f"normalization mean has {len(self.mean)} values, std {len(self.std)}")
            if any(s <= 0 for s in self.std):
                raise ValueError("normalization std values must all be > 0")
        return self


class Preprocessing(_Strict):
    """Causal filtering run over the continuous signal, then normalisation per epoch.

    ``bandpass`` is ``[low, high]`` in Hz (either may be null for a one-sided filter), ``notch`` the
    line frequency in Hz or null. ``filter`` names the design: ``causal-butter-<order>``.
    """

    bandpass: tuple[float | None, float | None] | None = None
    notch: float | None = None
    filter: str = "causal-butter-4"
    normalization: Normalization = Field(default_factory=Normalization)

    @model_validator(mode="after")
    def _check(self) -> Preprocessing:
        if not self.filter.startswith("causal-butter-") or not self.filter.rsplit("-", 1)[1].isdigit():
            raise ValueError(f"filter {self.filter!r} is not supported; use 'causal-butter-<order>'")
        if self.bandpass is not None:
            low, high = self.bandpass
            if any(edge is not None and edge <= 0 for edge in (low, high)):
                raise ValueError(f"bandpass {list(self.bandpass)}: band edges must be > 0 Hz (null for none)")
            if low is not None and high is not None and not 0 < low < high:
                raise ValueError(f"bandpass {list(self.bandpass)} must satisfy 0 < low < high")
        return self

    @property
    def filter_order(self) -> int:
        return int(self.filter.rsplit("-", 1)[1])

    @property
    def highest_frequency(self) -> float | None:
        """The highest frequency the model relies on (Hz), or None when nothing limits it."""
        return None if self.bandpass is None else self.bandpass[1]


class FeatureSpec(_Strict):
    """Band-power features for valence models (issue 4); kept here so the schema is complete."""

    bands: list[tuple[float, float]]
    window: float
    hop: float
    segment: float = 1.0
    reference: Literal["average", "none"] = "average"


class InputSpec(_Strict):
    """What one model input looks like.

    ``layout`` is ``NTC`` (batch, time, channel) or ``NCT``; ``sfreq`` in Hz; ``tmin`` in seconds
    after the marker; ``units`` the units the model expects samples in (``V`` or ``uV``).
    """

    name: str = "eeg"
    layout: Literal["NTC", "NCT"] = "NTC"
    sfreq: float = Field(gt=0)
    n_times: int = Field(gt=0)
    tmin: float = 0.0
    channels: list[str] = Field(min_length=1)
    units: Literal["V", "mV", "uV"] = "V"
    features: FeatureSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> InputSpec:
        dupes = sorted({c for c in self.channels if self.channels.count(c) > 1})
        if dupes:
            raise ValueError(f"input channels are duplicated: {dupes}")
        return self

    @property
    def duration(self) -> float:
        """Epoch length in seconds."""
        return self.n_times / self.sfreq


class OutputSpec(_Strict):
    """The model output. Embedding models (task ``embedding``) output ``dim``-d unit vectors; ``temperature``
    scales their cosine similarities into probabilities (softmax(cos / temperature)); ``table`` is an optional
    class table (one ``dim``-d row per entry of ``classes``) that makes them zero-shot classifiers."""

    name: str = "logits"
    classes: list[str] = Field(default_factory=list)
    dim: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, gt=0)
    table: list[list[float]] | None = None

    @model_validator(mode="after")
    def _check(self) -> OutputSpec:
        if self.table is not None:
            if len(self.table) != len(self.classes):
                raise ValueError(f"output.table has {len(self.table)} rows but output.classes {len(self.classes)}")
            bad = sorted({len(row) for row in self.table} - {self.dim})
            if bad:
                raise ValueError(f"output.table rows have length {bad}, output.dim is {self.dim}")
        return self


class ModelCard(_Strict):
    """The card stored in an ONNX model; see DESIGN.md for the JSON layout."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    schema_: int = Field(SCHEMA_VERSION, alias="schema")
    name: str
    version: str = "0.0.0"
    task: Literal["classification", "valence", "embedding"] = "classification"
    input: InputSpec
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    output: OutputSpec = Field(default_factory=OutputSpec)
    provenance: dict[str, object] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> ModelCard:
        if self.schema_ != SCHEMA_VERSION:
            raise ValueError(f"schema {self.schema_} is not supported; this bci-stream reads {SCHEMA_VERSION}")
        if self.task == "valence" and self.input.features is None:
            raise ValueError("a valence card needs input.features (bands, window, hop) to compute its input")
        if self.task == "classification" and len(self.output.classes) < 2:
            raise ValueError("a classification card must list at least 2 output classes")
        if self.task == "embedding" and (self.output.dim is None or self.output.temperature is None):
            raise ValueError("an embedding card needs output.dim and output.temperature")
        norm = self.preprocessing.normalization
        if norm.kind == "channel" and norm.mean is not None and len(norm.mean) != len(self.input.channels):
            raise ValueError(
                f"normalization has {len(norm.mean)} channel means but input lists {len(self.input.channels)} channels"
            )
        return self

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "<card>") -> ModelCard:
        try:
            return cls.model_validate(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ModelCardError(f"{source}: the model card is not valid JSON ({exc})") from exc
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'card'}: {err['msg']}" for err in exc.errors()
            )
            raise ModelCardError(f"{source}: invalid model card: {problems}") from exc


def read_card(path: str | Path) -> ModelCard:
    """Read and validate the card of an ONNX model file.

    Raises
    ------
    ModelCardError
        If the file is missing, is not ONNX, or carries no valid card.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelCardError(f"model file {str(path)!r} does not exist; pass --model with an .onnx file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises several unrelated types for a bad file
        raise ModelCardError(f"{path}: not a readable ONNX model ({exc})") from exc
    meta = {p.key: p.value for p in model.metadata_props}
    if CARD_KEY not in meta:
        raise ModelCardError(
            f"{path}: no model card (metadata key {CARD_KEY!r}); export the model with "
            "`bci-train export` or add a card with bci_stream.card.write_card"
        )
    return ModelCard.from_json(meta[CARD_KEY], source=str(path))


def write_card(path: str | Path, card: ModelCard) -> None:
    """Store ``card`` in the ONNX file at ``path`` (in place), replacing any earlier card."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != CARD_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key = CARD_KEY
    entry.value = card.to_json()
    onnx.save(model, str(path))
