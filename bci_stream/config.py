"""The daemon's configuration: one pydantic model, read from TOML, strict about keys and types.

Every error names the file, the key (``[section] key``), the value found and the rule broken.
Command-line overrides go through the same validation as the file, after it: an error names the
file for a value written there, the option (``--endpoint``) for a value given on the command line.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from .errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_regex(value: str | None) -> str | None:
    if value:
        try:
            re.compile(value)
        except (re.error, OverflowError, RecursionError) as exc:  # huge repeats / deep nesting are not re.error
            raise ValueError(f"{value!r} is not a valid regular expression ({exc})") from exc
    return value


class StreamSelector(_Section):
    """How to find an LSL stream: every field given must match (name, type, source_id)."""

    name: str | None = None
    type: str | None = None
    source_id: str | None = None

    def describe(self) -> str:
        parts = [
            f"{k}={v!r}" for k, v in (("name", self.name), ("type", self.type), ("source_id", self.source_id)) if v
        ]
        return ", ".join(parts) or "any stream"


class EegSection(StreamSelector):
    type: str | None = "EEG"
    units: str | None = Field(
        None, description="units of the stream when its metadata does not say (e.g. 'microvolts')"
    )
    channels: list[str] | None = Field(
        None, description="channel labels, in stream order, for a stream whose metadata declares none"
    )
    timing_tolerance: float = Field(
        0.010, gt=0, le=1.0, description="s a timestamp may stray from the fitted line before it is a discontinuity"
    )
    dejitter_halftime: float = Field(10.0, gt=0, description="half-life of the timestamp regression, s")
    rate_tolerance: float = Field(0.005, gt=0, description="relative deviation from the nominal rate that is warned")


#: Used when neither the config nor the model card names the events / the label rule.
DEFAULT_EVENTS = "^stim/"
DEFAULT_LABEL = r"stim/(?P<label>[^/]+)/"


class MarkerSection(StreamSelector):
    type: str | None = "Markers"
    events: str | None = Field(
        None, description="regex (re.search) a marker must match to get an epoch; default: the card's, else ^stim/"
    )
    label: str | None = Field(
        None,
        description="regex with a 'label' group giving the true class; default: the card's, else stim/<label>/; "
        "'' for none",
    )
    clock_offset: float = Field(0.0, description="s added to every marker time (a stimulus PC on another clock)")

    _events = field_validator("events")(_check_regex)

    @field_validator("label")
    @classmethod
    def _label_has_group(cls, value: str | None) -> str | None:
        _check_regex(value)
        if value and "label" not in re.compile(value).groupindex:
            raise ValueError(f"{value!r} has no named group '(?P<label>...)'")
        return value  # "" (no labels) stays apart from None (the card's rule)


class ModelSection(_Section):
    path: Path = Path("exported/cogninet-synth.onnx")
    valence: Path | None = Field(None, description="band-power valence model (task 'valence'); none by default")
    provider: Literal["auto", "cuda", "cpu"] = "auto"
    max_batch: int = Field(16, ge=1, le=1024)
    top_k: int = Field(5, ge=1)
    # ONNX Runtime tuning (bci_stream.inference.SessionSettings documents each; defaults measured for this job)
    intra_op_threads: int = Field(1, ge=0, description="threads inside one operator; 0 = one per core")
    inter_op_threads: int = Field(1, ge=0, description="threads across operators; 0 = ONNX Runtime's default")
    allow_spinning: bool = Field(False, description="let idle ONNX Runtime threads busy-wait between runs")
    io_binding: bool = Field(False, description="run through an ONNX Runtime IOBinding")
    cache_optimized: bool = Field(True, description="save the optimised graph and reuse it at the next start")
    cache_dir: Path | None = Field(None, description="optimised-model cache; default ~/.cache/bci-stream/onnxruntime")
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = "HEURISTIC"
    cuda_device_id: int = Field(0, ge=0)
    classes: Path | None = Field(
        None, description="class table .npz for an embedding model (zero-shot); re-read when the file changes"
    )


def marker_rules(
    markers: MarkerSection, card_events: str | None, card_label: str | None
) -> tuple[str, str | None, str]:
    """``(events, label, where events came from)``: the config's when given, else the card's, else the defaults.

    ``label`` is None when no label rule applies (an explicit ``label = ""``).
    """
    if markers.events is not None:
        events, source = markers.events, "config [markers] events"
    elif card_events:
        events, source = card_events, "the model card"
    else:
        events, source = DEFAULT_EVENTS, "the default"
    label = markers.label if markers.label is not None else (card_label or DEFAULT_LABEL)
    return events, label or None, source


class PublishSection(_Section):
    endpoint: str = "tcp://127.0.0.1:5556"
    log: Path | None = Field(None, description="also append every message to this JSON-lines file")
    status_interval: float = Field(1.0, gt=0, description="seconds between status messages")
    high_water_mark: int = Field(10_000, ge=1, description="messages queued per slow subscriber before ZeroMQ drops")
    curve_secret_key: Path | None = Field(
        None, description="daemon's server.key_secret (bci-stream keys); turns CURVE on"
    )
    curve_authorized_clients: Path | None = Field(None, description="folder of client public keys (*.key) admitted")
    insecure: bool = Field(False, description="allow a non-loopback endpoint without CURVE (warned in every status)")
    lsl: bool = Field(
        False, description="also publish predictions/drops and valence as LSL outlets (bci_stream.outlets)"
    )
    embeddings: bool = Field(
        False, description="an embedding model's predictions also carry the unit embedding vector ('embedding')"
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not re.match(r"^(tcp|ipc|inproc)://.+", value):
            raise ValueError(f"{value!r} is not a ZeroMQ endpoint like tcp://127.0.0.1:5556")
        return value


class RuntimeSection(_Section):
    wait: float = Field(30.0, ge=0, description="seconds to wait for the streams to appear")
    buffer_seconds: float = Field(30.0, gt=0, description="filtered signal kept for late markers, s")
    stream_timeout: float = Field(2.0, gt=0, description="no EEG for this long (while pulling) = stream lost, s")
    shutdown_timeout: float = Field(2.0, gt=0, description="graceful stop must finish within this, s")
    poll_interval: float = Field(
        0.05, gt=0, le=0.5, description="longest wait for EEG before markers and health are looked at, s"
    )
    future_limit: float = Field(
        5.0, gt=0, description="a window ending more than this after the newest sample is answered 'future', s"
    )
    max_queued_epochs: int = Field(256, ge=1, description="epochs waiting for inference before 'overload' drops")
    max_epoch_age: float = Field(
        2.0, gt=0, description="an epoch not inferred within this many s of its last sample is dropped 'overload'"
    )
    until_idle: float | None = Field(
        None, gt=0, description="stop (exit 0) after this many s without EEG, e.g. when a replay ends; none: run on"
    )
    no_match_warning: float = Field(
        5.0, gt=0, description="warn when markers arrive but none has matched the events for this long, s"
    )


class DaemonConfig(_Section):
    """Everything ``bci-stream run`` needs; see configs/daemon.toml for a commented example."""

    model: ModelSection = Field(default_factory=lambda: ModelSection())
    eeg: EegSection = Field(default_factory=lambda: EegSection())
    markers: MarkerSection = Field(default_factory=lambda: MarkerSection())
    publish: PublishSection = Field(default_factory=lambda: PublishSection())
    runtime: RuntimeSection = Field(default_factory=lambda: RuntimeSection())
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)  # "model.path" -> where its value came from

    def origin(self, key: str) -> str:
        """Where the value of the dotted ``key`` (``"model.path"``) came from, for messages: ``[model] path in
        FILE``, the option (``--model``), ``an override`` or ``the built-in default``."""
        return self._origins.get(key, "the built-in default")


def _describe(err: Any, example: str = "configs/daemon.toml", dotted: bool = False, what: str = "") -> str:
    """One pydantic error as ``WHERE: RULE (got VALUE)``; shared with :mod:`training.config`.

    ``dotted`` spells the key as TOML's dotted key (``train.lr``) instead of ``[train] lr`` (an unknown one as
    ``train.lr: unknown [train] key``); ``what`` names the kind of config for a top-level unknown key
    (``unknown sweep config key``).
    """
    # quote odd keys like ''
    loc = [
        str(p) if re.fullmatch(r"[\w-]+", str(p)) else repr(p)
        for p in err["loc"]
        if not str(p).startswith("function-after")
    ]
    where = f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else (f"[{loc[0]}]" if loc else "top level")
    kind = f"{what} " if what else ""
    if dotted:
        where = ".".join(loc) or "top level"
        kind = f"[{'.'.join(loc[:-1])}] " if len(loc) > 1 else kind  # a nested key: name its table
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown {kind}key (check the spelling; see {example})"
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{where}: {err['msg']}{shown}"


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``overrides``, where None in ``overrides`` means "not given"."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict):
            current = out.get(key)
            out[key] = _merge(current if isinstance(current, dict) else {}, value)
        elif value is not None:
            out[key] = value
    return out


def load_config(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    flags: dict[str, str] | None = None,
) -> DaemonConfig:
    """Read a TOML config (or defaults when ``path`` is None) and apply nested ``overrides``.

    The file is validated as written first, so its own errors are always reported (naming the file and key),
    even for a key an override replaces. Then the overrides are applied and validated; an invalid overridden
    value is blamed on its source: ``flags`` maps a dotted key (``"publish.endpoint"``) to the command-line
    option that gave it (``"--endpoint"``), else it is called an override.
    Relative paths inside the file (model, log) are taken relative to the current directory.

    Raises
    ------
    ConfigError
        Naming the file (or option) and every offending key.
    """
    source = str(path) if path is not None else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {source!r} does not exist; pass --config with a TOML file")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: not valid TOML ({exc})") from exc
        try:
            DaemonConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{source}: {'; '.join(_describe(e) for e in exc.errors())}") from exc
    overrides = overrides or {}
    given_keys = _leaves(overrides)  # dotted keys the overrides set (None: not given)
    try:
        config = DaemonConfig.model_validate(_merge(data, overrides))
    except ValidationError as exc:
        problems: list[str] = []
        for err in exc.errors():
            loc = ".".join(str(part) for part in err["loc"])
            given = next((k for k in given_keys if loc == k or loc.startswith(k + ".")), None)
            if given is None:  # not an override's value (the file passed alone): name the file
                problems.append(f"{source}: {_describe(err)}")
                continue
            flag = (flags or {}).get(given)
            where, _, rule = _describe(err).partition(": ")
            problems.append(f"{flag} (sets {where}): {rule}" if flag else f"override {where}: {rule}")
        raise ConfigError("; ".join(problems)) from exc
    for key in _leaves(data):
        config._origins[key] = f"[{key.replace('.', '] ', 1)} in {source}"
    for key in given_keys:
        config._origins[key] = (flags or {}).get(key, "an override")
    return config


def _leaves(data: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys of the values (not None) in nested ``data``."""
    keys: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            keys += _leaves(value, f"{prefix}{key}.")
        elif value is not None:
            keys.append(f"{prefix}{key}")
    return keys
