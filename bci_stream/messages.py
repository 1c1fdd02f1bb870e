"""Schemas of everything on the wire (ZeroMQ), as pydantic models.

Each message is two frames: the topic (``prediction``, ``drop``, ``valence``, ``status``) and the
JSON payload below. Every payload carries ``seq`` (per topic, +1 per message, so a client detects
loss), ``session`` (the daemon run id) and ``sent_at`` (unix seconds). Times called ``time``,
``start`` and ``end`` are on the LSL clock (seconds, :func:`pylsl.local_clock`).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import BciStreamError

TOPICS = ("prediction", "drop", "valence", "status")


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


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
    warnings: list[str] = Field(default_factory=list, description="problems noticed this session, once each")


AnyMessage = Prediction | Drop | Valence | Status
_BY_TOPIC: dict[str, type[Message]] = {"prediction": Prediction, "drop": Drop, "valence": Valence, "status": Status}


class ProtocolError(BciStreamError):
    """A frame on the wire does not follow the protocol."""


def encode(message: Message) -> list[bytes]:
    """The two ZeroMQ frames of ``message``: topic and JSON payload."""
    topic = message.topic
    return [topic.encode(), message.model_dump_json().encode()]


def decode(frames: list[bytes]) -> AnyMessage:
    """Parse two frames into a typed message.

    Raises
    ------
    ProtocolError
        On a wrong frame count, unknown topic or a payload that does not validate.
    """
    if len(frames) != 2:
        raise ProtocolError(f"expected 2 frames (topic, JSON), got {len(frames)}")
    topic = frames[0].decode(errors="replace")
    cls = _BY_TOPIC.get(topic)
    if cls is None:
        raise ProtocolError(f"unknown topic {topic!r}; known: {', '.join(TOPICS)}")
    try:
        return cls.model_validate(json.loads(frames[1]))  # type: ignore[return-value]
    except (ValidationError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"bad {topic!r} payload: {exc}") from exc
