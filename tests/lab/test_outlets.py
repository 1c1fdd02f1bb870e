"""Results as LSL outlets: read back with pylsl and recorded next to the EEG into an XDF file.

One live session (replay → daemon with ``[publish] lsl = true`` → ZeroMQ subscriber, pylsl inlets and an
XDF recorder) is shared by the tests of this module.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
import pytest
import pyxdf

from bci_stream.client import Subscriber
from bci_stream.messages import AnyMessage, Drop, Prediction, Valence
from bci_stream.outlets import VALENCE_UNIT, result_source_id
from bci_stream.replay import Player
from bci_stream.xdf_writer import XdfRecorder
from tests.e2e.test_daemon import CHANNELS, SFREQ, small_recording
from tests.support import collect, daemon_config, make_linear_model, make_valence_model, running_daemon, unique

pytestmark = pytest.mark.e2e


def resolve(source_id: str, timeout: float = 10.0) -> pylsl.StreamInfo:
    found = pylsl.resolve_byprop("source_id", source_id, 1, timeout)
    assert found, f"no LSL stream with source_id {source_id!r} within {timeout} s"
    return found[0]


def pull_all(inlet: pylsl.StreamInlet, n: int, timeout: float) -> tuple[list[Any], list[float]]:
    """Pull until ``n`` samples arrived; fail after ``timeout`` s."""
    samples: list[Any] = []
    stamps: list[float] = []
    deadline = time.monotonic() + timeout
    while len(stamps) < n:
        assert time.monotonic() < deadline, f"got {len(stamps)} of {n} samples within {timeout} s"
        x, ts = inlet.pull_chunk(timeout=0.2, max_samples=1024)
        samples += x
        stamps += ts
    return samples, stamps


@contextmanager
def playing_player(player: Player) -> Iterator[Player]:
    """Run an already started :class:`Player` in a thread for the ``with`` body."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            player.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="replay", daemon=True)
    thread.start()
    try:
        yield player
    finally:
        stop.set()
        thread.join(10)
        player.close()
    if errors:
        raise errors[0]


@dataclass
class Session:
    zmq: list[AnyMessage]
    predictions: tuple[list[Any], list[float]]
    valence: tuple[list[Any], list[float]]
    valence_info: pylsl.StreamInfo
    xdf: Path
    names: dict[str, str] = field(default_factory=dict)
    player_marker_times: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    tmp = tmp_path_factory.mktemp("outlets")
    clf = make_linear_model(tmp / "clf.onnx", channels=CHANNELS, sfreq=SFREQ, n_times=100, classes=["a", "b", "c"])
    val = make_valence_model(tmp / "val.onnx", channels=CHANNELS[:6], context=4)
    rec = small_recording(seconds=6.0, nan_at=None)
    answered = [m for m in rec.markers if m.value.startswith("stim/")]
    name = unique("eeg")
    config = daemon_config(clf, name, f"{name}-markers", model={"valence": str(val)}, publish={"lsl": True})
    endpoint = config.publish.endpoint
    with Subscriber(endpoint, ["prediction", "drop", "valence", "status"], timeout=2.0) as sub, running_daemon(config):
        sub.wait_for("status", timeout=15)
        pred_info = resolve(result_source_id("linear-test", endpoint, "predictions"))
        val_info = resolve(result_source_id("valence-test", endpoint, "valence"))
        pred_inlet = pylsl.StreamInlet(pred_info)
        val_inlet = pylsl.StreamInlet(val_info)
        pred_inlet.open_stream(5)
        val_inlet.open_stream(5)
        player = Player(rec, name=name, source_id=name, speed=2.0, wait_consumers=10)
        player.start()  # outlets first, so that the recorder is there before the first sample
        recorder = XdfRecorder(tmp / "session.xdf", [resolve(name), resolve(f"{name}-markers"), pred_info, val_info])
        recorder.start()
        # the recorder alone would satisfy wait_consumers: play once the daemon has its inlets too
        deadline = time.monotonic() + 15
        while (status := sub.wait_for("status", timeout=5)).state != "running":  # type: ignore[union-attr]
            assert time.monotonic() < deadline, f"daemon not running within 15 s: {status}"
        with playing_player(player):
            got = collect(
                sub,
                lambda m: sum(isinstance(x, Prediction | Drop) for x in m) >= len(answered),
                timeout=30,
                topics=("prediction", "drop", "valence"),
            )
            predictions = pull_all(pred_inlet, len(answered), timeout=10)
            n_valence = sum(isinstance(x, Valence) for x in got)
            valence = pull_all(val_inlet, n_valence, timeout=10)
            assert player.t0 is not None
            player_times = {m.value: player.t0 + m.time for m in rec.markers}
            recorder.wait_for(lambda counts: counts.get(pred_info.name(), 0) >= len(answered), timeout=10)
            recorder.stop()
        full_val_info = val_inlet.info(5)
        pred_inlet.close_stream()
        val_inlet.close_stream()
    return Session(
        zmq=got,
        predictions=predictions,
        valence=valence,
        valence_info=full_val_info,
        xdf=tmp / "session.xdf",
        names={"eeg": name, "markers": f"{name}-markers", "predictions": pred_info.name(), "valence": val_info.name()},
        player_marker_times=player_times,
    )


