"""An XDF file with a hole in its EEG (the amplifier dropped out): read, cut and served the same offline and live.

Before, the reader laid the samples after a hole straight after the ones before it while the markers kept their
times, so every epoch after the hole was cut from the wrong signal (2.5 s off here) and training learnt from it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bci_stream.card import read_card
from bci_stream.cli import main
from bci_stream.client import Subscriber
from bci_stream.features import features_from_recording
from bci_stream.inference import OnnxModel
from bci_stream.messages import Drop, Prediction
from bci_stream.pipeline import epochs_from_recording
from bci_stream.recordings import Recording, crop_recording, read_recording
from bci_stream.signal import normalize, softmax
from bci_stream.xdf_writer import XdfWriter
from tests.lab.xdf_sessions import eeg_header, marker_header
from tests.support import collect, daemon_config, make_linear_model, playing, running_daemon, unique

RATE = 250.0
CHANNELS = [f"Ch{i + 1}" for i in range(8)]
HOLE = (2.0, 4.5)  # s from the first sample: no EEG recorded in between
END = 9.0
#: 1.85: its window runs into the hole; 4.8 and 5.0: inside the filter's settling time after it (1.04 s).
STIM = [0.5, 1.0, 1.5, 1.85, 4.8, 5.0, 6.0, 6.5, 7.0, 7.5, 8.0]


def write_holey_session(path: Path, tag: str) -> dict[str, np.ndarray]:
    """8 channels at 250 Hz, in microvolts, stamped on the recorder's clock, with a hole; one marker stream."""
    t0 = 500.0
    times = np.concatenate([np.arange(0.0, HOLE[0], 1 / RATE), np.arange(HOLE[1], END, 1 / RATE)])
    eeg = (np.random.default_rng(7).standard_normal((len(times), len(CHANNELS))) * 20).astype(np.float32)
    with XdfWriter(path) as w:
        w.add_stream(1, eeg_header(f"amp-{tag}", CHANNELS, RATE), "float32")
        w.add_stream(2, marker_header(f"stim-{tag}"), "string")
        for k in range(0, len(times), 25):
            w.write_samples(1, eeg[k : k + 25], list(t0 + times[k : k + 25]))
        w.write_samples(2, [[f"stim/{'ab'[i % 2]}/{i}"] for i in range(len(STIM))], [t0 + t for t in STIM])
        for t in (t0, t0 + 4.0, t0 + 8.0):
            w.write_clock_offset(1, t, 0.0)
            w.write_clock_offset(2, t, 0.0)
    return {"times": times, "eeg": eeg}


