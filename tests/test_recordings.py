"""Readers of bci_stream.recordings on real files (shared/data) and on files written here by MNE or by hand."""

from __future__ import annotations

import logging
import struct
from collections import Counter
from pathlib import Path

import mne
import numpy as np
import pytest

from bci_stream.cli import main
from bci_stream.errors import RecordingError
from bci_stream.recordings import SUPPORTED_EXTENSIONS, read_recording

ROOT = Path(__file__).resolve().parents[1]
# shared/ sits beside the checkout (developers, CI) or inside it (device machine).
DATA = next(
    (p for p in (ROOT.parent / "shared" / "data", ROOT / "shared" / "data") if p.is_dir()), ROOT / "shared" / "data"
)
EEGLAB = DATA / "eeglab" / "test_raw.set"
MINIMAL_XDF = DATA / "xdf" / "minimal.xdf"


def _raw(*, first_samp: int = 0, with_stim: bool = False, seed: int = 0) -> mne.io.RawArray:
    """3 EEG + 1 EOG channel at 250 Hz for 2 s, optionally with a stim channel carrying 2 events."""
    names, types = ["Fz", "Cz", "Pz", "EOG1"], ["eeg", "eeg", "eeg", "eog"]
    data = np.random.default_rng(seed).standard_normal((4, 500)) * 2e-5
    if with_stim:
        stim = np.zeros((1, 500))
        stim[0, 100:103] = 5
        stim[0, 300:302] = 7
        names, types, data = [*names, "STI 014"], [*types, "stim"], np.vstack([data, stim])
    info = mne.create_info(names, 250.0, types)
    return mne.io.RawArray(data, info, first_samp=first_samp, verbose="error")


# ---------------------------------------------------------------------------------------------------------------------
# MNE formats


@pytest.mark.parametrize("filename", ["rec_raw.fif", "rec_raw.fif.gz"])
@pytest.mark.parametrize("first_samp", [0, 1000])
def test_fif_round_trip(tmp_path: Path, filename: str, first_samp: int) -> None:
    raw = _raw(first_samp=first_samp, with_stim=True)
    raw.set_meas_date(1_700_000_000)
    # Onsets relative to the first sample (orig_time=None); MNE stores them from the measurement start.
    raw.set_annotations(mne.Annotations([0.5, 1.0, 1.996], [0.0, 0.2, 0.0], ["stim/a", "BAD_blink", "stim/b"]))
    path = tmp_path / filename
    raw.save(path, verbose="error")

    rec = read_recording(path)

    assert rec.sfreq == 250.0
    assert rec.ch_names == ["Fz", "Cz", "Pz", "EOG1"]  # stim channel left out
    assert rec.ch_types == ["eeg", "eeg", "eeg", "eog"]
    assert rec.units == "V"
    assert rec.source == str(path)
    assert rec.data.dtype == np.float64 and rec.data.shape == (500, 4)
    np.testing.assert_allclose(rec.data, raw.get_data(picks=[0, 1, 2, 3]).T, rtol=1e-6, atol=1e-12)
    # Annotations win over the stim channel, and every annotation (BAD_ too) is kept.
    assert [m.value for m in rec.markers] == ["stim/a", "BAD_blink", "stim/b"]
    np.testing.assert_allclose([m.time for m in rec.markers], [0.5, 1.0, 1.996], atol=1e-6)


@pytest.mark.parametrize("first_samp", [0, 1000])
def test_fif_stim_channel_gives_markers_without_annotations(tmp_path: Path, first_samp: int) -> None:
    path = tmp_path / "stim_raw.fif"
    _raw(first_samp=first_samp, with_stim=True).save(path, verbose="error")

    rec = read_recording(path)

    assert "STI 014" not in rec.ch_names
    assert [m.value for m in rec.markers] == ["5", "7"]
    np.testing.assert_allclose([m.time for m in rec.markers], [100 / 250, 300 / 250])


def test_edf_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("edfio")
    raw = _raw()
    raw.set_annotations(mne.Annotations([0.5, 1.25], [0.0, 0.0], ["left", "right"]))
    path = tmp_path / "rec.edf"
    mne.export.export_raw(path, raw, verbose="error")

    rec = read_recording(path)

    assert rec.ch_names == ["Fz", "Cz", "Pz", "EOG1"]
    assert rec.sfreq == 250.0
    # EDF stores 16-bit integers: equal within a quantisation step of the exported range.
    step = np.ptp(raw.get_data()) / 2**15
    np.testing.assert_allclose(rec.data, raw.get_data().T, atol=step)
    assert [(m.value, m.time) for m in rec.markers] == [("left", 0.5), ("right", 1.25)]