def test_one_predictions_sample_per_answered_marker_stamped_at_the_marker(session: Session) -> None:
    answers = [m for m in session.zmq if isinstance(m, Prediction | Drop)]
    samples, stamps = session.predictions
    assert len(stamps) == len(answers)  # one sample per answered marker, none extra
    payloads = [json.loads(s[0]) for s in samples]
    assert [p["marker"]["value"] for p in payloads] == [a.marker.value for a in answers]
    assert [p["topic"] for p in payloads] == [a.topic for a in answers]
    # stamped at the marker's LSL time, exactly as the daemon saw it
    assert stamps == [a.marker.time for a in answers]
    # ... which is the time the replay stamped the marker with (plus LSL's loopback clock offset, ~µs)
    player = np.array([session.player_marker_times[a.marker.value] for a in answers])
    assert np.max(np.abs(np.array(stamps) - player)) < 1e-3


def test_valence_stream_at_the_hop_rate_stamped_at_the_window_end(session: Session) -> None:
    values = [m for m in session.zmq if isinstance(m, Valence)]
    samples, stamps = session.valence
    assert len(values) > 4
    assert stamps[: len(values)] == [v.window_end for v in values]
    assert np.allclose([s[0] for s in samples[: len(values)]], [v.value for v in values], atol=1e-6)  # float32
    info = session.valence_info
    assert (info.type(), info.channel_format(), info.nominal_srate()) == ("Valence", pylsl.cf_float32, 4.0)
    channel = info.desc().child("channels").child("channel")
    assert channel.child_value("label") == "valence"
    assert channel.child_value("unit") == VALENCE_UNIT


def test_recorded_xdf_puts_predictions_on_their_markers(session: Session) -> None:
    streams, _ = pyxdf.load_xdf(str(session.xdf))
    by_name = {s["info"]["name"][0]: s for s in streams}
    assert set(by_name) == set(session.names.values())
    markers = by_name[session.names["markers"]]
    preds = by_name[session.names["predictions"]]
    eeg = by_name[session.names["eeg"]]
    assert preds["info"]["type"] == ["Predictions"]
    marker_time = {str(v[0]): float(t) for v, t in zip(markers["time_series"], markers["time_stamps"], strict=True)}
    answered = [json.loads(v[0]) for v in preds["time_series"]]
    assert len(answered) == sum(1 for v in marker_time if v.startswith("stim/"))
    # every prediction sits on the stimulus it answers, in the file's common (clock-corrected) time
    for payload, stamp in zip(answered, preds["time_stamps"], strict=True):
        assert stamp == pytest.approx(marker_time[payload["marker"]["value"]], abs=1e-3)
    # and the EEG around it is there: the marker falls inside the recorded EEG
    assert eeg["time_stamps"][0] <= min(preds["time_stamps"]) <= max(preds["time_stamps"]) <= eeg["time_stamps"][-1]
    assert len(eeg["time_stamps"]) == 6 * int(SFREQ)
