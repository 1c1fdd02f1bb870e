"""Unit tests of bci_stream.pipeline: offline epochs equal online epochs, event filtering, errors."""

from __future__ import annotations

import numpy as np
import pytest

from bci_stream.card import InputSpec, Preprocessing
from bci_stream.epochs import Drop, DropReason, Epoch, Marker
from bci_stream.errors import ModelCardError, RecordingError
from bci_stream.pipeline import EpochPipeline, epochs_from_recording
from bci_stream.recordings import Recording
from bci_stream.signal import Preprocessor

PREP = Preprocessing(bandpass=(5.0, 95.0), notch=50.0)
CARD_CHANNELS = ["Fp1", "Fp2", "Cz"]


def make_spec(sfreq=1000.0, n_times=200, tmin=0.04) -> InputSpec:
    return InputSpec(sfreq=sfreq, n_times=n_times, tmin=tmin, channels=list(CARD_CHANNELS), units="V")


def make_recording(seed=0, sfreq=1000.0, seconds=3.0, markers=None, units="uV") -> Recording:
    rng = np.random.default_rng(seed)
    n = int(seconds * sfreq)
    t = np.arange(n) / sfreq
    data = rng.normal(size=(n, 4)) * 10.0 + 30.0 * np.sin(2 * np.pi * 10.0 * t)[:, None] + [50.0, -20.0, 0.0, 5.0]
    data[n // 2, 2] = np.nan  # one bad sample in channel "FP2"
    if markers is None:
        markers = [
            Marker("stim/2", 1.2),
            Marker("stim/1", 0.3),
            Marker("other", 0.5),
            Marker("stim/1", 0.31),  # overlapping
            Marker("stim/3", 1.45),  # window contains the NaN sample at 1.5 s
            Marker("stim/1", 2.9),  # window ends past the recording
            Marker("boundary", 0.0),
        ]
    return Recording(
        data=data,
        sfreq=sfreq,
        ch_names=["Cz", "o1", "FP2", "Fp1"],
        ch_types=["eeg"] * 4,
        units=units,
        markers=list(markers),
        source="mem.fif",
    )


def feed_online(rec: Recording, spec: InputSpec, prep: Preprocessing, seed: int, events=None):
    """Feed ``rec`` into an EpochPipeline in random chunks, with markers pushed at random moments."""
    rng = np.random.default_rng(seed)
    pipe = EpochPipeline(spec, prep, rec.ch_names, rec.sfreq, rec.units, events=events)
    markers = sorted(rec.markers, key=lambda m: m.time)
    deliver_at = np.sort(rng.integers(0, rec.n_samples + 1, size=len(markers)))
    times, results, i, j = rec.times, [], 0, 0
    while j < len(markers) and deliver_at[j] == 0:
        pipe.push_markers([markers[j]])
        j += 1
    while i < rec.n_samples:
        k = int(rng.choice([1, 2, int(rng.integers(1, 200))]))
        pipe.push_samples(rec.data[i : i + k], times[i : i + k], arrival=float(i))
        i = min(i + k, rec.n_samples)
        while j < len(markers) and deliver_at[j] <= i:
            pipe.push_markers([markers[j]])
            j += 1
        results += pipe.poll()
    pipe.push_markers(markers[j:])
    results += pipe.poll()
    results += pipe.drain(DropReason.END_OF_DATA, "recording ends before the window")
    return pipe, results


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    ("rec_sfreq", "model_sfreq", "n_times"), [(1000.0, 1000.0, 200), (2000.0, 1000.0, 200), (1000.0, 250.0, 60)]
)
def test_offline_equals_online(seed, rec_sfreq, model_sfreq, n_times):
    rec = make_recording(seed, sfreq=rec_sfreq)
    spec = make_spec(sfreq=model_sfreq, n_times=n_times)
    offline = epochs_from_recording(rec, spec, PREP, events="^stim")
    pipe, results = feed_online(rec, spec, PREP, seed, events="^stim")
    assert pipe.ignored_markers == 2
    epochs = [r for r in results if isinstance(r, Epoch)]
    drops = [r for r in results if isinstance(r, Drop)]
    assert [m.time for m in offline.markers] == [e.marker.time for e in epochs]
    assert offline.markers == [e.marker for e in epochs]
    assert offline.X.shape == (len(epochs), n_times, 3)
    scale = np.abs(offline.X).max()  # volts: compare relative to the signal size
    np.testing.assert_allclose(offline.X, np.stack([e.data for e in epochs]), rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(offline.starts, [e.start for e in epochs], rtol=0, atol=1e-12)
    assert [(d.marker, d.reason) for d in offline.drops] == [(d.marker, d.reason) for d in drops]
    # accounting: every matching marker exactly once, in marker order
    stim = sorted((m for m in rec.markers if m.value.startswith("stim")), key=lambda m: m.time)
    assert [r.marker for r in results] == stim
    reasons = {d.marker: d.reason for d in drops}
    assert reasons == {Marker("stim/3", 1.45): DropReason.NON_FINITE, Marker("stim/1", 2.9): DropReason.END_OF_DATA}


def test_offline_epochs_are_filtered_continuous_signal_slices():
    rec = make_recording(5)
    spec = make_spec(tmin=-0.05, n_times=100)
    offline = epochs_from_recording(rec, spec, PREP)
    filtered, finite = Preprocessor(rec.ch_names, rec.sfreq, rec.units, spec, PREP).process(rec.data)
    assert not finite[1500]
    # "boundary" at 0.0 s with tmin -0.05 s starts before the recording
    late = [d for d in offline.drops if d.marker.value == "boundary"]
    assert len(late) == 1 and late[0].reason is DropReason.LATE
    assert len(offline.markers) == len(offline.X) > 0
    for marker, x, start in zip(offline.markers, offline.X, offline.starts, strict=True):
        first = round((marker.time + spec.tmin) * rec.sfreq)
        np.testing.assert_array_equal(x, filtered[first : first + 100])
        assert start == pytest.approx(first / rec.sfreq)
    # units: a 10 µV-scale stream lands in volts
    assert np.abs(offline.X).max() < 1e-3


def test_events_regex_filters_and_counts_ignored():
    rec = make_recording(1)
    spec = make_spec()
    pipe = EpochPipeline(spec, PREP, rec.ch_names, rec.sfreq, rec.units, events=r"stim/1$")
    accepted = pipe.push_markers(rec.markers)
    assert [m.value for m in accepted] == ["stim/1"] * 3
    assert pipe.ignored_markers == 4
    assert pipe.epocher.pending == 3
    assert pipe.matches("x/stim/1") and not pipe.matches("stim/10")
    everything = EpochPipeline(spec, PREP, rec.ch_names, rec.sfreq, rec.units)
    assert len(everything.push_markers(rec.markers)) == len(rec.markers)
    assert everything.ignored_markers == 0

    offline = epochs_from_recording(rec, spec, PREP, events=r"stim/1$")
    assert [m.value for m in offline.markers] == ["stim/1", "stim/1"]
    assert [d.marker.value for d in offline.drops] == ["stim/1"]


def test_recording_shorter_than_one_epoch():
    spec = make_spec(n_times=500, tmin=0.1)  # needs 0.6 s
    rec = make_recording(2, seconds=0.55, markers=[Marker("stim", 0.0)])
    with pytest.raises(RecordingError, match="shorter than one epoch") as info:
        epochs_from_recording(rec, spec, PREP)
    assert "mem.fif" in str(info.value)


def test_recording_exactly_one_epoch_long_is_accepted():
    spec = make_spec(n_times=500, tmin=0.0)
    rec = make_recording(2, seconds=0.5, markers=[Marker("stim", 0.0)])
    rec.data[:] = np.nan_to_num(rec.data)
    out = epochs_from_recording(rec, spec, PREP)
    assert out.X.shape == (1, 500, 3)


def test_no_matching_marker_lists_markers_found():
    rec = make_recording(3, markers=[Marker("b", 0.5), Marker("a", 0.2), Marker("b", 0.9)])
    with pytest.raises(RecordingError, match=r"no marker matches.*markers found: a, b") as info:
        epochs_from_recording(rec, make_spec(), PREP, events="^stim")
    assert "^stim" in str(info.value)
    empty = make_recording(3, markers=[])
    with pytest.raises(RecordingError, match="markers found: none"):
        epochs_from_recording(empty, make_spec(), PREP)


def test_stream_lacking_a_card_channel():
    rec = make_recording(4)
    rec.ch_names = ["Cz", "O1", "O2", "Fp1"]
    with pytest.raises(ModelCardError, match=r"Fp2") as info:
        epochs_from_recording(rec, make_spec(), PREP)
    assert "mem.fif" in str(info.value)
    with pytest.raises(ModelCardError, match=r"lacks 1.*Fp2"):
        EpochPipeline(make_spec(), PREP, rec.ch_names, rec.sfreq, rec.units, source="amp", target="net")


def test_stream_too_slow_for_card():
    with pytest.raises(ModelCardError, match="Nyquist"):
        epochs_from_recording(make_recording(0, sfreq=150.0), make_spec(), PREP)


def test_no_epochs_gives_empty_array():
    rec = make_recording(6, markers=[Marker("stim", 2.95)])
    out = epochs_from_recording(rec, make_spec(), PREP)
    assert out.X.shape == (0, 200, 3)
    assert out.markers == [] and len(out.starts) == 0
    assert [d.reason for d in out.drops] == [DropReason.END_OF_DATA]


def test_restart_signal_keeps_markers_and_restarts_filter():
    rec = make_recording(7)
    rec.data[:] = np.nan_to_num(rec.data)
    spec = make_spec(tmin=0.0, n_times=100)
    pipe = EpochPipeline(spec, PREP, rec.ch_names, rec.sfreq, rec.units)
    pipe.push_samples(rec.data[:1000], rec.times[:1000])
    pipe.push_markers([Marker("stim", 2.0)])
    pipe.restart_signal()
    assert len(pipe.buffer) == 0
    assert pipe.epocher.pending == 1
    pipe.push_samples(rec.data[1000:], rec.times[1000:])
    epoch = only_epoch(pipe.poll())
    fresh = Preprocessor(rec.ch_names, rec.sfreq, rec.units, spec, PREP).process(rec.data[1000:])[0]
    np.testing.assert_array_equal(epoch.data, fresh[1000:1100])


def only_epoch(results):
    assert len(results) == 1 and isinstance(results[0], Epoch), results
    return results[0]


def test_buffer_capacity_covers_requested_seconds():
    spec = make_spec()
    pipe = EpochPipeline(spec, PREP, CARD_CHANNELS, 1000.0, "V", buffer_seconds=5.0)
    assert pipe.buffer.capacity == 5000
    tiny = EpochPipeline(spec, PREP, CARD_CHANNELS, 1000.0, "V", buffer_seconds=0.0)
    assert tiny.buffer.capacity >= 2 * (spec.n_times + 40)  # at least two windows incl. tmin
