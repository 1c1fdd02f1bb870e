"""``bci-stream demo``: a recording replayed as a fake amplifier, the daemon, and a listener.

Runs the replay and the daemon as their own processes (as a lab would), subscribes in this
process, prints each prediction as it arrives, and ends with exactly one summary line::

    summary: markers=N predictions=P drops=D accuracy=A latency_p50_ms=X latency_p99_ms=Y provider=Z
"""

from __future__ import annotations

import logging
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .card import card_event_fields, read_card
from .client import Subscriber, SubscriberTimeout
from .config import load_config, marker_rules
from .errors import BciStreamError, RecordingError
from .listen import ValenceScale, format_message
from .messages import Drop, Prediction, Status, Valence
from .recordings import read_recording

if TYPE_CHECKING:
    from .card import ModelCard
    from .truth import TruthRule

log = logging.getLogger(__name__)


def free_tcp_endpoint() -> str:
    """A loopback endpoint on a port that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def summary_line(predictions: list[Prediction], drops: list[Drop], markers: int, provider: str) -> str:
    """The demo's one-line result (accuracy over labelled predictions, latency = added latency)."""
    scored = [p.correct for p in predictions if p.correct is not None]
    accuracy = f"{np.mean(scored):.3f}" if scored else "n/a"
    lat = np.array([p.timing.added_latency_ms for p in predictions])
    p50, p99 = (f"{v:.2f}" for v in np.percentile(lat, [50, 99])) if len(lat) else ("n/a", "n/a")
    return (
        f"summary: markers={markers} predictions={len(predictions)} drops={len(drops)} accuracy={accuracy} "
        f"latency_p50_ms={p50} latency_p99_ms={p99} provider={provider}"
    )


def demo_event_fields(recording: Path, card: ModelCard, given: list[str] | None) -> list[str] | None:
    """The EEGLAB event fields the demo reads into ``recording``'s markers, for the replay and the offline cut alike:
    ``given`` (``--event-fields``) when set, else the card's (``input.event_fields``, or for an older card its field
    rule: :func:`~bci_stream.card.card_event_fields`) when ``recording`` is an EEGLAB ``.set`` file (other formats
    already carry their markers whole), else none."""
    if given:
        return list(given)
    fields = card_event_fields(card)
    if fields and recording.suffix.lower() == ".set":
        log.info("demo: reading EEGLAB event fields %s named by the model card", fields)
        return fields
    return None


def offline_accuracy(
    recording: Path,
    model: Path,
    events: str,
    label: str | TruthRule | None,
    *,
    event_fields: list[str] | None = None,
) -> str:
    """The model's accuracy on ``recording`` cut offline: the same pipeline, normalisation, ONNX model and scoring
    rule as the daemon, in one piece instead of live chunks (``make demo-real`` prints it beside the live one).
    ``label`` is the daemon's :class:`~bci_stream.truth.TruthRule` (a regex or a label map), or a regex.

    The samples first take the replay's round trip (float32 in microvolts on the wire, back to volts), so the two
    paths see the same numbers; "n/a" when no epoch carries a label the model knows. ``event_fields`` (EEGLAB) are
    read into the markers as the replay reads them (``bci-stream replay --event-fields``).
    """
    from .inference import OnnxModel
    from .pipeline import epochs_from_recording
    from .replay import STREAM_UNITS
    from .signal import normalize, unit_scale
    from .truth import TruthRule, class_for_label

    rec = read_recording(recording, event_fields=event_fields)
    to_wire = unit_scale(rec.units, STREAM_UNITS)
    wire = (rec.data * to_wire).astype(np.float32)
    rec.data, rec.units = wire.astype(np.float64), STREAM_UNITS
    onnx = OnnxModel(model, provider="cpu")
    card = onnx.card
    es = epochs_from_recording(rec, card.input, card.preprocessing, events=events)
    if not len(es.X) or not label:
        return "n/a"
    logits = onnx.run(normalize(es.X, card.preprocessing.normalization))
    rule = label if isinstance(label, TruthRule) else TruthRule(re.compile(label), None, label)
    scored = []
    for marker, row in zip(es.markers, logits, strict=True):
        raw = rule.raw(marker.value)
        truth = class_for_label(raw, onnx.classes) if raw is not None else None
        if truth is not None:
            scored.append(onnx.classes[int(np.argmax(row))] == truth)
    return f"{np.mean(scored):.3f}" if scored else "n/a"


