"""Whole XDF sessions replayed: every stream as its own outlet, on the file's clock-corrected timestamps."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pylsl
import pytest
import pyxdf

from bci_stream.cli import main
from bci_stream.epochs import Marker
from bci_stream.errors import ConfigError, RecordingError
from bci_stream.recordings import Recording, crop_recording, read_xdf_streams
from bci_stream.replay import replay_main
from tests.lab.xdf_sessions import EEG_RATE, HOLE, N_EEG, open_inlet, pull_n, write_session
from tests.support import unique

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHARED = next((p for p in (ROOT.parent / "shared", ROOT / "shared") if p.is_dir()), ROOT / "shared")
MINIMAL = SHARED / "data/xdf/minimal.xdf"


@contextmanager
def replaying(path: Path, **kwargs: Any) -> Iterator[threading.Event]:
    """``replay_main(path, ...)`` in a thread; stopped on exit, its error re-raised."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            replay_main(path, stop_event=stop, **kwargs)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(10)
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("xdf") / "session.xdf"
    return path, write_session(path, unique("lab"))


def test_every_stream_comes_back_with_its_header_samples_and_timing(session: tuple[Path, dict[str, Any]]) -> None:
    path, written = session
    names = written["names"]
    loaded = {s["info"]["name"][0]: s for s in pyxdf.load_xdf(str(path))[0]}
    n_eeg = len(written["eeg_times"])
    with replaying(path, speed=4.0, wait_consumers=10):
        inlets = {key: open_inlet(name) for key, name in names.items()}
        eeg, eeg_t = pull_n(inlets["eeg"], n_eeg)
        stim, stim_t = pull_n(inlets["stim"], 6)
        resp, resp_t = pull_n(inlets["resp"], 3)
        infos = {key: inlet.info(5) for key, inlet in inlets.items()}
        for inlet in inlets.values():
            inlet.close_stream()

    # headers as recorded
    eeg_info = infos["eeg"]
    assert (eeg_info.type(), eeg_info.channel_count(), eeg_info.nominal_srate()) == ("EEG", N_EEG, EEG_RATE)
    assert eeg_info.channel_format() == pylsl.cf_float32
    channel = eeg_info.desc().child("channels").first_child()
    labels, units = [], []
    while not channel.empty():
        labels.append(channel.child_value("label"))
        units.append(channel.child_value("unit"))
        channel = channel.next_sibling()
    assert labels == written["labels"] and set(units) == {"microvolts"}
    assert all(infos[k].type() == "Markers" and infos[k].channel_format() == pylsl.cf_string for k in ("stim", "resp"))

    # samples and marker values as recorded
    assert len(eeg_t) == n_eeg
    assert np.array_equal(np.asarray(eeg, dtype=np.float32), written["eeg"])
    assert [s[0] for s in stim] == written["stim"][0]
    assert [s[0] for s in resp] == written["resp"][0]

    # the file's clock-corrected timestamps, shifted as a whole: every relative time kept
    file_eeg = loaded[names["eeg"]]["time_stamps"]
    file_stim = loaded[names["stim"]]["time_stamps"]
    shift = stim_t[0] - file_stim[0]
    assert np.allclose(eeg_t - shift, file_eeg, atol=1e-6)
    assert np.allclose(stim_t - shift, file_stim, atol=1e-6)
    assert np.allclose(resp_t - shift, loaded[names["resp"]]["time_stamps"], atol=1e-6)
    # the hole is still a hole, and markers after it sit on the same EEG sample as in the file
    assert np.max(np.diff(eeg_t)) == pytest.approx(HOLE[1] - (HOLE[0] - 1 / EEG_RATE), abs=1e-3)
    for t_replayed, t_file in zip(stim_t, file_stim, strict=True):
        assert np.searchsorted(eeg_t, t_replayed) == np.searchsorted(file_eeg, t_file)
    # clock correction applied: the EEG's clock ran EEG_CLOCK_OFFSET behind; on the recorder's clock the
    # fourth stimulus (0.25 s after the hole ends) is 0.25 s after the first sample past the hole
    first_after = eeg_t[int(HOLE[0] * EEG_RATE)]
    assert stim_t[3] - first_after == pytest.approx(0.25, abs=1e-3)