def test_brainvision_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("pybv")
    raw = _raw()
    raw.set_annotations(
        mne.Annotations([0.5, 1.2], [0.0, 0.0], ["left", "right"])
    )  # on samples: BrainVision stores sample indices
    path = tmp_path / "rec.vhdr"
    mne.export.export_raw(path, raw, verbose="error")

    rec = read_recording(path)

    assert rec.ch_names == ["Fz", "Cz", "Pz", "EOG1"]
    np.testing.assert_allclose(rec.data, raw.get_data().T, rtol=1e-6, atol=1e-9)
    # MNE names BrainVision comments "Comment/<text>".
    assert [m.value for m in rec.markers] == ["Comment/left", "Comment/right"]
    np.testing.assert_allclose([m.time for m in rec.markers], [0.5, 1.2])


def test_eeglab_shared_file() -> None:
    rec = read_recording(EEGLAB)

    assert rec.data.shape[1] == 32 and len(rec.ch_names) == 32
    assert rec.sfreq == 128.0
    assert rec.units == "V"
    assert np.abs(rec.data).max() < 1e-2  # volts, not microvolts
    counts = Counter(m.value for m in rec.markers)
    assert counts == {"square": 80, "rt": 74}
    times = [m.time for m in rec.markers]
    assert times == sorted(times)


def test_eeglab_event_fields_split_square_by_position() -> None:
    plain = read_recording(EEGLAB)
    rec = read_recording(EEGLAB, event_fields=["position"])

    counts = Counter(m.value for m in rec.markers)
    assert counts == {"square/position=1": 40, "square/position=2": 40, "rt": 74}  # rt has no position
    # Same events at the same times, only the values are refined.
    assert [m.time for m in rec.markers] == [m.time for m in plain.markers]
    for refined, bare in zip(rec.markers, plain.markers, strict=True):
        assert refined.value.split("/")[0] == bare.value
    # The first event of the file: square at latency 129.00875 (1-based samples), position 2.
    assert rec.markers[0].value == "square/position=2"
    assert rec.markers[0].time == pytest.approx((129.00875 - 1) / 128, abs=1e-6)


def test_eeglab_unknown_event_field_names_it_and_lists_available() -> None:
    with pytest.raises(RecordingError, match=r"no event field 'side'.*available fields: .*position"):
        read_recording(EEGLAB, event_fields=["side"])


