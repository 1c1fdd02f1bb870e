"""What the daemon and the replay log at the end: a stop summary only after a real start, counts readable."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pylsl
import pytest

from bci_stream.card import read_card, write_card
from bci_stream.client import Subscriber
from bci_stream.config import load_config
from bci_stream.daemon import Daemon, format_drops
from bci_stream.demo import free_tcp_endpoint
from bci_stream.errors import ModelCardError
from bci_stream.replay import replay_main
from tests.e2e.test_daemon import CHANNELS, SFREQ, small_recording
from tests.support import collect, daemon_config, make_linear_model, playing, running_daemon, unique

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHARED = next((p for p in (ROOT.parent / "shared", ROOT / "shared") if p.is_dir()), ROOT / "shared")
MINIMAL = SHARED / "data/xdf/minimal.xdf"


def _messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


def test_drops_by_reason_read_as_words() -> None:
    assert format_drops({}) == "drops: none"
    assert format_drops({"shutdown": 1, "overload": 2}) == "3 drops: overload 2, shutdown 1"
    assert format_drops({"late": 1}) == "1 drop: late 1"


def test_no_stop_summary_when_the_daemon_never_started(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = daemon_config(tmp_path / "missing.onnx", unique("eeg"), unique("markers"))
    with caplog.at_level(logging.INFO, logger="bci_stream.daemon"), pytest.raises(ModelCardError):
        Daemon(config).serve()
    assert not [m for m in _messages(caplog, "bci_stream.daemon") if m.startswith("stopped")]


def test_stop_summary_after_a_run_names_drops_readably(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = make_linear_model(tmp_path / "m.onnx", channels=CHANNELS, sfreq=SFREQ, n_times=50, classes=["a", "b"])
    rec = small_recording(seconds=4, nan_at=None)
    expected = [m for m in rec.markers if m.value.startswith("stim/")]
    name = unique("eeg")
    config = daemon_config(model, name, f"{name}-markers")
    with (
        caplog.at_level(logging.INFO, logger="bci_stream.daemon"),
        Subscriber(config.publish.endpoint, timeout=2.0) as sub,
        running_daemon(config),
    ):
        sub.wait_for("status", timeout=15)
        with playing(rec, name=name, source_id=name, speed=4.0, wait_consumers=10):
            got = collect(sub, lambda m: len(m) >= len(expected), timeout=30)
    summary = [m for m in _messages(caplog, "bci_stream.daemon") if m.startswith("stopped")]
    assert len(summary) == 1, summary
    assert summary[0].startswith(f"stopped: {len(expected)} markers, ") and "{" not in summary[0]
    n_drops = sum(1 for m in got if m.topic == "drop")
    assert summary[0].endswith("drops: none") if n_drops == 0 else f"{n_drops} drop" in summary[0]


def test_xdf_replay_end_line_lists_samples_per_stream(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="bci_stream.replay"):
        assert replay_main(MINIMAL, speed=50.0) == 0
    ended = [m for m in _messages(caplog, "bci_stream.replay") if " ended: " in m]
    assert ended and ended[-1].endswith("ended: samples pushed SendDataC 9, SendDataString 9"), ended


def test_stream_chosen_by_type_only_is_warned_naming_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No [eeg] name/source_id: the daemon says which stream it took and how to pin it (markers pinned: quiet)."""
    model = make_linear_model(tmp_path / "m.onnx", channels=CHANNELS, sfreq=SFREQ, n_times=50, classes=["a", "b"])
    eeg_type, eeg_id, marker_id = unique("EEGtype"), unique("eeg"), unique("markers")  # a type only we use
    info = pylsl.StreamInfo(unique("amp"), eeg_type, len(CHANNELS), SFREQ, pylsl.cf_float32, eeg_id)
    channels = info.desc().append_child("channels")
    for label in CHANNELS:
        channels.append_child("channel").append_child_value("label", label).append_child_value("unit", "V")
    eeg = pylsl.StreamOutlet(info)
    markers = pylsl.StreamOutlet(pylsl.StreamInfo(unique("mk"), "Markers", 1, 0, pylsl.cf_string, marker_id))
    config = load_config(
        None,
        {
            "model": {"path": str(model)},
            "eeg": {"type": eeg_type},
            "markers": {"source_id": marker_id},
            "publish": {"endpoint": free_tcp_endpoint(), "status_interval": 0.2},
            "runtime": {"wait": 15.0},
        },
    )
    with (
        caplog.at_level(logging.WARNING, logger="bci_stream.daemon"),
        Subscriber(config.publish.endpoint, timeout=2.0) as sub,
        running_daemon(config),
    ):
        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline, "no status carried the warning within 20 s"
            status = sub.wait_for("status", timeout=20)
            found = [w for w in status.warnings if w.startswith("EEG stream chosen by")]
            if found:
                break
    assert len(found) == 1 and not [w for w in status.warnings if w.startswith("marker stream chosen by")]
    message = found[0]
    assert f"type {eeg_type!r} only" in message and info.name() in message and eeg_id in message
    assert f"host {socket.gethostname()!r}" in message and "--eeg-name" in message and "[eeg] source_id" in message
    assert message in _messages(caplog, "bci_stream.daemon")
    del eeg, markers


def test_markers_that_never_match_the_label_rule_are_warned_with_the_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An EEGLAB model labels by event fields; a replay without them: no accuracy, and the daemon says why."""
    model = make_linear_model(tmp_path / "m.onnx", channels=CHANNELS, sfreq=SFREQ, n_times=50, classes=["a", "b"])
    card = read_card(model)
    rule = r"(?:^|/)position=(?P<label>[^/]+)"
    spec = card.input.model_copy(update={"events": "^stim/", "label": rule, "event_fields": ["position"]})
    write_card(model, card.model_copy(update={"input": spec}))
    rec = small_recording(seconds=6, nan_at=None)  # markers 'stim/a/a_0' ...: no position=
    name = unique("eeg")
    config = daemon_config(model, name, f"{name}-markers")
    with (
        caplog.at_level(logging.WARNING, logger="bci_stream"),
        Subscriber(config.publish.endpoint, timeout=2.0) as sub,
        running_daemon(config),
    ):
        sub.wait_for("status", timeout=15)
        with playing(rec, name=name, source_id=name, speed=4.0, wait_consumers=10):
            got = collect(
                sub,
                lambda m: any(x.topic == "status" and any("label rule" in w for w in x.warnings) for x in m),
                timeout=30,
                topics=("prediction", "status"),
            )
    predictions = [m for m in got if m.topic == "prediction"]
    assert len(predictions) >= 5 and all(p.true_label is None for p in predictions)
    warning = next(w for m in got if m.topic == "status" for w in m.warnings if "label rule" in w)
    assert "'stim/a/a_0'" in warning and repr(rule) in warning and "--event-fields position" in warning
    assert [m for m in _messages(caplog, "bci_stream.acquisition") if m == warning]
