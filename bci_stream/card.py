"""The model card: everything needed to feed a model correctly, stored inside the ONNX file.

The card lives in the ONNX ``metadata_props`` under the key :data:`CARD_KEY` as JSON. The daemon
refuses a model without a valid card, so a model can never be run with the wrong channels, rate,
window or normalisation. Training writes the card with :func:`write_card` at export time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    computed_field,
    model_serializer,
    model_validator,
)

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
    line frequency in Hz or null, ``notch_q`` the notch's quality factor (``scipy.signal.iirnotch``; -3 dB
    bandwidth = notch / notch_q; cards without it were made with 30). ``filter`` names the band design:
    ``causal-butter-<order>`` (``scipy.signal.butter``, second-order sections, run forward only).
    The complete chain, with the sections themselves, is in the card's ``filters`` (see :class:`ModelCard`).
    """

    bandpass: tuple[float | None, float | None] | None = None
    notch: float | None = None
    notch_q: float = Field(30.0, gt=0)
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

    Attributes
    ----------
    events, label, label_map
        The markers the model was trained on and where their true class is (see the field descriptions).
    event_fields : list of str or None
        The EEGLAB event fields training read into the markers, in the order they were appended: ``["position"]``
        turns an event ``square`` with ``position = 1`` into the marker ``square/position=1``
        (:func:`bci_stream.recordings.read_recording`). Replay and the demo read the same fields from a ``.set``
        file, so the markers they send are the ones ``events``/``label``/``label_map`` were written for
        (:func:`card_event_fields`). None (omitted from the JSON) when the markers were not built from event
        fields, and in cards written before this field existed.
    """

    name: str = "eeg"
    layout: Literal["NTC", "NCT"] = "NTC"
    sfreq: float = Field(gt=0)
    n_times: int = Field(gt=0)
    tmin: float = 0.0
    channels: list[str] = Field(min_length=1)
    units: Literal["V", "mV", "uV"] = "V"
    features: FeatureSpec | None = None
    # The markers the model was trained on: the daemon uses them unless its config says otherwise.
    events: str | None = Field(None, description="regex (re.search) of the markers that get an epoch")
    label: str | None = Field(None, description="regex whose group 'label' names the true class in a marker")
    label_map: dict[str, str] | None = Field(
        None, description="marker value (matched whole) -> true class; when given, used instead of 'label'"
    )
    event_fields: list[str] | None = Field(
        None,
        min_length=1,
        description="EEGLAB event fields read into the markers in training, in order (e.g. ['position'] for "
        "markers such as 'square/position=1'); replay and demo read them from a .set file the same way",
    )

    @model_validator(mode="after")
    def _check(self) -> InputSpec:
        dupes = sorted({c for c in self.channels if self.channels.count(c) > 1})
        if dupes:
            raise ValueError(f"input channels are duplicated: {dupes}")
        return self

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Cards without a label map or event fields serialise exactly as before these existed (byte-identical exports).
        data: dict[str, Any] = handler(self)
        for key in ("label_map", "event_fields"):
            if data.get(key) is None:
                data.pop(key, None)
        return data

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
    range: tuple[float, float] | None = Field(
        None, description="valence: [low, high] of the output over the training data (display range); optional"
    )
    # embedding models (task "embedding"): the vector's size, the softmax temperature, an optional class table
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

    @model_serializer(mode="wrap")
    def _omit_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Cards without these optional fields serialise exactly as before they existed (byte-identical exports).
        data: dict[str, Any] = handler(self)
        for key in ("range", "dim", "temperature", "table"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class ModelCard(_Strict):
    """The card stored in an ONNX model; see DESIGN.md for the JSON layout.

    Its JSON also carries ``filters``, the complete preprocessing derived from the fields (every filter stage with
    family, order, edges, notch Q, the scipy and MNE calls, the second-order sections at the card's rate, how they
    are run): see :func:`bci_stream.signal.describe_preprocessing`. It is written into every card and checked when
    a card is read (:meth:`from_json`); cards written before it existed load unchanged.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    schema_: int = Field(SCHEMA_VERSION, alias="schema")
    name: str
    version: str = "0.0.0"
    task: Literal["classification", "valence", "embedding"] = "classification"
    input: InputSpec
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    output: OutputSpec = Field(default_factory=OutputSpec)
    provenance: dict[str, object] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        # ``filters`` is derived from the other fields: dumped, never stored (see from_json for its check)
        if isinstance(data, dict) and "filters" in data:
            data = {k: v for k, v in data.items() if k != "filters"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def filters(self) -> dict[str, Any]:
        """The complete preprocessing a peer needs to rebuild it (derived; see the class docstring)."""
        from .signal import describe_preprocessing  # signal builds on this module

        return describe_preprocessing(self)

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
        """Parse and validate a card; a ``filters`` section it carries must agree with the fields."""
        try:
            data = json.loads(text)
            card = cls.model_validate(data)
        except json.JSONDecodeError as exc:
            raise ModelCardError(f"{source}: the model card is not valid JSON ({exc})") from exc
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'card'}: {err['msg']}" for err in exc.errors()
            )
            raise ModelCardError(f"{source}: invalid model card: {problems}") from exc
        stored = data.get("filters") if isinstance(data, dict) else None
        if stored is not None:
            _check_sections(stored, card, source)
        return card


