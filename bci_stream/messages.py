"""Schemas of everything on the wire (ZeroMQ), as pydantic models.

Each message is two frames: the topic (``prediction``, ``drop``, ``valence``, ``status``) and the
JSON payload below. Every payload carries ``schema`` (the wire-format version, :data:`SCHEMA_VERSION`),
``seq`` (per topic, +1 per message, so a client detects loss), ``session`` (the daemon run id) and
``sent_at`` (unix seconds). Times called ``time``, ``start`` and ``end`` are on the LSL clock
(seconds, :func:`pylsl.local_clock`).

The contract (README, "Wire format"): within one ``schema`` version the daemon only *adds* fields, so
:func:`decode` ignores fields it does not know, and refuses a payload whose ``schema`` is newer than
:data:`SCHEMA_VERSION`. The daemon builds its own messages strictly (an unknown field there is a bug).
JSON Schema files per topic, generated from these models by :func:`write_json_schemas`
(``bci-stream schema --out DIR``), live in ``bci_stream/schemas/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from .errors import BciStreamError

TOPICS = ("prediction", "drop", "valence", "status")
SCHEMA_VERSION = 1
"""The wire-format version every payload carries as ``schema``; bumped only for changes old clients cannot read."""

_LENIENT = {"ignore_extra": True}  # validation context of decode(): drop unknown fields at every level


class _Payload(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        protected_namespaces=(),
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        json_schema_serialization_defaults_required=True,  # the daemon always sends every field
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown(cls, data: Any, info: ValidationInfo) -> Any:
        """When decoding (context ``ignore_extra``), forget fields a newer daemon added instead of failing."""
        if isinstance(data, dict) and info.context and info.context.get("ignore_extra"):
            known = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
            return {k: v for k, v in data.items() if k in known}
        return data


class MarkerInfo(_Payload):
    value: str
    time: float = Field(description="LSL time of the marker, s")


class Window(_Payload):
    start: float = Field(description="LSL time of the epoch's first sample, s")
    end: float = Field(description="start + n_times / sfreq, s")


class ModelInfo(_Payload):
    name: str
    version: str
    sha256: str


class Timing(_Payload):
    """Where the time went, from the arrival of the epoch's last sample to this message being sent.

    ``added_latency_ms`` = ``preprocess_ms`` + ``queue_ms`` + ``inference_ms`` + ``publish_ms`` (up to
    rounding): the latency the daemon adds, measured from *arrival* (the moment the acquisition thread
    received the sample from liblsl), never from a later pull.
    """

    inference_ms: float = Field(description="ONNX Runtime time for the batch this epoch was in, ms")
    batch_size: int
    added_latency_ms: float = Field(description="publish time - time the epoch's last sample was received, ms")
    since_window_end_ms: float | None = Field(
        None,
        description="publish time - epoch end on the LSL clock, ms (includes transport); null when the stream's "
        "timestamps run ahead of this machine's clock (a replay at --speed > 1)",
    )
    preprocess_ms: float = Field(0.0, description="arrival -> epoch cut (filtering, epoching) + normalisation, ms")
    queue_ms: float = Field(0.0, description="epoch cut -> taken by the inference loop, ms")
    publish_ms: float = Field(0.0, description="inference done -> this message sent (earlier ones of the batch), ms")


class Message(_Payload):
    schema_: int = Field(SCHEMA_VERSION, alias="schema", description="wire-format version (today 1)")
    topic: str
    seq: int
    session: str
    sent_at: float


class Prediction(Message):
    topic: Literal["prediction"] = "prediction"
    marker: MarkerInfo
    window: Window
    label: str
    probability: float
    probabilities: dict[str, float]
    top_k: list[tuple[str, float]]
    true_label: str | None = None
    correct: bool | None = None
    model: ModelInfo
    timing: Timing
    embedding: list[float] | None = Field(
        None,
        description="the model's embedding of this epoch, L2-normalised (unit length, the model's output.dim "
        "values); only for an embedding model served with [publish] embeddings = true (run --embeddings), "
        "else null",
    )


class Drop(Message):
    topic: Literal["drop"] = "drop"
    marker: MarkerInfo
    reason: str
    detail: str = ""


class Valence(Message):
    topic: Literal["valence"] = "valence"
    window_end: float = Field(description="LSL time of the end of the feature window, s")
    value: float
    model: ModelInfo
    added_latency_ms: float = Field(description="publish time - time the window's last sample was received, ms")


class StreamStatus(_Payload):
    name: str
    source_id: str
    nominal_rate: float
    measured_rate: float | None
    connected: bool
    seconds_since_data: float | None
    since: float | None = Field(None, description="unix time the stream last connected or was lost, s")
    reconnects: int = Field(0, description="times a replacement stream was opened after a loss")


class Counts(_Payload):
    markers: int = 0
    ignored_markers: int = 0
    predictions: int = 0
    drops: int = 0
    drops_by_reason: dict[str, int] = Field(default_factory=dict)
    labelled: int = 0
    correct: int = 0


class ClassTable(_Payload):
    """The zero-shot class table an embedding model is served with: which one, and since when."""

    source: str = Field(description="the table file's path, or 'card' for the table inside the model card")
    sha256: str = Field(description="sha256 of the table file's bytes (card: of its names and float32 rows)")
    classes: int = Field(description="number of classes in the table")
    loaded_at: float = Field(description="unix time the table in use was read, s")
    version: int = Field(description="successful loads so far (1 = the table read at start)")
    reloads: int = Field(description="tables read after the first one (file change or SIGHUP)")
    error: str | None = Field(None, description="why the last reload failed (the previous table stays in use)")


class Status(Message):
    topic: Literal["status"] = "status"
    state: Literal["starting", "running", "degraded", "stopping"]
    uptime_s: float
    eeg: StreamStatus | None
    markers: StreamStatus | None
    buffer_lag_ms: float | None = Field(description="LSL now - newest buffered sample time, ms")
    pending_epochs: int
    provider: str
    model: ModelInfo
    counts: Counts
    accuracy: float | None = Field(description="running accuracy over labelled markers, 0..1")
    chance: float | None = Field(description="1 / number of classes")
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    valence_latency_p50_ms: float | None = None
    valence_latency_p99_ms: float | None = None
    timing_p50_ms: dict[str, float] = Field(
        default_factory=dict, description="p50 of each Timing part (preprocess, queue, inference, publish), ms"
    )
    timing_p99_ms: dict[str, float] = Field(default_factory=dict, description="p99 of each Timing part, ms")
    cpu_percent: float | None = Field(None, description="CPU time the daemon used per second of wall time, %")
    queued: int = Field(0, description="items waiting for the inference loop")
    events: str | None = Field(None, description="the regex markers must match, and where it came from")
    labels: str | None = Field(
        None, description="the rule giving a marker its true class (regex or map; for accuracy), and where it came from"
    )
    insecure: bool = Field(False, description="publishing on a non-loopback endpoint without CURVE (--insecure)")
    warnings: list[str] = Field(default_factory=list, description="problems the operator should know about, once each")
    class_table: ClassTable | None = Field(None, description="an embedding model's zero-shot class table; else null")


AnyMessage = Prediction | Drop | Valence | Status
_BY_TOPIC: dict[str, type[Message]] = {"prediction": Prediction, "drop": Drop, "valence": Valence, "status": Status}


class ProtocolError(BciStreamError):
    """A frame on the wire does not follow the protocol."""


MessageError = ProtocolError  # the name the issue uses; one class


class SchemaVersionError(ProtocolError):
    """A payload declares a newer wire-format version than this client reads."""


def encode(message: Message) -> list[bytes]:
    """The two ZeroMQ frames of ``message``: topic and JSON payload."""
    topic = message.topic
    return [topic.encode(), message.model_dump_json().encode()]


def decode_payload(topic: str, payload: bytes | str) -> AnyMessage:
    """Parse one JSON payload of ``topic`` into a typed message, ignoring unknown fields.

    Raises
    ------
    ProtocolError
        On an unknown topic, a payload that is not a JSON object or does not validate.
    SchemaVersionError
        If the payload's ``schema`` is newer than :data:`SCHEMA_VERSION`.
    """
    cls = _BY_TOPIC.get(topic)
    if cls is None:
        raise ProtocolError(f"unknown topic {topic[:80]!r}; known: {', '.join(TOPICS)}")
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # ValueError covers JSONDecodeError and bad UTF-8
        raise ProtocolError(f"bad {topic!r} payload: not JSON ({str(exc)[:200]})") from exc
    if not isinstance(data, dict):
        raise ProtocolError(f"bad {topic!r} payload: expected a JSON object, got {type(data).__name__}")
    version = data.get("schema", SCHEMA_VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{topic!r} message has wire schema {version}, newer than the {SCHEMA_VERSION} this client reads; "
            "upgrade bci-stream on the client (or pin the daemon to a matching version)"
        )
    try:
        return cls.model_validate(data, context=_LENIENT)  # type: ignore[return-value]
    except (ValidationError, RecursionError) as exc:
        raise ProtocolError(f"bad {topic!r} payload: {str(exc)[:500]}") from exc


def decode(frames: list[bytes]) -> AnyMessage:
    """Parse two frames into a typed message (see :func:`decode_payload`).

    Raises
    ------
    ProtocolError
        On a wrong frame count, unknown topic or a payload that does not validate.
    """
    if len(frames) != 2:
        raise ProtocolError(f"expected 2 frames (topic, JSON), got {len(frames)}")
    return decode_payload(frames[0].decode(errors="replace"), frames[1])


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each topic's payload, as clients should read it (unknown fields allowed)."""
    out = {}
    for topic, cls in _BY_TOPIC.items():
        schema = _open(cls.model_json_schema(by_alias=True, mode="serialization"))
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"{topic}.schema.json"
        schema["description"] = (
            f"bci-stream ZeroMQ payload of topic {topic!r}, wire schema {SCHEMA_VERSION}. Frame 1 is the topic, "
            "frame 2 this JSON object (UTF-8). Clients must ignore properties they do not know (later daemons "
            f"add some) and refuse a 'schema' above {SCHEMA_VERSION}."
        )
        out[topic] = schema
    return out


def _open(node: Any) -> Any:
    """Drop ``additionalProperties: false`` everywhere: the contract lets daemons add fields."""
    if isinstance(node, dict):
        return {k: _open(v) for k, v in node.items() if not (k == "additionalProperties" and v is False)}
    if isinstance(node, list):
        return [_open(v) for v in node]
    return node


SCHEMA_DIR = Path(__file__).with_name("schemas")


def write_json_schemas(out: Path = SCHEMA_DIR) -> list[Path]:
    """Write ``TOPIC.schema.json`` for every topic into ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for topic, schema in json_schemas().items():
        path = out / f"{topic}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        paths.append(path)
    return paths