def test_streams_start_and_duration_play_a_part(session: tuple[Path, dict[str, Any]]) -> None:
    path, written = session
    names = written["names"]
    with replaying(path, streams=[names["stim"]], start=4.0, duration=1.5, wait_consumers=10):
        inlet = open_inlet(names["stim"])
        stim, _ = pull_n(inlet, 2)
        assert [s[0] for s in stim] == written["stim"][0][3:5]  # onsets 4.75 and 5.25 s: inside [4, 5.5)
        assert not pylsl.resolve_byprop("name", names["eeg"], 1, 0.5)  # not selected: not replayed
        inlet.close_stream()


def test_markers_pushed_with_no_consumer_are_counted_and_warned(
    session: tuple[Path, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    path, written = session
    stim = written["names"]["stim"]
    with caplog.at_level(logging.WARNING, logger="bci_stream.replay"):
        assert replay_main(path, streams=[stim], speed=10.0, wait_consumers=0) == 0
    assert caplog.text.count(f"markers pushed to {stim!r} with no consumer connected") == 1  # warned once
    assert f"6 of 6 markers were pushed to {stim!r} while it had no consumer" in caplog.text


def test_unknown_stream_and_options_that_do_not_apply_are_refused(session: tuple[Path, dict[str, Any]]) -> None:
    path, _ = session
    with pytest.raises(RecordingError, match=r"no stream named 'nope'.*LSL_Marker_Strings"):
        replay_main(path, streams=["nope"])
    with pytest.raises(ConfigError, match=r"--loop.*XDF session"):
        replay_main(path, loop=True)
    with pytest.raises(RecordingError, match="no sample lies in the part"):
        replay_main(path, start=100.0)


def test_minimal_reference_file_replays_both_streams() -> None:
    streams = read_xdf_streams(MINIMAL)
    with replaying(MINIMAL, wait_consumers=10, speed=2.0):
        data = open_inlet("SendDataC")
        strings = open_inlet("SendDataString")
        x, _ = pull_n(data, 9)
        s, _ = pull_n(strings, 9)
        data.close_stream()
        strings.close_stream()
    assert np.array_equal(np.asarray(x), streams[0].time_series)
    assert [v[0] for v in s] == [v[0] for v in streams[1].time_series]


def test_inspect_lists_every_stream_with_marker_counts(
    session: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, written = session
    assert main(["-q", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "3 streams" in out
    assert (
        f"{written['names']['eeg']!r}: type 'EEG', 16 channels float32, 250 Hz, {len(written['eeg_times'])} samples"
        in out
    )
    assert "channels: Ch1, Ch2" in out and "units microvolts" in out
    assert f"{written['names']['resp']!r}: type 'Markers', 1 channel string, irregular, 3 samples" in out
    assert "2  resp/left" in out and "1  resp/right" in out


def test_crop_recording_keeps_the_part_and_shifts_markers() -> None:
    rec = Recording(np.arange(1000.0)[:, None], 100.0, ["Cz"], ["eeg"], "V", [Marker("a", 1.0), Marker("b", 4.0)])
    part = crop_recording(rec, 3.5, 2.0)
    assert part.n_samples == 200 and part.data[0, 0] == 350.0
    assert [(m.value, m.time) for m in part.markers] == [("b", pytest.approx(0.5))]
    with pytest.raises(RecordingError, match="outside"):
        crop_recording(rec, 20.0)


def test_start_and_duration_play_a_part_of_a_fif_file() -> None:
    n170 = SHARED / "data/n170/sub-01_ses-01_run-01_eeg.fif"
    name = unique("n170-part")
    with replaying(n170, name=name, start=30.0, duration=1.5, speed=3.0, wait_consumers=10):
        eeg = open_inlet(name)
        markers = open_inlet(f"{name}-markers")
        _, stamps = pull_n(eeg, 384)  # 1.5 s at 256 Hz
        values, marker_stamps = pull_n(markers, 1)
        eeg.close_stream()
        markers.close_stream()
    assert np.allclose(np.diff(stamps), 1 / 256, atol=1e-6)
    assert values[0][0].startswith("stim/") and stamps[0] <= marker_stamps[0] <= stamps[-1] + 1 / 256