def test_inspect_eeglab_lists_its_event_fields(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``bci-stream inspect FILE.set`` names the fields ``--event-fields`` accepts: the list its error gives."""
    with pytest.raises(RecordingError, match=r"available fields: ") as err:
        read_recording(EEGLAB, event_fields=["side"])
    available = str(err.value).split("available fields: ")[1]
    assert main(["-q", "inspect", str(EEGLAB)]) == 0
    out = capsys.readouterr().out
    assert f"event fields: {available}; --event-fields FIELD [FIELD ...] reads them into the markers" in out
    assert "position" in available.split(", ")
    assert main(["-q", "inspect", str(EEGLAB), "--event-fields", "position"]) == 0
    out = capsys.readouterr().out
    assert "square/position=1" in out and f"event fields: {available} (in the markers now: position)" in out
    fif = tmp_path / "rec_raw.fif"
    _raw().save(fif, verbose="error")
    assert main(["-q", "inspect", str(fif)]) == 0
    assert "event fields" not in capsys.readouterr().out  # only EEGLAB files have them


def test_event_fields_refused_for_non_eeglab(tmp_path: Path) -> None:
    path = tmp_path / "rec_raw.fif"
    _raw().save(path, verbose="error")
    with pytest.raises(RecordingError, match=r"only applies to EEGLAB \.set files"):
        read_recording(path, event_fields=["position"])


# ---------------------------------------------------------------------------------------------------------------------
# XDF


def test_minimal_xdf_loads(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="bci_stream.recordings"):
        rec = read_recording(MINIMAL_XDF)

    assert rec.data.shape == (9, 3)
    assert rec.sfreq == 10.0
    assert rec.ch_names == ["ch1", "ch2", "ch3"]
    assert rec.ch_types == ["eeg", "eeg", "eeg"]
    # No unit declared: the samples are taken as microvolts and converted to volts, with a warning.
    assert rec.units == "V"
    np.testing.assert_allclose(rec.data[:3], np.array([[192, 255, 238], [12, 22, 32], [13, 23, 33]]) * 1e-6)
    assert "assuming microvolts" in caplog.text
    values = [m.value for m in rec.markers]
    assert len(values) == 9 and values[1:5] == ["Hello", "World", "from", "LSL"]
    np.testing.assert_allclose([m.time for m in rec.markers], np.arange(1, 10) / 10, atol=1e-9)


def _xdf_chunk(tag: int, content: bytes) -> bytes:
    length = len(content) + 2
    return struct.pack("<BQH", 8, length, tag) + content


def _xdf_stream_header(stream_id: int, xml: str) -> bytes:
    return _xdf_chunk(2, struct.pack("<I", stream_id) + xml.encode())


def _xdf_samples(stream_id: int, fmt: str, samples: list, stamps: list[float]) -> bytes:
    """A Samples chunk; numeric ``fmt`` is a struct code ('f', 'd', 'h'), or 'string'."""
    body = struct.pack("<I", stream_id) + struct.pack("<BI", 4, len(samples))
    for sample, stamp in zip(samples, stamps, strict=True):
        body += struct.pack("<Bd", 8, stamp)
        if fmt == "string":
            for value in sample:
                raw = value.encode()
                body += struct.pack("<BI", 4, len(raw)) + raw
        else:
            body += struct.pack(f"<{len(sample)}{fmt}", *sample)
    return _xdf_chunk(3, body)


def _stream_xml(name: str, kind: str, n: int, srate: float, fmt: str, channels: list[dict] | None = None) -> str:
    desc = ""
    if channels:
        items = "".join(
            "<channel>" + "".join(f"<{k}>{v}</{k}>" for k, v in ch.items()) + "</channel>" for ch in channels
        )
        desc = f"<desc><channels>{items}</channels></desc>"
    return (
        f'<?xml version="1.0"?><info><name>{name}</name><type>{kind}</type><channel_count>{n}</channel_count>'
        f"<nominal_srate>{srate}</nominal_srate><channel_format>{fmt}</channel_format>"
        f"<created_at>0</created_at>{desc}</info>"
    )


def _write_xdf(path: Path, *, eeg_srate: float = 100.0) -> np.ndarray:
    """An XDF with an accelerometer (2 ch), an EEG stream (3 ch, units uV/mV/none), markers and a text stream.

    Returns the EEG samples as written (20 samples from t = 100.0 s).
    """
    eeg = (np.arange(60, dtype=np.float64).reshape(20, 3) + 1.0).tolist()
    stamps = (100.0 + np.arange(20) / 100.0).tolist()
    channels = [
        {"label": "Fz", "unit": "microvolts", "type": "EEG"},
        {"label": "Cz", "unit": "mV", "type": "EEG"},
        {"label": "HEOG", "type": "EOG"},
    ]
    parts = [
        b"XDF:",
        _xdf_chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>'),
        _xdf_stream_header(1, _stream_xml("acc", "Accelerometer", 2, 100.0, "float32")),
        _xdf_stream_header(2, _stream_xml("amp", "EEG", 3, eeg_srate, "double64", channels)),
        _xdf_stream_header(3, _stream_xml("notes", "Text", 1, 0, "string")),
        _xdf_stream_header(4, _stream_xml("stim", "Markers", 1, 0, "string")),
        _xdf_samples(1, "f", [[0.0, 1.0]] * 20, stamps),
        _xdf_samples(2, "d", eeg, stamps),
        _xdf_samples(3, "string", [["not a marker"]], [100.05]),
        _xdf_samples(4, "string", [["go"], ["stop"]], [100.05, 100.125]),
    ]
    path.write_bytes(b"".join(parts))
    return np.asarray(eeg)


def test_xdf_picks_eeg_and_markers_and_converts_units(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "session.xdf"
    written = _write_xdf(path)

    with caplog.at_level(logging.WARNING, logger="bci_stream.recordings"):
        rec = read_recording(path)

    assert rec.ch_names == ["Fz", "Cz", "HEOG"]
    assert rec.ch_types == ["eeg", "eeg", "eog"]
    assert rec.sfreq == 100.0
    assert rec.units == "V"
    np.testing.assert_allclose(rec.data, written * np.array([1e-6, 1e-3, 1e-6]))
    assert "HEOG" in caplog.text and "assuming microvolts" in caplog.text  # the one channel without a unit
    assert [m.value for m in rec.markers] == ["go", "stop"]  # the "Markers" stream, not the "Text" one
    np.testing.assert_allclose([m.time for m in rec.markers], [0.05, 0.125], atol=1e-9)


def test_xdf_irregular_eeg_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "irregular.xdf"
    _write_xdf(path, eeg_srate=0)
    with pytest.raises(RecordingError, match=r"'amp'.*irregular sampling rate"):
        read_recording(path)


# ---------------------------------------------------------------------------------------------------------------------
# errors


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "sub-01.fif"
    with pytest.raises(RecordingError, match=r"sub-01\.fif.*does not exist.*check the path"):
        read_recording(missing)


def test_unsupported_extension_lists_supported_ones(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(RecordingError, match=r"'\.csv'.*supported extensions: \.fif.*\.xdf") as info:
        read_recording(path)
    for ext in SUPPORTED_EXTENSIONS:
        assert ext in str(info.value)


@pytest.mark.parametrize(("filename", "reader"), [("broken_raw.fif", "read_raw_fif"), ("broken.xdf", "load_xdf")])
def test_unreadable_file_wraps_the_reader_message(tmp_path: Path, filename: str, reader: str) -> None:
    path = tmp_path / filename
    path.write_bytes(b"this is not a recording" * 10)
    with pytest.raises(RecordingError, match=rf"cannot read .*{filename}.* with .*{reader}: "):
        read_recording(path)
