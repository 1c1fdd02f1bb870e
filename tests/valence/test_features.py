"""bci_stream.features: relative band power, the fixed window grid, streaming = offline, stream checks."""

from __future__ import annotations

import numpy as np
import pytest

from bci_stream.card import FeatureSpec, Preprocessing
from bci_stream.errors import ModelCardError
from bci_stream.features import (
    DEFAULT_BANDS,
    FeatureContext,
    FeatureFrames,
    FeaturePipeline,
    FeatureStream,
    average_reference,
    band_power_features,
    check_feature_stream,
    default_feature_spec,
    default_preprocessing,
    feature_names,
    features_from_recording,
    window_end,
)
from bci_stream.recordings import Recording

SPEC = default_feature_spec()
CENTRES = (2.0, 6.0, 10.0, 15.0, 24.0, 37.0)  # one integer frequency inside each default band


def random_chunks(rng: np.random.Generator, n: int, max_size: int = 300) -> list[slice]:
    """Random chunk boundaries over ``n`` samples, including empty and single-sample chunks."""
    slices, i = [], 0
    while i < n:
        k = int(rng.choice([0, 1, 2, int(rng.integers(1, max_size))]))
        slices.append(slice(i, min(i + k, n)))
        i += k
    return slices


def noise_recording(seconds: float = 12.0, sfreq: float = 128.0, n_ch: int = 5, seed: int = 0) -> Recording:
    rng = np.random.default_rng(seed)
    n = int(seconds * sfreq)
    t = np.arange(n) / sfreq
    data = rng.standard_normal((n, n_ch)) * 1e-5 + 3e-5 * np.sin(2 * np.pi * 10 * t)[:, None] * rng.random(n_ch)
    return Recording(data, sfreq, [f"E{i}" for i in range(n_ch)], ["eeg"] * n_ch, "V", source="noise")


# ------------------------------------------------------------------------------------------- pure function


@pytest.mark.parametrize("sfreq", [128.0, 256.0, 1000.0])
@pytest.mark.parametrize("band", range(6))
def test_sinusoid_in_one_band_has_relative_power_one(sfreq: float, band: int) -> None:
    t = np.arange(int(2 * sfreq)) / sfreq
    window = np.stack([np.sin(2 * np.pi * CENTRES[band] * t + p) for p in (0.0, 1.0, 2.0)], axis=1)
    feats = band_power_features(window, sfreq, SPEC).reshape(3, 6)
    expected = np.zeros(6)
    expected[band] = 1.0
    np.testing.assert_allclose(feats, np.tile(expected, (3, 1)), atol=1e-6)


def test_features_are_channel_major_and_relative() -> None:
    sfreq = 128.0
    rng = np.random.default_rng(1)
    t = np.arange(256) / sfreq
    window = 0.01 * rng.standard_normal((256, 4))
    window[:, 2] += np.sin(2 * np.pi * 10 * t)  # alpha on channel 2
    feats = band_power_features(window, sfreq, SPEC)
    assert feats.shape == (4 * 6,)
    per_channel = feats.reshape(4, 6)
    np.testing.assert_allclose(per_channel.sum(axis=1), 1.0, atol=1e-12)
    assert feats[2 * 6 + 2] > 0.99  # index = channel * n_bands + band
    assert feature_names(["A", "B"], SPEC)[:7] == [
        "A 0.3-4Hz",
        "A 4-8Hz",
        "A 8-12Hz",
        "A 12-18Hz",
        "A 18-30Hz",
        "A 30-45Hz",
        "B 0.3-4Hz",
    ]


def test_bands_window_and_hop_are_configurable() -> None:
    spec = default_feature_spec([(1.0, 10.0), (10.0, 20.0)], window=1.0, hop=0.5, segment=0.5)
    sfreq = 100.0
    t = np.arange(100) / sfreq
    window = np.sin(2 * np.pi * 14 * t)[:, None]
    np.testing.assert_allclose(band_power_features(window, sfreq, spec), [0.0, 1.0], atol=1e-6)
    np.testing.assert_array_equal(window_end(np.arange(3), spec, sfreq), [100, 150, 200])


