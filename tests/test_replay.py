"""bci_stream.replay over real LSL on loopback: what a consumer of the two outlets receives.

Every stream has a unique source_id; waits are on conditions with deadlines. Inlets are closed
before the player's outlets (an inlet whose outlet vanished can block in liblsl while it recovers).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import mne
import numpy as np
import pylsl
import pytest

from bci_stream.epochs import Marker
from bci_stream.errors import ConfigError, RecordingError
from bci_stream.recordings import Recording, read_recording
from bci_stream.replay import Player, default_source_id, replay_main, stream_name_for

ROOT = Path(__file__).resolve().parents[1]
# shared/ sits beside the checkout (developers, CI) or inside it (device machine).
EEGLAB = (
    next((p for p in (ROOT.parent / "shared", ROOT / "shared") if p.is_dir()), ROOT / "shared")
    / "data/eeglab/test_raw.set"
)
EEG_FLAGS = pylsl.proc_clocksync | pylsl.proc_dejitter
MARKER_FLAGS = pylsl.proc_clocksync


def _sid() -> str:
    return f"test-replay-{uuid.uuid4().hex}"


def _recording(seconds: float = 2.0, sfreq: float = 100.0, markers: list[Marker] | None = None) -> Recording:
    """4 channels (3 EEG + 1 EOG) of distinct random values in volts."""
    n = round(seconds * sfreq)
    data = np.random.default_rng(1).standard_normal((n, 4)) * 20e-6
    if markers is None:
        markers = [Marker("start", 0.0), Marker("stim/a", 0.505), Marker("stim/b", 1.234), Marker("end", 1.995)]
    return Recording(data, sfreq, ["Fz", "Cz", "Pz", "VEOG"], ["eeg", "eeg", "eeg", "eog"], "V", markers, "<test>")


def _inlet(source_id: str, flags: int, timeout: float = 5.0) -> pylsl.StreamInlet:
    found = pylsl.resolve_byprop("source_id", source_id, 1, timeout)
    assert found, f"no LSL stream with source_id {source_id!r} within {timeout} s"
    inlet = pylsl.StreamInlet(found[0], max_buflen=30, processing_flags=flags)
    inlet.open_stream(timeout)
    return inlet


def _close_inlet(inlet: pylsl.StreamInlet) -> None:
    inlet.close_stream()


def _pull_eeg(inlet: pylsl.StreamInlet, n: int, timeout: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Pull until ``n`` samples arrived (more may come); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    chunks, stamps, total = [], [], 0
    while total < n:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"received {total} of {n} samples within {timeout} s"
        x, ts = inlet.pull_chunk(timeout=min(remaining, 0.2), max_samples=4096, min_samples=1, as_numpy=True)
        if len(ts):
            chunks.append(np.array(x))
            stamps.append(np.array(ts))
            total += len(ts)
    return np.concatenate(chunks), np.concatenate(stamps)


def _pull_markers(inlet: pylsl.StreamInlet, n: int, timeout: float = 5.0) -> list[tuple[str, float]]:
    deadline = time.monotonic() + timeout
    got: list[tuple[str, float]] = []
    while len(got) < n:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"received {len(got)} of {n} markers within {timeout} s: {got}"
        values, stamps = inlet.pull_chunk(timeout=min(remaining, 0.2), min_samples=1)
        got.extend((v[0], t) for v, t in zip(values, stamps, strict=True))
    return got


class _PlayerThread:
    """``player.run(stop)`` in a thread, timing the run and keeping its result or error."""

    def __init__(self, player: Player) -> None:
        self.player = player
        self.stop = threading.Event()
        self.finished: bool | None = None
        self.error: BaseException | None = None
        self.elapsed: float | None = None
        self.thread = threading.Thread(target=self._run, name="replay-test", daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        try:
            self.finished = self.player.run(self.stop)
        except BaseException as exc:
            self.error = exc
        self.elapsed = time.monotonic() - start

    def start(self) -> _PlayerThread:
        self.thread.start()
        return self

    def join(self, timeout: float = 5.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"player did not return within {timeout} s"
        if self.error is not None:
            raise self.error

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(5.0)


@contextmanager
def _session(player: Player) -> Iterator[ExitStack]:
    """Closes, in order: inlets registered on the stack, the run thread, then the player."""
    with ExitStack() as stack:
        stack.callback(player.close)
        yield stack


# ---------------------------------------------------------------------------------------------------------------------


def test_consumer_receives_every_sample_and_marker_in_data_time() -> None:
    rec = _recording()
    source_id = _sid()
    player = Player(rec, name="replay-test", source_id=source_id, speed=10.0)
    with _session(player) as stack:
        player.start()
        eeg = _inlet(source_id, EEG_FLAGS)
        stack.callback(_close_inlet, eeg)
        markers = _inlet(f"{source_id}-markers", MARKER_FLAGS)
        stack.callback(_close_inlet, markers)
        runner = _PlayerThread(player).start()
        stack.callback(runner.halt)

        x, ts = _pull_eeg(eeg, rec.n_samples)
        got = _pull_markers(markers, len(rec.markers))
        runner.join()

        assert runner.finished is True
        assert player.t0 is not None
        # Every sample, in microvolts (float32 on the wire).
        assert x.shape == (rec.n_samples, 4)
        np.testing.assert_allclose(x, rec.data * 1e6, rtol=1e-6, atol=1e-4)
        # Data time: t0 + i / sfreq, whatever the speed.
        np.testing.assert_allclose(np.diff(ts), 1 / rec.sfreq, atol=1e-6)
        np.testing.assert_allclose(ts, player.t0 + np.arange(rec.n_samples) / rec.sfreq, atol=5e-4)
        # Every marker, stamped t0 + onset.
        assert [v for v, _ in got] == [m.value for m in rec.markers]
        np.testing.assert_allclose([t for _, t in got], [player.t0 + m.time for m in rec.markers], atol=1e-4)

        # Metadata of both streams.
        info = eeg.info(timeout=5.0)
        assert (info.name(), info.type(), info.channel_count()) == ("replay-test", "EEG", 4)
        assert info.nominal_srate() == rec.sfreq and info.channel_format() == pylsl.cf_float32
        assert info.source_id() == source_id
        channel = info.desc().child("channels").child("channel")
        labels, types, units = [], [], []
        while not channel.empty():
            labels.append(channel.child_value("label"))
            types.append(channel.child_value("type"))
            units.append(channel.child_value("unit"))
            channel = channel.next_sibling()
        assert labels == rec.ch_names
        assert types == ["EEG", "EEG", "EEG", "EOG"]
        assert units == ["microvolts"] * 4
        acquisition = info.desc().child("acquisition")
        assert acquisition.child_value("manufacturer") == "bci-stream"
        assert acquisition.child_value("model") == "replay"
        assert acquisition.child_value("source_file") == "<test>"
        minfo = markers.info(timeout=5.0)
        assert (minfo.name(), minfo.type(), minfo.channel_count()) == ("replay-test-markers", "Markers", 1)
        assert minfo.nominal_srate() == pylsl.IRREGULAR_RATE and minfo.channel_format() == pylsl.cf_string
        assert minfo.source_id() == f"{source_id}-markers"


@pytest.mark.parametrize("speed", [4.0, 20.0])
def test_speed_paces_faster_than_real_time(speed: float) -> None:
    rec = _recording(seconds=1.0, markers=[])
    player = Player(rec, name="replay-speed", source_id=_sid(), speed=speed, chunk=5)
    with _session(player) as stack:
        player.start()
        runner = _PlayerThread(player).start()
        stack.callback(runner.halt)
        runner.join()
        assert runner.elapsed is not None
        # The last chunk is due when its last sample is: ((n - 1) / sfreq) / speed after t0; never earlier.
        due = ((rec.n_samples - 1) / rec.sfreq) / speed
        assert due - 1e-3 <= runner.elapsed < due + 0.4
        assert runner.elapsed < rec.duration / 2
        assert player.samples_pushed == rec.n_samples


def test_loop_continues_timestamps_seamlessly() -> None:
    markers = [Marker("a", 0.1), Marker("b", 0.33), Marker("after-end", 0.7)]  # the last lies outside the data
    rec = _recording(seconds=0.5, markers=markers)
    n = rec.n_samples
    source_id = _sid()
    player = Player(rec, name="replay-loop", source_id=source_id, speed=10.0, loop=True)
    with _session(player) as stack:
        player.start()
        eeg = _inlet(source_id, EEG_FLAGS)
        stack.callback(_close_inlet, eeg)
        marker_inlet = _inlet(f"{source_id}-markers", MARKER_FLAGS)
        stack.callback(_close_inlet, marker_inlet)
        runner = _PlayerThread(player).start()
        stack.callback(runner.halt)

        x, ts = _pull_eeg(eeg, 2 * n + n // 2)
        got = _pull_markers(marker_inlet, 4)
        runner.halt()
        assert runner.error is None and runner.finished is False  # a loop only ends when stopped

        assert player.t0 is not None
        np.testing.assert_allclose(np.diff(ts), 1 / rec.sfreq, atol=1e-6)  # no jump at the pass boundaries
        np.testing.assert_allclose(ts[0], player.t0, atol=5e-4)
        np.testing.assert_array_equal(x[n : 2 * n], x[:n])
        np.testing.assert_allclose(x[:n], rec.data * 1e6, rtol=1e-6, atol=1e-4)
        # Marker j of the stream is marker j % 2 of pass j // 2, stamped t0 + pass * duration + onset.
        assert len(got) >= 4
        assert [v for v, _ in got] == ["a", "b"] * (len(got) // 2) + ["a"] * (len(got) % 2)
        expected = [player.t0 + (j // 2) * rec.duration + (0.1, 0.33)[j % 2] for j in range(len(got))]
        np.testing.assert_allclose([t for _, t in got], expected, atol=1e-4)


def test_wait_consumers_holds_t0_until_both_inlets_connect() -> None:
    rec = _recording(seconds=1.0)
    source_id = _sid()
    player = Player(rec, name="replay-wait", source_id=source_id, speed=20.0, wait_consumers=10.0)
    with _session(player) as stack:
        player.start()
        runner = _PlayerThread(player).start()  # playing would start at once without wait_consumers
        stack.callback(runner.halt)
        before_inlets = pylsl.local_clock()
        eeg = _inlet(source_id, EEG_FLAGS)
        stack.callback(_close_inlet, eeg)
        markers = _inlet(f"{source_id}-markers", MARKER_FLAGS)
        stack.callback(_close_inlet, markers)

        x, _ = _pull_eeg(eeg, rec.n_samples)
        got = _pull_markers(markers, len(rec.markers))
        runner.join()

        assert player.t0 is not None and player.t0 > before_inlets
        np.testing.assert_allclose(x[: rec.n_samples], rec.data * 1e6, rtol=1e-6, atol=1e-4)  # from sample 0
        assert [v for v, _ in got] == [m.value for m in rec.markers]


def test_wait_consumers_times_out_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    rec = _recording(seconds=0.1, markers=[])
    player = Player(rec, name="replay-nobody", source_id=_sid(), speed=10.0, wait_consumers=0.2)
    with _session(player) as stack, caplog.at_level(logging.WARNING, logger="bci_stream.replay"):
        player.start()
        runner = _PlayerThread(player).start()
        stack.callback(runner.halt)
        runner.join()
        assert runner.finished is True
        assert runner.elapsed is not None and runner.elapsed >= 0.2
    # names every outlet without a consumer, not only the first
    assert "no consumer connected to 'replay-nobody' or 'replay-nobody-markers' within 0.2 s" in caplog.text


def test_stop_ends_run_early() -> None:
    rec = _recording(seconds=30.0, markers=[])
    player = Player(rec, name="replay-stop", source_id=_sid(), speed=1.0)
    with _session(player) as stack:
        player.start()
        runner = _PlayerThread(player).start()
        stack.callback(runner.halt)
        deadline = time.monotonic() + 5.0
        while player.samples_pushed == 0:  # wait until it is really playing
            assert time.monotonic() < deadline, "player pushed nothing within 5 s"
            runner.thread.join(0.01)
        runner.stop.set()
        runner.join(2.0)
        assert runner.finished is False
        assert 0 < player.samples_pushed < rec.n_samples


def test_replay_main_plays_a_fif_file(tmp_path: Path) -> None:
    info = mne.create_info(["C3", "C4", "STI"], 200.0, ["eeg", "eeg", "stim"])
    data = np.random.default_rng(5).standard_normal((3, 200)) * 10e-6
    data[2] = 0
    raw = mne.io.RawArray(data, info, verbose="error")
    raw.set_annotations(mne.Annotations([0.25, 0.5], [0.0, 0.0], ["left", "right"]))
    path = tmp_path / "session_raw.fif"
    raw.save(path, verbose="error")
    source_id = _sid()
    stop = threading.Event()
    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["rc"] = replay_main(
                path, source_id=source_id, speed=10.0, wait_consumers=10.0, chunk=7, stop_event=stop
            )
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    with ExitStack() as stack:
        stack.callback(thread.join, 5.0)
        stack.callback(stop.set)
        eeg = _inlet(source_id, EEG_FLAGS)
        stack.callback(_close_inlet, eeg)
        markers = _inlet(f"{source_id}-markers", MARKER_FLAGS)
        stack.callback(_close_inlet, markers)

        x, _ = _pull_eeg(eeg, 200)
        got = _pull_markers(markers, 2)
        assert eeg.info(timeout=5.0).name() == "session_raw"  # default name: the file name without extension

    assert "error" not in result, result.get("error")
    assert result["rc"] == 0
    np.testing.assert_allclose(x[:200], data[:2].T * 1e6, rtol=1e-6, atol=1e-4)  # stim channel left out
    assert [v for v, _ in got] == ["left", "right"]


# ---------------------------------------------------------------------------------------------------------------------
# arguments and defaults (no LSL needed)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"speed": 0}, r"speed=0 is invalid: .*> 0"),
        ({"speed": -2.0}, r"speed=-2.0 is invalid"),
        ({"speed": float("nan")}, r"speed=nan is invalid"),
        ({"chunk": 0}, r"chunk=0 is invalid: .*>= 1"),
        ({"chunk": 2.5}, r"chunk=2.5 is invalid"),
        ({"wait_consumers": -1}, r"wait_consumers=-1 is invalid: .*>= 0"),
        ({"name": ""}, r"name='' is invalid"),
    ],
)
def test_invalid_arguments_name_argument_value_and_rule(kwargs: dict, match: str) -> None:
    arguments = {"name": "x", **kwargs}
    with pytest.raises(ValueError, match=match):
        Player(_recording(seconds=0.1), **arguments)


def test_recording_that_cannot_be_played_is_refused() -> None:
    rec = _recording(seconds=0.1)
    not_voltage = Recording(rec.data, rec.sfreq, rec.ch_names, rec.ch_types, units="degC", source="temp.fif")
    with pytest.raises(RecordingError, match=r"'temp\.fif' is in 'degC', not a voltage unit"):
        Player(not_voltage, name="x")
    empty = Recording(np.zeros((0, 4)), rec.sfreq, rec.ch_names, rec.ch_types, source="empty.fif")
    with pytest.raises(RecordingError, match=r"'empty\.fif' has data of shape \(0, 4\)"):
        Player(empty, name="x")


def test_replay_main_turns_bad_options_into_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "one_raw.fif"
    mne.io.RawArray(np.zeros((1, 10)), mne.create_info(["C3"], 100.0, ["eeg"]), verbose="error").save(path)
    with pytest.raises(ConfigError, match=r"one_raw\.fif.*speed=0 is invalid"):
        replay_main(path, speed=0)
    with pytest.raises(RecordingError, match=r"missing\.fif.*does not exist"):
        replay_main(tmp_path / "missing.fif")


def test_defaults() -> None:
    assert Player(_recording(sfreq=100.0), name="x").chunk == 2  # about 20 ms
    assert Player(_recording(seconds=0.5, sfreq=1000.0), name="x").chunk == 20
    assert Player(_recording(seconds=1.0, sfreq=10.0), name="x").chunk == 1  # at least one sample
    player = Player(_recording(), name="x")
    assert player.source_id == default_source_id("<test>", "x")
    assert default_source_id("a.fif", "x") == default_source_id("a.fif", "x")
    assert default_source_id("a.fif", "x") != default_source_id("a.fif", "y")
    assert default_source_id("a.fif", "x") != default_source_id("b.fif", "x")
    assert stream_name_for("/data/sub-01_raw.fif.gz") == "sub-01_raw"
    assert stream_name_for("session.XDF") == "session"


def test_recording_in_microvolts_is_sent_unchanged() -> None:
    rec = _recording(seconds=0.2, markers=[])
    in_uv = Recording(rec.data * 1e6, rec.sfreq, rec.ch_names, rec.ch_types, units="uV", source="<uv>")
    source_id = _sid()
    player = Player(in_uv, name="replay-uv", source_id=source_id, speed=10.0)
    with _session(player) as stack:
        player.start()
        eeg = _inlet(source_id, EEG_FLAGS)
        stack.callback(_close_inlet, eeg)
        runner = _PlayerThread(player).start()
        stack.callback(runner.halt)
        x, _ = _pull_eeg(eeg, in_uv.n_samples)
        runner.join()
        np.testing.assert_allclose(x, in_uv.data, rtol=1e-6, atol=1e-4)


def test_shared_eeglab_file_replays_its_markers() -> None:
    """A real recording: the first 3 s of the EEGLAB file, with position-refined markers."""
    full = read_recording(EEGLAB, event_fields=["position"])
    n = round(3.0 * full.sfreq)
    rec = Recording(
        full.data[:n], full.sfreq, full.ch_names, full.ch_types, full.units,
        [m for m in full.markers if m.time < 3.0], full.source,
    )  # fmt: skip
    source_id = _sid()
    player = Player(rec, name="replay-eeglab", source_id=source_id, speed=30.0, wait_consumers=10.0)
    with _session(player) as stack:
        player.start()
        eeg = _inlet(source_id, EEG_FLAGS)
        stack.callback(_close_inlet, eeg)
        markers = _inlet(f"{source_id}-markers", MARKER_FLAGS)
        stack.callback(_close_inlet, markers)
        runner = _PlayerThread(player).start()
        stack.callback(runner.halt)
        x, _ = _pull_eeg(eeg, n)
        got = _pull_markers(markers, len(rec.markers))
        runner.join()
        assert player.t0 is not None
        np.testing.assert_allclose(x[:n], rec.data * 1e6, rtol=1e-5, atol=1e-3)
        assert [v for v, _ in got] == [m.value for m in rec.markers]
        assert [v for v, _ in got][:2] == ["square/position=2", "square/position=2"]
        np.testing.assert_allclose([t for _, t in got], [player.t0 + m.time for m in rec.markers], atol=1e-4)