def _check_sections(stored: Any, card: ModelCard, source: str) -> None:
    """Refuse a card whose stored second-order sections differ from those its fields design (edited by hand, or a
    design that changed): the daemon filters with the latter, so the model would see other numbers than the card
    promises. Sections may be listed for any stream rate (Hz, the key); each is compared with the design there."""
    from .signal import design_filter  # signal builds on this module

    sections = stored.get("sections") if isinstance(stored, dict) else None
    if not isinstance(sections, dict):
        raise ModelCardError(f"{source}: invalid model card: filters.sections is missing or not an object")
    prep = card.preprocessing
    for rate, sos in sections.items():
        try:
            got = np.asarray(sos, dtype=np.float64)
            designed = design_filter(float(rate), prep, card.input.sfreq)
        except (TypeError, ValueError, ModelCardError) as exc:
            raise ModelCardError(
                f"{source}: invalid model card: filters.sections[{rate!r}] is not a rate with numeric sections the "
                f"card's preprocessing can be designed at ({exc})"
            ) from exc
        want = np.zeros((0,)) if designed is None else designed
        scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
        if got.shape != want.shape or (want.size and float(np.max(np.abs(got - want))) > 1e-9 * scale):
            raise ModelCardError(
                f"{source}: the card's filters.sections at {rate} Hz (shape {got.shape}) differ from the sections "
                f"its preprocessing fields design (shape {want.shape}: bandpass {prep.bandpass}, notch "
                f"{prep.notch}, Q {prep.notch_q}, {prep.filter}); fix the fields or re-export the model"
            )


#: The label regex training writes for an EEGLAB event-field rule (``training.realdata.LabelRule.daemon_regex``).
_FIELD_LABEL = re.compile(r"^\(\?:\^\|/\)(?P<field>.+)=\(\?P<label>\[\^/\]\+\)$")


def card_event_fields(card: ModelCard) -> list[str] | None:
    """The EEGLAB event fields a model's markers were built from; None when its card names none.

    Replaying or cutting a ``.set`` file for such a model needs these fields read into the markers
    (``read_recording(..., event_fields=...)``, ``bci-stream replay --event-fields``), else its markers are plain
    ``square`` and no label rule over ``square/position=1`` matches them.

    Parameters
    ----------
    card : ModelCard
        The model's card.

    Returns
    -------
    list of str or None
        ``card.input.event_fields`` when the card records them (``bci-train fit``, ``distil`` and ``crossval
        --export`` write it whenever markers were built from event fields). Cards written before that field
        existed fall back to parsing the label rule: ``input.label = (?:^|/)F=(?P<label>[^/]+)`` as ``distil
        --event-fields F``, ``fit`` with ``label_field`` / ``event_fields`` and ``crossval --label-field`` write it
        (``crossval`` also as ``provenance.labels.field``), or a label map over field markers with keys such as
        ``square/position=1``, whose fields are read in the order they appear. That parse gives None for a custom
        label regex over field markers or a map whose keys mix field orders: such an old card needs
        ``--event-fields``.
    """
    spec = card.input
    if spec.event_fields:
        return list(spec.event_fields)
    # cards written before input.event_fields: recover the fields from the label rule training wrote
    if spec.label_map:
        orders = {tuple(part.split("=", 1)[0] for part in key.split("/")[1:] if "=" in part) for key in spec.label_map}
        return list(orders.pop()) if len(orders) == 1 and () not in orders else None
    labels = card.provenance.get("labels")
    if isinstance(labels, dict) and isinstance(labels.get("field"), str):
        return [labels["field"]]
    found = _FIELD_LABEL.match(spec.label or "")
    if found is None:
        return None
    field = re.sub(r"\\(.)", r"\1", found.group("field"))  # undo re.escape
    return [field] if spec.label == rf"(?:^|/){re.escape(field)}=(?P<label>[^/]+)" else None


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