def _stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_demo(
    recording: Path,
    model: Path,
    config: Path,
    *,
    speed: float = 1.0,
    timeout: float = 300.0,
    quiet: bool = False,
    valence_model: Path | None = None,
    out: Callable[[str], None] = print,
    offline: bool = False,
    event_fields: list[str] | None = None,
) -> int:
    """Replay ``recording`` through the daemon serving ``model``; returns 0 when every marker was answered.

    ``event_fields``: EEGLAB event fields read into the markers of both the replay and the offline cut (default: the
    fields the card names, for a ``.set`` file; see :func:`demo_event_fields`)."""
    say = (lambda s: None) if quiet else out
    if not recording.is_file():
        raise RecordingError(
            f"demo recording {str(recording)!r} does not exist; write one with "
            f"`bci-train synth --out {recording}` (make demo does this)"
        )
    cfg = load_config(config if config.is_file() else None)
    model_card = read_card(model)
    card = model_card.input
    fields = demo_event_fields(recording, model_card, event_fields)
    events = re.compile(marker_rules(cfg.markers, card.events, card.label)[0])
    expected = sum(1 for m in read_recording(recording, event_fields=fields).markers if events.search(m.value))
    endpoint = free_tcp_endpoint()
    name = f"bci-demo-{uuid.uuid4().hex[:8]}"
    logs = Path("build/demo-logs")
    logs.mkdir(parents=True, exist_ok=True)
    py = [sys.executable, "-m", "bci_stream.cli"]
    daemon_cmd = [*py, "run", "--model", str(model), "--eeg-name", name, "--markers-name", f"{name}-markers"]
    daemon_cmd += ["--endpoint", endpoint, "--wait", "60"] + (["--config", str(config)] if config.is_file() else [])
    if valence_model is not None:
        daemon_cmd += ["--valence-model", str(valence_model)]
    replay_cmd = [*py, "replay", str(recording), "--name", name, "--source-id", name]
    replay_cmd += ["--speed", str(speed), "--wait-consumers", "30"]
    if fields:
        replay_cmd += ["--event-fields", *fields]

    if fields:
        say(f"demo: EEGLAB event fields {' '.join(fields)} read into the markers (replay and offline alike)")
    say(f"demo: {recording} ({expected} markers) -> daemon ({model}) -> {endpoint}")
    predictions: list[Prediction] = []
    drops: list[Drop] = []
    valence: list[Valence] = []
    provider = "unknown"
    with (
        open(logs / "daemon.log", "wb") as daemon_log,
        open(logs / "replay.log", "wb") as replay_log,
        Subscriber(endpoint, timeout=1.0) as sub,
    ):
        daemon = subprocess.Popen(daemon_cmd, stdout=daemon_log, stderr=subprocess.STDOUT)
        replay: subprocess.Popen[bytes] | None = None
        try:
            deadline = time.monotonic() + 60
            while True:  # handshake: the daemon publishes status while it waits for streams
                if daemon.poll() is not None:
                    raise BciStreamError(f"the daemon exited early; see {logs / 'daemon.log'}")
                try:
                    first = sub.wait_for("status", timeout=1.0)
                    assert isinstance(first, Status)
                    provider = first.provider
                    break
                except SubscriberTimeout:
                    if time.monotonic() > deadline:
                        raise BciStreamError(f"no status from the daemon in 60 s; see {logs / 'daemon.log'}") from None
            say(f"demo: daemon up (ONNX Runtime provider {provider}); starting the replay")
            replay = subprocess.Popen(replay_cmd, stdout=replay_log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            quiet_since: float | None = None
            scale = ValenceScale.choose(None, valence_model)  # the card's training range, else auto
            next_status = time.monotonic() + 10
            while len(predictions) + len(drops) < expected and time.monotonic() < deadline:
                if daemon.poll() is not None:
                    raise BciStreamError(f"the daemon exited during the demo; see {logs / 'daemon.log'}")
                try:
                    msg = sub.recv(timeout=0.5)
                except SubscriberTimeout:
                    if replay.poll() is not None:  # replay over: give stragglers a few seconds
                        quiet_since = quiet_since or time.monotonic()
                        if time.monotonic() - quiet_since > cfg.runtime.stream_timeout + 3:
                            break
                    continue
                if isinstance(msg, Prediction):
                    predictions.append(msg)
                    say(format_message(msg))
                elif isinstance(msg, Drop):
                    drops.append(msg)
                    say(format_message(msg))
                elif isinstance(msg, Valence):
                    valence.append(msg)
                    scale.place(msg.value)  # every value widens an auto range, shown or not
                    if len(valence) % 4 == 1:  # 4 Hz on the wire; one line a second is enough to watch
                        say(format_message(msg, scale))
                elif isinstance(msg, Status):
                    provider = msg.provider
                    if time.monotonic() >= next_status:
                        say(format_message(msg))
                        next_status = time.monotonic() + 10
        finally:
            if replay is not None:
                _stop_process(replay, 5)
            _stop_process(daemon, cfg.runtime.shutdown_timeout + 3)
        # the daemon answers markers still pending at shutdown with drops; collect them
        try:
            for msg in sub.messages(timeout=0.5, until=time.monotonic() + 1.0):
                if isinstance(msg, Prediction):
                    predictions.append(msg)
                elif isinstance(msg, Drop):
                    drops.append(msg)
                    say(format_message(msg))
        except SubscriberTimeout:
            pass
    answered = len(predictions) + len(drops)
    if answered != expected:
        out(f"demo: WARNING {expected} markers but {answered} answers; see {logs}/")
    if valence:
        lat = np.percentile([v.added_latency_ms for v in valence], [50, 99])
        values = np.array([v.value for v in valence])
        out(
            f"valence: messages={len(valence)} seq_gaps={sub.gaps.get('valence', 0)} mean={values.mean():.2f} "
            f"range=[{values.min():.2f}, {values.max():.2f}] latency_p50_ms={lat[0]:.2f} latency_p99_ms={lat[1]:.2f}"
        )
    line = summary_line(predictions, drops, expected, provider)
    if offline:  # issue 11: the same model on the same recording, cut offline; it must agree with accuracy=
        from .truth import TruthRule

        rule_events = marker_rules(cfg.markers, card.events, card.label)[0]  # the daemon's own rules
        truth = TruthRule.choose(cfg.markers, card)
        line += f" offline_accuracy={offline_accuracy(recording, model, rule_events, truth, event_fields=fields)}"
    out(line)
    return 0 if answered == expected else 1