@pytest.mark.parametrize("sfreq", [128.0, 250.0, 1000.0])
def test_equals_relative_power_from_scipy_welch(sfreq: float) -> None:
    from scipy.signal import welch

    rng = np.random.default_rng(7)
    window = np.cumsum(rng.standard_normal((int(2 * sfreq), 3)), axis=0)  # red noise: every band has power
    s = round(sfreq)
    freqs, psd = welch(window, fs=sfreq, window="hann", nperseg=s, noverlap=s // 2, detrend="constant", axis=0)
    power = np.stack([psd[(freqs >= lo) & (freqs < hi)].sum(axis=0) for lo, hi in DEFAULT_BANDS], axis=1)
    expected = (power / power.sum(axis=1, keepdims=True)).ravel()  # channel-major
    np.testing.assert_allclose(band_power_features(window, sfreq, SPEC), expected, rtol=1e-10, atol=1e-14)


def test_flat_channel_gives_zeros_not_nan() -> None:
    feats = band_power_features(np.zeros((256, 2)), 128.0, SPEC)
    assert np.all(feats == 0.0)


# ---------------------------------------------------------------------------------------------- the grid


def test_window_grid_and_times_offline() -> None:
    rec = noise_recording(seconds=10.0)
    times, X = features_from_recording(rec, SPEC)
    k = np.arange(len(times))
    np.testing.assert_allclose(times, 2.0 + 0.25 * k, atol=1e-12)
    assert len(times) == int((10.0 - 2.0) / 0.25) + 1
    assert X.shape == (len(times), 5 * 6)


def test_window_grid_with_non_integer_hop_samples_does_not_drift() -> None:
    sfreq = 250.0  # hop = 62.5 samples
    ends = window_end(np.arange(9), SPEC, sfreq)
    np.testing.assert_array_equal(ends[:5], [500, 563, 625, 688, 750])
    np.testing.assert_allclose(ends / sfreq, 2.0 + 0.25 * np.arange(9), atol=0.5 / sfreq)


def test_each_window_is_the_referenced_filtered_signal_on_the_grid() -> None:
    """The k-th feature vector = band power of samples [e_k − W, e_k) after the causal filter and average ref."""
    from bci_stream.signal import CausalFilter, design_filter

    rec = noise_recording(seconds=6.0, sfreq=200.0)
    t0 = 1234.5  # an LSL-like clock
    pipe = FeaturePipeline(SPEC, default_preprocessing(), rec.ch_names, rec.sfreq, "V", rec.ch_names)
    frames = pipe.push(rec.data, rec.times + t0)
    sos = design_filter(rec.sfreq, default_preprocessing(), rec.sfreq)
    filtered = average_reference(CausalFilter(sos, 5).process(rec.data))
    w = 400
    for k, (end, time, feats) in enumerate(zip(frames.ends, frames.times, frames.X, strict=True)):
        assert end == w + 50 * k
        assert time == pytest.approx(t0 + end / rec.sfreq, abs=1e-9)
        np.testing.assert_allclose(feats, band_power_features(filtered[end - w : end], rec.sfreq, SPEC), atol=1e-12)
    assert frames.finite.all()


# --------------------------------------------------------------------------------------- streaming = offline


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_feature_stream_in_random_chunks_equals_one_piece(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sfreq, n_ch = 128.0, 4
    x = rng.standard_normal((int(9.3 * sfreq), n_ch))
    t = 100.0 + np.arange(len(x)) / sfreq
    whole = FeatureStream(SPEC, sfreq, n_ch).push(x, t)
    stream = FeatureStream(SPEC, sfreq, n_ch)
    parts = [stream.push(x[s], t[s]) for s in random_chunks(rng, len(x))]
    times = np.concatenate([p.times for p in parts])
    X = np.concatenate([p.X for p in parts])
    np.testing.assert_array_equal(times, whole.times)
    np.testing.assert_array_equal(np.concatenate([p.ends for p in parts]), whole.ends)
    np.testing.assert_allclose(X, whole.X, rtol=0, atol=1e-10)


def test_pipeline_in_random_chunks_equals_features_from_recording() -> None:
    rng = np.random.default_rng(3)
    rec = noise_recording(seconds=8.0, sfreq=256.0, n_ch=6)
    stream_channels = ["X1", *rec.ch_names[::-1]]  # extra channel, other order: picked by name
    raw = np.concatenate([rng.standard_normal((rec.n_samples, 1)), rec.data[:, ::-1]], axis=1) * 1e6  # µV
    times, X = features_from_recording(rec, SPEC, channels=rec.ch_names)
    pipe = FeaturePipeline(SPEC, default_preprocessing(), stream_channels, rec.sfreq, "uV", rec.ch_names)
    parts = [pipe.push(raw[s], rec.times[s]) for s in random_chunks(rng, rec.n_samples)]
    np.testing.assert_allclose(np.concatenate([p.times for p in parts]), times, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([p.X for p in parts]), X, rtol=0, atol=1e-10)


def test_reset_restarts_the_grid() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((600, 2))
    stream = FeatureStream(SPEC, 128.0, 2)
    stream.push(x[:300], np.arange(300) / 128)
    stream.reset()
    frames = stream.push(x[300:], 50.0 + np.arange(300) / 128)
    assert frames.ends[0] == 256
    assert frames.times[0] == pytest.approx(50.0 + 2.0)


def test_non_finite_samples_mark_their_windows() -> None:
    rec = noise_recording(seconds=5.0)
    raw = rec.data.copy()
    raw[400, 1] = np.nan  # sample 400 = 3.125 s
    pipe = FeaturePipeline(SPEC, default_preprocessing(), rec.ch_names, rec.sfreq, "V", rec.ch_names)
    frames = pipe.push(raw, rec.times)
    bad = (frames.ends - 256 <= 400) & (frames.ends > 400)
    assert bad.any()
    np.testing.assert_array_equal(frames.finite, ~bad)
    assert np.isfinite(frames.X).all()


# ------------------------------------------------------------------------------------------ average reference


def test_average_reference_removes_a_common_signal() -> None:
    rec = noise_recording(seconds=6.0)
    rng = np.random.default_rng(5)
    common = 1e-3 * np.cumsum(rng.standard_normal(rec.n_samples))[:, None]  # huge, identical on every channel
    shifted = Recording(rec.data + common, rec.sfreq, rec.ch_names, rec.ch_types, "V")
    _, X = features_from_recording(rec, SPEC)
    _, Xc = features_from_recording(shifted, SPEC)
    np.testing.assert_allclose(Xc, X, atol=1e-7)
    no_ref = FeatureSpec(bands=list(DEFAULT_BANDS), window=2.0, hop=0.25, reference="none")
    _, Xn = features_from_recording(shifted, no_ref)
    assert np.max(np.abs(Xn - X)) > 0.1  # without the reference the common signal dominates


# ---------------------------------------------------------------------------------------------------- checks


DEAP32 = [f"C{i}" for i in range(32)]


def test_check_refuses_too_few_channels_naming_both_sides() -> None:
    with pytest.raises(ModelCardError, match=r"EEG stream 'amp' has 16 channels but model 'v' needs 32"):
        check_feature_stream(SPEC, 256.0, DEAP32[:16], DEAP32, source="EEG stream 'amp'", target="model 'v'")


def test_check_refuses_missing_channels_naming_them() -> None:
    stream = [*DEAP32[:31], "X"]
    with pytest.raises(ModelCardError, match=r"model 'v' needs 32 channels but EEG stream 'amp' lacks 1 of them: C31"):
        check_feature_stream(SPEC, 256.0, stream, DEAP32, source="EEG stream 'amp'", target="model 'v'")


def test_check_refuses_a_rate_too_low_for_the_highest_band() -> None:
    with pytest.raises(
        ModelCardError, match=r"EEG stream 'amp' samples at 64 Hz.*model 'v' uses band power up to 45 Hz"
    ):
        check_feature_stream(SPEC, 64.0, DEAP32, DEAP32, source="EEG stream 'amp'", target="model 'v'")
    with pytest.raises(ModelCardError, match=r"90 Hz \(Nyquist 45 Hz\)"):
        check_feature_stream(SPEC, 90.0, DEAP32, DEAP32)


def test_check_accepts_and_returns_picks() -> None:
    stream = ["X", *reversed(DEAP32)]
    picks = check_feature_stream(SPEC, 128.0, stream, DEAP32)
    assert [stream[i] for i in picks] == DEAP32


def test_pipeline_refuses_like_the_check() -> None:
    with pytest.raises(ModelCardError, match="64 Hz"):
        FeaturePipeline(SPEC, Preprocessing(bandpass=(0.3, 45.0)), DEAP32, 64.0, "V", DEAP32)


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ModelCardError, match="segment"):
        default_feature_spec(window=0.5, segment=1.0)
    with pytest.raises(ModelCardError, match=r"band \[8, 4\]"):
        default_feature_spec([(8.0, 4.0)])
    with pytest.raises(ModelCardError, match="no Welch bin"):
        FeatureStream(default_feature_spec([(10.2, 10.8)]), 128.0, 1)


def test_feature_context_holds_consecutive_finite_frames() -> None:
    ctx = FeatureContext(3, 2)
    frames = FeatureFrames(
        times=np.arange(6.0),
        X=np.arange(12.0).reshape(6, 2),
        finite=np.array([True, True, True, True, False, True]),
        ends=np.arange(6),
    )
    ready = ctx.push(frames)
    assert [t for t, _ in ready] == [2.0, 3.0]  # full from the third frame; the non-finite frame empties it
    np.testing.assert_array_equal(ready[1][1], [[[2, 3], [4, 5], [6, 7]]])
    assert ready[1][1].dtype == np.float32
    more = ctx.push(FeatureFrames(np.array([6.0, 7.0]), np.zeros((2, 2)), np.array([True, True]), np.zeros(2)))
    assert [t for t, _ in more] == [7.0]
