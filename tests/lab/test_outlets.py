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
from bci_stream.recordings import crop_recording, read_recording, read_xdf_streams
from bci_stream.replay import Player, replay_main
from bci_stream.xdf_writer import XdfRecorder
from tests.lab.test_xdf_replay import SHARED
from tests.lab.xdf_sessions import open_inlet, pull_n
from tests.support import collect, daemon_config, make_linear_model, make_valence_model, running_daemon, unique

pytestmark = pytest.mark.e2e

N170 = SHARED / "data/n170/sub-01_ses-01_run-01_eeg.fif"
N170_CHANNELS = ["TP9", "AF7", "AF8", "TP10"]


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
    xdf: dict[str, Path]  # recorder → file
    names: dict[str, str] = field(default_factory=dict)
    player_marker_times: list[float] = field(default_factory=list)
    n_eeg: int = 0


def _labrecorder(path: Path, streams: list[pylsl.StreamInfo]) -> Any:
    """LabRecorder's own recorder (PyPI ``labrecorder``), or None where it is not installed."""
    try:
        import labrecorder
    except ImportError:
        return None
    return labrecorder.Recording(str(path), streams)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """8 s of the shared N170 recording replayed into a daemon with LSL result outlets, recorded to XDF."""
    tmp = tmp_path_factory.mktemp("outlets")
    model_name = unique("n170")
    clf = make_linear_model(
        tmp / "clf.onnx", channels=N170_CHANNELS, sfreq=256.0, n_times=64, classes=["face", "house"], name=model_name
    )
    val = make_valence_model(tmp / "val.onnx", channels=N170_CHANNELS, context=4, name=f"{model_name}-v")
    rec = crop_recording(read_recording(N170), 30.0, 8.0)
    answered = [m for m in rec.markers if m.value.startswith("stim/")]
    name = unique("n170-eeg")
    config = daemon_config(
        clf,
        name,
        f"{name}-markers",
        model={"valence": str(val)},
        publish={"lsl": True},
        markers={"label": "stim/(?P<label>[^/]+)$"},
    )
    endpoint = config.publish.endpoint
    with Subscriber(endpoint, ["prediction", "drop", "valence", "status"], timeout=2.0) as sub, running_daemon(config):
        sub.wait_for("status", timeout=15)
        pred_info = resolve(result_source_id(model_name, endpoint, "predictions"))
        val_info = resolve(result_source_id(f"{model_name}-v", endpoint, "valence"))
        pred_inlet = pylsl.StreamInlet(pred_info)
        val_inlet = pylsl.StreamInlet(val_info)
        pred_inlet.open_stream(5)
        val_inlet.open_stream(5)
        player = Player(rec, name=name, source_id=name, speed=2.0, wait_consumers=10)
        player.start()  # outlets first, so that the recorders are there before the first sample
        streams = [resolve(name), resolve(f"{name}-markers"), pred_info, val_info]
        recorder = XdfRecorder(tmp / "own.xdf", streams).start()
        lab = _labrecorder(tmp / "labrecorder.xdf", streams)
        # the recorders alone would satisfy wait_consumers: play once the daemon has its inlets too
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
            player_times = [player.t0 + m.time for m in answered]
            recorder.wait_for(
                lambda c: c.get(pred_info.name(), 0) >= len(answered) and c.get(name, 0) >= rec.n_samples, timeout=10
            )
            recorder.stop()
            if lab is not None:
                lab.stop()
                del lab  # LabRecorder closes the file when the recording object goes
        full_val_info = val_inlet.info(5)
        pred_inlet.close_stream()
        val_inlet.close_stream()
    files = {"bci_stream.xdf_writer": tmp / "own.xdf"}
    if (tmp / "labrecorder.xdf").exists():
        files["LabRecorder"] = tmp / "labrecorder.xdf"
    return Session(
        zmq=got,
        predictions=predictions,
        valence=valence,
        valence_info=full_val_info,
        xdf=files,
        names={"eeg": name, "markers": f"{name}-markers", "predictions": pred_info.name(), "valence": val_info.name()},
        player_marker_times=player_times,
        n_eeg=rec.n_samples,
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
    player = np.array(session.player_marker_times)
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


@pytest.mark.parametrize("recorder", ["bci_stream.xdf_writer", "LabRecorder"])
def test_recorded_xdf_puts_predictions_on_their_markers(session: Session, recorder: str) -> None:
    if recorder not in session.xdf:
        pytest.skip("LabRecorder (PyPI package labrecorder, in the dev extra) is not installed")
    streams, _ = pyxdf.load_xdf(str(session.xdf[recorder]))
    by_name = {s["info"]["name"][0]: s for s in streams}
    assert set(by_name) == set(session.names.values())
    markers = by_name[session.names["markers"]]
    preds = by_name[session.names["predictions"]]
    eeg = by_name[session.names["eeg"]]
    assert preds["info"]["type"] == ["Predictions"]
    assert by_name[session.names["valence"]]["info"]["type"] == ["Valence"]
    stimuli = [
        (str(v[0]), float(t))
        for v, t in zip(markers["time_series"], markers["time_stamps"], strict=True)
        if str(v[0]).startswith("stim/")
    ]
    answered = [json.loads(v[0]) for v in preds["time_series"]]
    assert len(answered) == len(stimuli) > 4
    # every prediction sits on the stimulus it answers, in the file's common (clock-corrected) time
    for payload, stamp, (value, marker_stamp) in zip(answered, preds["time_stamps"], stimuli, strict=True):
        assert payload["marker"]["value"] == value
        assert stamp == pytest.approx(marker_stamp, abs=1e-3)
    # and the EEG around it is there: the markers fall inside the recorded EEG, every sample recorded
    assert eeg["time_stamps"][0] <= min(preds["time_stamps"]) <= max(preds["time_stamps"]) <= eeg["time_stamps"][-1]
    assert len(eeg["time_stamps"]) == session.n_eeg


def test_recorded_session_replays_with_every_stream_and_the_same_alignment(session: Session) -> None:
    """The issue's check: a file recorded from a replay of shared data, replayed in turn, comes back whole."""
    path = session.xdf.get("LabRecorder", session.xdf["bci_stream.xdf_writer"])
    original = {s.name: s for s in read_xdf_streams(path)}
    stop = threading.Event()
    thread = threading.Thread(
        target=replay_main, args=(path,), kwargs={"stop_event": stop, "speed": 4.0, "wait_consumers": 15}
    )
    thread.start()
    try:
        inlets = {name: open_inlet(name) for name in original}
        back = {name: pull_n(inlet, original[name].n_samples) for name, inlet in inlets.items()}
        infos = {name: inlet.info(5) for name, inlet in inlets.items()}
        for inlet in inlets.values():
            inlet.close_stream()
    finally:
        stop.set()
        thread.join(10)
    for name, stream in original.items():
        assert infos[name].type() == stream.type
        assert len(back[name][1]) == stream.n_samples
        if stream.channel_format == "string":
            assert [s[0] for s in back[name][0]] == [s[0] for s in stream.time_series]
    # markers and predictions line up with the EEG as in the file
    eeg = session.names["eeg"]
    shift = back[eeg][1][0] - original[eeg].time_stamps[0]
    for key in ("markers", "predictions"):
        name = session.names[key]
        assert np.allclose(back[name][1] - shift, original[name].time_stamps, atol=1e-6)


def test_a_failing_sink_is_logged_and_the_zeromq_stream_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    from bci_stream.demo import free_tcp_endpoint
    from bci_stream.messages import MarkerInfo
    from bci_stream.publish import Publisher

    def broken(message: AnyMessage) -> None:
        raise RuntimeError("outlet gone")

    seen: list[AnyMessage] = []
    endpoint = free_tcp_endpoint()
    publisher = Publisher(endpoint, "s")
    publisher.sinks += [broken, seen.append]
    try:
        with Subscriber(endpoint, ["drop"], timeout=2.0) as sub:
            deadline = time.monotonic() + 10
            while True:  # PUB/SUB joins asynchronously: publish until the subscriber hears one
                publisher.publish(Drop, marker=MarkerInfo(value="stim/x", time=1.0), reason="test")
                try:
                    got = sub.recv(timeout=0.2)
                    break
                except TimeoutError:
                    assert time.monotonic() < deadline, "subscriber never received a drop"
    finally:
        publisher.close()
    assert got.topic == "drop"
    assert seen and all(m.topic == "drop" for m in seen)  # the sink after the broken one still ran
    assert "result sink" in caplog.text and "outlet gone" in caplog.text