@pytest.fixture(scope="module")
def holey(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recording, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("holes") / "holey.xdf"
    written = write_holey_session(path, unique("hole"))
    return read_recording(path), written


def test_samples_after_a_hole_keep_their_time_and_the_hole_is_nan(holey) -> None:
    rec, written = holey
    assert rec.duration == pytest.approx(END)
    assert rec.gaps == ((round(HOLE[0] * RATE), round(HOLE[1] * RATE)),)
    recorded = rec.recorded()
    # every written sample sits at round(time * rate), so a marker after the hole finds its own samples
    np.testing.assert_array_equal(np.flatnonzero(recorded), np.round(written["times"] * RATE).astype(int))
    np.testing.assert_allclose(rec.data[recorded], written["eeg"] * 1e-6, rtol=1e-6)
    assert np.isnan(rec.data[~recorded]).all()
    (first, _, none), (start, stop, brk) = rec.pieces()
    assert first == 0 and none is None and (start, stop) == (round(HOLE[1] * RATE), rec.n_samples)
    assert brk is not None and brk.jump == pytest.approx(HOLE[1] - HOLE[0], abs=1e-6)
    assert "jumped forward by 2.500 s" in brk.describe(RATE)


def test_a_crop_keeps_the_part_of_the_hole_inside_it(holey) -> None:
    rec, _ = holey
    assert crop_recording(rec, 1.0, 2.0).gaps == ((250, 500),)
    begins_in_hole = crop_recording(rec, 3.0)
    assert begins_in_hole.gaps == ((0, 375),)
    assert [(a, b, brk) for a, b, brk in begins_in_hole.pieces()] == [(375, begins_in_hole.n_samples, None)]
    assert crop_recording(rec, 5.0).gaps == ()


def test_valence_features_restart_after_a_hole_as_the_daemon_restarts_them(holey) -> None:
    """Offline, the filter and the window grid start afresh after the hole: the features equal those of the
    two recorded stretches computed apart (what the daemon does after a discontinuity)."""
    rec, _ = holey
    times, X = features_from_recording(rec)
    assert np.isfinite(X).all()
    parts = [
        features_from_recording(Recording(rec.data[a:b], RATE, rec.ch_names, rec.ch_types, rec.units))
        for a, b, _ in rec.pieces()
    ]
    np.testing.assert_allclose(X, np.concatenate([x for _, x in parts]))
    np.testing.assert_allclose(times, np.concatenate([parts[0][0], parts[1][0] + HOLE[1]]))


@pytest.mark.e2e
def test_the_daemon_serving_a_replay_of_the_file_answers_as_the_offline_epochs_do(holey, tmp_path: Path) -> None:
    """The replay jumps over the hole; the real daemon drops the same markers (`discontinuity`) as
    epochs_from_recording, and its predictions equal the offline model output on the offline epochs."""
    rec, _ = holey
    model_path = make_linear_model(
        tmp_path / "m.onnx", channels=CHANNELS, sfreq=RATE, n_times=50, tmin=0.02, classes=["a", "b"],
        bandpass=(2.0, 40.0),
    )  # fmt: skip
    card = read_card(model_path)
    offline = epochs_from_recording(rec, card.input, card.preprocessing, events="^stim/")
    assert sorted((d.marker.value, d.reason.value) for d in offline.drops) == [
        ("stim/a/4", "discontinuity"), ("stim/b/3", "discontinuity"), ("stim/b/5", "discontinuity")
    ]  # fmt: skip
    probs = softmax(OnnxModel(model_path).run(normalize(offline.X, card.preprocessing.normalization)))
    expected = {m.value: p for m, p in zip(offline.markers, probs, strict=True)}

    name = unique("holey")
    config = daemon_config(model_path, name, f"{name}-markers")
    with Subscriber(config.publish.endpoint, timeout=2.0) as sub, running_daemon(config):
        sub.wait_for("status", timeout=15)
        with playing(rec, name=name, source_id=name, speed=2.0, wait_consumers=10) as player:
            got = collect(sub, lambda m: len(m) >= len(STIM), timeout=30)
            player.thread.join(15)  # played to the end
    assert player.samples_pushed == int(rec.recorded().sum())  # the hole was not played as NaN samples
    assert [m.marker.value for m in got] == [f"stim/{'ab'[i % 2]}/{i}" for i in range(len(STIM))]
    live_drops = sorted((m.marker.value, m.reason) for m in got if isinstance(m, Drop))
    assert live_drops == sorted((d.marker.value, d.reason.value) for d in offline.drops)
    predictions = [m for m in got if isinstance(m, Prediction)]
    assert len(predictions) == len(expected) == len(STIM) - 3
    for p in predictions:
        np.testing.assert_allclose([p.probabilities[c] for c in ("a", "b")], expected[p.marker.value], atol=1e-4)


def test_a_fif_acquisition_skip_is_a_hole_too_not_zeros(tmp_path: Path) -> None:
    """MNE gives the samples of a FIF acquisition skip (BAD_ACQ_SKIP) as zeros; they become a NaN hole, and the
    epochs touching it are dropped `discontinuity` as after an XDF hole, not cut from zeros."""
    import mne

    info = mne.create_info(CHANNELS, RATE, "eeg")
    raw = mne.io.RawArray(np.random.default_rng(3).standard_normal((len(CHANNELS), int(6 * RATE))) * 1e-5, info)
    raw.set_annotations(
        mne.Annotations(
            [1.0, 2.0, 3.0, 4.5], [0.0, 1.0, 0.0, 0.0], ["stim/a/0", "BAD_ACQ_SKIP", "stim/b/1", "stim/a/2"]
        )
    )
    path = tmp_path / "skip_raw.fif"
    raw.save(path)
    rec = read_recording(path)
    assert rec.gaps == ((500, 750),)
    assert np.isnan(rec.data[500:750]).all() and np.isfinite(rec.data[:500]).all()
    assert [m.value for m in rec.markers] == ["stim/a/0", "stim/b/1", "stim/a/2"]  # the skip is not a marker
    model = make_linear_model(tmp_path / "m.onnx", channels=CHANNELS, sfreq=RATE, n_times=50, classes=["a", "b"])
    card = read_card(model)
    cut = epochs_from_recording(rec, card.input, card.preprocessing, events="^stim/")
    assert [m.value for m in cut.markers] == ["stim/a/0", "stim/a/2"]
    assert [(d.marker.value, d.reason.value) for d in cut.drops] == [("stim/b/1", "discontinuity")]


def test_inspect_names_the_hole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "holey.xdf"
    write_holey_session(path, unique("inspect"))
    assert main(["inspect", str(path)]) == 0
    assert "holes: 1 (2.500 s missing after +1.996 s)" in capsys.readouterr().out


def test_an_eeglab_boundary_is_a_hole_and_markers_after_it_keep_their_samples(tmp_path: Path) -> None:
    """EEGLAB's `boundary` (data removed there, or files joined): the samples on each side were never adjacent.
    It becomes a NaN hole of the removed duration (0.4 s here; 1 s when unknown), markers after it move with their
    samples, and an epoch across it is dropped `discontinuity` instead of being cut across the jump."""
    import mne

    signal = np.random.default_rng(5).standard_normal((len(CHANNELS), int(8 * RATE))) * 1e-5
    raw = mne.io.RawArray(signal, mne.create_info(CHANNELS, RATE, "eeg"))
    raw.set_annotations(
        mne.Annotations(
            [1.0, 2.95, 3.0, 4.0, 5.0, 6.5], [0, 0, 0.4, 0, 0, 0],
            ["stim/a/0", "stim/b/1", "boundary", "stim/a/2", "boundary", "stim/b/3"],
        )
    )  # fmt: skip
    path = tmp_path / "joined_raw.fif"
    raw.save(path)
    rec = read_recording(path)
    assert rec.gaps == ((750, 850), (1350, 1600))  # 0.4 s (its removed duration), then 1 s (unknown)
    assert rec.n_samples == signal.shape[1] + 100 + 250
    np.testing.assert_allclose(rec.data[rec.recorded()], signal.T, rtol=1e-6)  # every sample kept, in order
    at = {m.value: m.time for m in rec.markers}
    assert list(at) == ["stim/a/0", "stim/b/1", "stim/a/2", "stim/b/3"]  # boundaries are holes, not markers
    assert (at["stim/a/0"], at["stim/b/1"], at["stim/a/2"], at["stim/b/3"]) == pytest.approx((1.0, 2.95, 4.4, 7.9))
    model = make_linear_model(tmp_path / "m.onnx", channels=CHANNELS, sfreq=RATE, n_times=50, classes=["a", "b"])
    card = read_card(model)
    cut = epochs_from_recording(rec, card.input, card.preprocessing, events="^stim/")
    assert [(d.marker.value, d.reason.value) for d in cut.drops] == [("stim/b/1", "discontinuity")]
    j = round(6.5 * RATE)  # stim/b/3 after both boundaries: cut from its own samples
    np.testing.assert_allclose(cut.X[-1], signal.T[j : j + 50], rtol=1e-6)
