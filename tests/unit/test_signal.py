"""Unit tests of bci_stream.signal: units, channel mapping, rate checks, causal filters, normalisation."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from scipy import signal as sps

from bci_stream.card import FeatureSpec, InputSpec, Normalization, Preprocessing
from bci_stream.errors import ModelCardError
from bci_stream.features import DEFAULT_BANDS, band_power_windows
from bci_stream.signal import (
    CausalFilter,
    Preprocessor,
    channel_indices,
    check_rate,
    design_filter,
    filter_stages,
    fit_channel_normalization,
    normalize,
    polyphase_factors,
    polyphase_span,
    resample_epoch,
    softmax,
    unit_scale,
    volts_per_unit,
)

FS = 1000.0
BANDPASS = Preprocessing(bandpass=(5.0, 95.0), notch=50.0)


def spec(channels=("Fp1", "Fp2", "Cz"), sfreq=FS, units="V", n_times=100, tmin=0.0) -> InputSpec:
    return InputSpec(sfreq=sfreq, n_times=n_times, tmin=tmin, channels=list(channels), units=units)


def random_chunks(rng: np.random.Generator, n: int, max_size: int = 97) -> list[slice]:
    """Random chunk boundaries over ``n`` samples, including empty and single-sample chunks."""
    slices, i = [], 0
    while i < n:
        k = int(rng.choice([0, 1, 2, int(rng.integers(1, max_size))]))
        slices.append(slice(i, min(i + k, n)))
        i += k
    return slices


def gain(sos: np.ndarray, freq: float, fs: float = FS, seconds: float = 6.0) -> float:
    """Steady-state amplitude gain of ``sos`` at ``freq``, measured on a sinusoid."""
    t = np.arange(int(seconds * fs)) / fs
    x = np.sin(2 * np.pi * freq * t)
    y = CausalFilter(sos, 1).process(x[:, None])[:, 0]
    tail = slice(int(3.0 * fs), None)  # whole seconds: an integer number of periods for integer freq
    ref_s, ref_c = np.sin(2 * np.pi * freq * t[tail]), np.cos(2 * np.pi * freq * t[tail])
    a = 2 * np.mean(y[tail] * ref_s)
    b = 2 * np.mean(y[tail] * ref_c)
    return float(np.hypot(a, b))


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("unit", "volts"),
    [
        ("V", 1.0),
        ("volts", 1.0),
        (" v ", 1.0),
        ("mV", 1e-3),
        ("millivolts", 1e-3),
        ("uV", 1e-6),
        ("µV", 1e-6),  # micro sign
        ("μV", 1e-6),  # Greek mu
        ("microvolts", 1e-6),
        ("MICROVOLT", 1e-6),
        ("nV", 1e-9),
        ("nanovolts", 1e-9),
    ],
)
def test_volts_per_unit(unit, volts):
    assert volts_per_unit(unit) == volts


@pytest.mark.parametrize("unit", ["", "A", "kV", "dB", "counts"])
def test_unknown_unit(unit):
    with pytest.raises(ValueError, match="not a known voltage unit"):
        volts_per_unit(unit)


def test_unit_scale():
    assert unit_scale("uV", "V") == pytest.approx(1e-6, rel=1e-15)
    assert unit_scale("V", "uV") == pytest.approx(1e6, rel=1e-15)
    assert unit_scale("mV", "uV") == pytest.approx(1e3, rel=1e-15)
    assert unit_scale("microvolts", "µV") == 1.0
    assert unit_scale("nV", "mV") == pytest.approx(1e-6, rel=1e-15)


# --------------------------------------------------------------------------- channels


def test_channel_indices_reorders_by_name():
    idx = channel_indices(["Cz", "Fp1", "O1", "Fp2"], ["Fp1", "Fp2", "Cz"], source="s", target="t")
    assert idx.tolist() == [1, 3, 0]
    assert idx.dtype == np.intp


def test_channel_indices_case_insensitive_fallback():
    idx = channel_indices(["FP1", "fp2", "CZ"], ["Fp1", "Fp2", "Cz"], source="s", target="t")
    assert idx.tolist() == [0, 1, 2]


def test_channel_indices_exact_match_wins_over_folded():
    # "FP1" comes first and folds to "fp1", but an exact "Fp1" exists later: exact wins
    idx = channel_indices(["FP1", "Fp1"], ["Fp1", "FP1"], source="s", target="t")
    assert idx.tolist() == [1, 0]


def test_channel_indices_error_lists_missing_and_both_sides():
    with pytest.raises(ModelCardError) as info:
        channel_indices(["Fp1", "Cz"], ["Fp1", "O1", "Cz", "O2"], source="stream 'EEG'", target="model 'net'")
    msg = str(info.value)
    assert "stream 'EEG'" in msg
    assert "model 'net'" in msg
    assert "O1" in msg and "O2" in msg
    assert "lacks 2" in msg
    assert "needs 4" in msg
    assert "Fp1, Cz" in msg  # what the stream does have


def test_channel_indices_error_truncates_long_lists():
    required = [f"E{i}" for i in range(15)]
    with pytest.raises(ModelCardError, match="and 5 more"):
        channel_indices(["X"], required, source="s", target="t")


# --------------------------------------------------------------------------- rates


def test_check_rate_accepts_fast_enough_streams():
    check_rate(1000.0, spec(), BANDPASS, source="s", target="t")
    check_rate(191.0, spec(), BANDPASS, source="s", target="t")  # Nyquist 95.5 > 95
    check_rate(2000.0, spec(), Preprocessing(), source="s", target="t")
    check_rate(1000.0, spec(), Preprocessing(), source="s", target="t")
    check_rate(500.0, spec(), Preprocessing(bandpass=(None, 40.0)), source="s", target="t")


@pytest.mark.parametrize("stream_sfreq", [190.0, 189.9, 100.0])
def test_check_rate_refuses_nyquist_at_or_below_band_edge(stream_sfreq):
    with pytest.raises(ModelCardError, match=r"95 Hz") as info:
        check_rate(stream_sfreq, spec(), BANDPASS, source="amp", target="net")
    assert "amp" in str(info.value) and "net" in str(info.value)


def test_check_rate_refuses_slower_stream_without_low_pass():
    for prep in (Preprocessing(), Preprocessing(bandpass=(1.0, None))):
        with pytest.raises(ModelCardError, match=r"500 Hz.*1000 Hz") as info:
            check_rate(500.0, spec(), prep, source="amp", target="net")
        assert "amp" in str(info.value) and "net" in str(info.value)


@pytest.mark.parametrize("stream_sfreq", [0.0, -1.0])
def test_check_rate_refuses_irregular_stream(stream_sfreq):
    with pytest.raises(ModelCardError, match="irregular"):
        check_rate(stream_sfreq, spec(), Preprocessing(), source="s", target="t")


# --------------------------------------------------------------------------- filters


def test_design_filter_shapes():
    assert design_filter(FS, Preprocessing(), FS) is None
    assert design_filter(FS, Preprocessing(bandpass=(5.0, 95.0)), FS).shape == (4, 6)  # order-4 bandpass
    assert design_filter(FS, BANDPASS, FS).shape == (5, 6)  # + notch
    assert design_filter(FS, Preprocessing(notch=600.0), FS) is None  # notch above Nyquist is skipped
    # anti-alias low-pass when the stream is faster than the model and the card has no low-pass
    sos = design_filter(2000.0, Preprocessing(), 1000.0)
    assert sos is not None
    assert gain(sos, 450.0, fs=2000.0) == pytest.approx(1 / np.sqrt(2), abs=0.01)


@pytest.mark.parametrize("freq", [12.0, 20.0, 30.0, 70.0])
def test_bandpass_pass_band_gain(freq):
    assert gain(design_filter(FS, BANDPASS, FS), freq) == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("freq", [5.0, 95.0])
def test_bandpass_edges_are_minus_3_db(freq):
    assert gain(design_filter(FS, Preprocessing(bandpass=(5.0, 95.0)), FS), freq) == pytest.approx(
        1 / np.sqrt(2), abs=0.01
    )


@pytest.mark.parametrize(("freq", "limit"), [(1.0, 1e-2), (0.5, 2e-3), (300.0, 2e-2), (450.0, 5e-3)])
def test_bandpass_stop_band_gain(freq, limit):
    assert gain(design_filter(FS, BANDPASS, FS), freq) < limit


def test_notch_removes_line_frequency():
    sos = design_filter(FS, BANDPASS, FS)
    assert gain(sos, 50.0) < 0.01
    assert gain(sos, 40.0) > 0.9
    assert gain(sos, 60.0) > 0.9
    # notch only
    assert gain(design_filter(FS, Preprocessing(notch=50.0), FS), 50.0) < 0.01


def test_measured_gain_agrees_with_design():
    sos = design_filter(FS, BANDPASS, FS)
    freqs = np.array([3.0, 10.0, 45.0, 120.0])
    _, h = sps.sosfreqz(sos, worN=freqs, fs=FS)
    for f, expected in zip(freqs, np.abs(h), strict=True):
        assert gain(sos, f) == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize("seed", range(5))
def test_chunked_filter_equals_one_shot(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3000, 4)) + 5.0
    sos = design_filter(FS, BANDPASS, FS)
    whole = CausalFilter(sos, 4).process(x)
    f = CausalFilter(sos, 4)
    pieces = [f.process(x[s]) for s in random_chunks(rng, len(x))]
    chunked = np.concatenate(pieces)
    assert chunked.shape == x.shape
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12)


def test_filter_is_causal():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 2))
    sos = design_filter(FS, BANDPASS, FS)
    y = CausalFilter(sos, 2).process(x)
    for k in (1, 500, 1234, 1999):
        x2 = x.copy()
        x2[k:] = rng.normal(size=(len(x) - k, 2)) * 100
        y2 = CausalFilter(sos, 2).process(x2)
        np.testing.assert_array_equal(y2[:k], y[:k])
        assert not np.allclose(y2[k:], y[k:])


def test_first_sample_init_avoids_transient_on_dc_offset():
    rng = np.random.default_rng(2)
    offset = np.array([0.05, -0.03, 0.2])  # volts: huge DC offsets against µV-level EEG
    x = offset + 1e-6 * rng.normal(size=(2000, 3))
    sos = design_filter(FS, BANDPASS, FS)
    y = CausalFilter(sos, 3).process(x)
    assert np.max(np.abs(y)) < 1e-5  # only the µV noise, nothing of the 50 mV step
    # what a zero initial state would have produced: a big start-up step
    y_zero = sps.sosfilt(sos, x, axis=0)
    assert np.max(np.abs(y_zero)) > 1e-3


def test_first_sample_init_low_pass_keeps_constant():
    sos = design_filter(FS, Preprocessing(bandpass=(None, 40.0)), FS)
    x = np.full((500, 2), [3.0, -7.0])
    np.testing.assert_allclose(CausalFilter(sos, 2).process(x), x, rtol=1e-10)


def test_filter_reset_starts_afresh():
    rng = np.random.default_rng(3)
    sos = design_filter(FS, BANDPASS, FS)
    a, b = rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) + 1.0
    f = CausalFilter(sos, 2)
    f.process(a)
    f.reset()
    np.testing.assert_array_equal(f.process(b), CausalFilter(sos, 2).process(b))


def test_filter_without_sections_is_identity_copy():
    x = np.arange(12.0).reshape(6, 2)
    f = CausalFilter(None, 2)
    y = f.process(x)
    np.testing.assert_array_equal(y, x)
    y[0, 0] = 99.0
    assert x[0, 0] == 0.0  # a copy, not a view


def test_filter_empty_chunk_keeps_state():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(400, 1))
    sos = design_filter(FS, BANDPASS, FS)
    f = CausalFilter(sos, 1)
    assert f.process(np.zeros((0, 1))).shape == (0, 1)
    first = f.process(x[:200])
    assert f.process(np.zeros((0, 1))).shape == (0, 1)
    second = f.process(x[200:])
    np.testing.assert_allclose(np.concatenate([first, second]), CausalFilter(sos, 1).process(x), atol=1e-12, rtol=0)


# --------------------------------------------------------------------------- Preprocessor


def test_preprocessor_picks_scales_and_filters():
    rng = np.random.default_rng(5)
    stream = ["O1", "cz", "FP2", "Fp1"]
    raw = rng.normal(size=(1000, 4)) * 20.0  # µV
    pre = Preprocessor(stream, FS, "uV", spec(), BANDPASS, source="s", target="t")
    assert pre.picks.tolist() == [3, 2, 1]
    assert pre.scale == pytest.approx(1e-6)
    y, finite = pre.process(raw)
    expected = CausalFilter(design_filter(FS, BANDPASS, FS), 3).process(raw[:, [3, 2, 1]] * 1e-6)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-18)
    assert finite.dtype == bool and finite.all() and finite.shape == (1000,)


@pytest.mark.parametrize(
    ("stream_units", "card_units", "factor"), [("uV", "V", 1e-6), ("V", "uV", 1e6), ("mV", "uV", 1e3)]
)
def test_preprocessor_unit_scaling_without_filter(stream_units, card_units, factor):
    raw = np.arange(30.0).reshape(10, 3) - 7.0
    pre = Preprocessor(["Fp1", "Fp2", "Cz"], FS, stream_units, spec(units=card_units), Preprocessing())
    y, _ = pre.process(raw)
    np.testing.assert_allclose(y, raw * factor, rtol=1e-15)


def test_preprocessor_unknown_stream_unit_is_card_error():
    with pytest.raises(ModelCardError, match="furlong"):
        Preprocessor(["Fp1", "Fp2", "Cz"], FS, "furlong", spec(), Preprocessing(), source="amp")


def test_preprocessor_missing_channel():
    with pytest.raises(ModelCardError, match=r"Cz"):
        Preprocessor(["Fp1", "Fp2"], FS, "V", spec(), BANDPASS, source="amp", target="net")


def test_preprocessor_rate_too_low():
    with pytest.raises(ModelCardError, match="Nyquist"):
        Preprocessor(["Fp1", "Fp2", "Cz"], 150.0, "V", spec(), BANDPASS)


def _nan_case():
    rng = np.random.default_rng(6)
    raw = rng.normal(size=(3000, 3)) * 10.0 + 40.0  # µV with DC offset
    bad_rows = [0, 700, 701, 702, 1500, 2999]
    return raw, bad_rows


def test_preprocessor_nan_rows_masked_finite_and_state_not_poisoned():
    raw, bad_rows = _nan_case()
    corrupted = raw.copy()
    repaired = raw.copy()
    corrupted[0] = np.nan  # very first row: held at the initial last-finite value (zeros)
    repaired[0] = 0.0
    for i in bad_rows[1:]:
        corrupted[i] = [np.nan, np.inf, -np.inf][i % 3]
        repaired[i] = repaired[i - 1]  # previous (already repaired) row
    names = ["Fp1", "Fp2", "Cz"]
    y, finite = Preprocessor(names, FS, "uV", spec(), BANDPASS).process(corrupted)
    y_ref, finite_ref = Preprocessor(names, FS, "uV", spec(), BANDPASS).process(repaired)
    assert np.isfinite(y).all()
    assert np.flatnonzero(~finite).tolist() == bad_rows
    assert finite_ref.all()
    np.testing.assert_array_equal(y, y_ref)
    # long after the bad samples the output is that of the repaired signal (not poisoned, not reset)
    np.testing.assert_array_equal(y[2000:2999], y_ref[2000:2999])


def test_preprocessor_partial_nan_row_holds_only_bad_channel():
    rng = np.random.default_rng(7)
    raw = rng.normal(size=(200, 3))
    corrupted = raw.copy()
    corrupted[50, 1] = np.nan
    repaired = raw.copy()
    repaired[50, 1] = raw[49, 1]
    pre = Preprocessor(["Fp1", "Fp2", "Cz"], FS, "V", spec(), Preprocessing())  # no filter: see the repair
    y, finite = pre.process(corrupted)
    np.testing.assert_array_equal(y, repaired)
    assert np.flatnonzero(~finite).tolist() == [50]


def test_preprocessor_nan_at_chunk_start_uses_previous_chunk():
    rng = np.random.default_rng(8)
    raw = rng.normal(size=(3000, 3))
    raw[[100, 101, 1000, 2500, 2501, 2502]] = np.nan
    names = ["Fp1", "Fp2", "Cz"]
    whole, finite_whole = Preprocessor(names, FS, "V", spec(), BANDPASS).process(raw)
    pre = Preprocessor(names, FS, "V", spec(), BANDPASS)
    # chunk boundaries exactly at bad rows, plus random ones
    edges = sorted({0, 100, 101, 1000, 2500, 2501, 3000, *rng.integers(0, 3000, size=20).tolist()})
    parts = [pre.process(raw[a:b]) for a, b in itertools.pairwise(edges)]
    chunked = np.concatenate([p[0] for p in parts])
    finite = np.concatenate([p[1] for p in parts])
    assert np.isfinite(chunked).all()
    np.testing.assert_array_equal(finite, finite_whole)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12)


def test_preprocessor_chunked_equals_one_shot():
    rng = np.random.default_rng(9)
    raw = rng.normal(size=(2500, 5)) * 30.0
    names = ["Cz", "Fp2", "x", "Fp1", "y"]
    whole, _ = Preprocessor(names, FS, "uV", spec(units="uV"), BANDPASS).process(raw)
    pre = Preprocessor(names, FS, "uV", spec(units="uV"), BANDPASS)
    chunked = np.concatenate([pre.process(raw[s])[0] for s in random_chunks(rng, len(raw))])
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- normalisation, softmax


def test_fit_channel_normalization_z_scores_training_data():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(20, 50, 3)) * np.array([1e-5, 3.0, 0.2]) + np.array([5e-6, -10.0, 100.0])
    norm = fit_channel_normalization(X)
    assert norm.kind == "channel"
    assert len(norm.mean) == len(norm.std) == 3
    Z = normalize(X, norm)
    np.testing.assert_allclose(Z.mean(axis=(0, 1)), 0.0, atol=1e-10)
    np.testing.assert_allclose(Z.std(axis=(0, 1)), 1.0, rtol=1e-10)
    np.testing.assert_allclose(norm.mean, X.mean(axis=(0, 1)), rtol=1e-12)


def test_fit_channel_normalization_constant_channel():
    X = np.zeros((4, 10, 2))
    X[..., 1] = np.arange(10.0)
    norm = fit_channel_normalization(X)
    assert norm.std[0] == 1.0  # no division by zero
    assert np.isfinite(normalize(X, norm)).all()


def test_normalize_is_per_channel_and_broadcasts():
    norm = Normalization(kind="channel", mean=[1.0, -2.0], std=[2.0, 4.0])
    x = np.array([[3.0, 2.0], [1.0, -2.0]])
    np.testing.assert_allclose(normalize(x, norm), [[1.0, 1.0], [0.0, 0.0]])
    batch = np.stack([x, x, x])
    np.testing.assert_allclose(normalize(batch, norm), np.stack([normalize(x, norm)] * 3))


def test_normalize_none_is_identity():
    x = np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(normalize(x, Normalization()), x)


def test_softmax_stable_for_large_logits():
    logits = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1001.0, -1002.0], [1e300, 0.0, -1e300]])
    p = softmax(logits)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(axis=-1), 1.0)
    np.testing.assert_allclose(p[0], softmax(np.array([0.0, 1.0, 2.0])), rtol=1e-12)
    np.testing.assert_allclose(p[1], softmax(np.array([0.0, -1.0, -2.0])), rtol=1e-12)
    np.testing.assert_allclose(p[2], [1.0, 0.0, 0.0])


def test_softmax_values_and_axis():
    x = np.array([0.0, np.log(3.0)])
    np.testing.assert_allclose(softmax(x), [0.25, 0.75])
    m = np.array([[0.0, 0.0], [np.log(3.0), 0.0]])
    np.testing.assert_allclose(softmax(m, axis=0), [[0.25, 0.5], [0.75, 0.5]])


# --------------------------------------------------------------------------- today's numbers (issue 12 item 5)

REFERENCE = Path(__file__).with_name("reference_dsp.npz")

#: The cases captured in reference_dsp.npz with the hand-written Welch and filter design (commit 68a0f84), before
#: both moved to scipy.signal; the inputs are regenerated by :func:`deterministic_windows`.
WELCH_CASES = {
    "deap": (128.0, FeatureSpec(bands=list(DEFAULT_BANDS), window=2.0, hop=0.25, segment=1.0)),
    "dc_nyq": (100.0, FeatureSpec(bands=[(0.0, 5.0), (5.0, 30.0), (30.0, 51.0)], window=2.0, hop=0.5, segment=0.5)),
    "odd": (101.0, FeatureSpec(bands=[(0.0, 3.0), (3.0, 20.0), (20.0, 50.6)], window=1.5, hop=0.5, segment=0.51)),
}
DESIGN_CASES = {
    "bp_notch": (1000.0, Preprocessing(bandpass=(5.0, 95.0), notch=50.0), 1000.0),
    "hp": (500.0, Preprocessing(bandpass=(1.0, None), notch=60.0, filter="causal-butter-2"), 500.0),
    "lp": (250.0, Preprocessing(bandpass=(None, 40.0)), 250.0),
    "aa": (2000.0, Preprocessing(), 1000.0),
    "aa_hp": (2000.0, Preprocessing(bandpass=(0.5, None), notch=50.0), 250.0),
    "valence": (128.0, Preprocessing(bandpass=(0.3, 45.0)), 128.0),
}


def deterministic_windows(n_win: int, n_times: int, n_ch: int, fs: float) -> np.ndarray:
    """Broadband test windows without a random generator (so the reference stores no inputs)."""
    k = np.arange(n_win * n_times * n_ch, dtype=np.float64).reshape(n_win, n_times, n_ch)
    t = np.arange(n_times)[None, :, None] / fs
    tones = sum(np.sin(2 * np.pi * f * t + p) for f, p in ((2.3, 0.1), (10.7, 1.0), (22.1, 2.0), (41.9, 0.5)))
    return tones * (1 + np.arange(n_ch)) + np.sin(k * k * 0.0137 + k * 0.61)


@pytest.mark.parametrize("case", sorted(WELCH_CASES))
def test_scipy_welch_band_power_equals_todays_numbers(case):
    fs, feature_spec = WELCH_CASES[case]
    w = deterministic_windows(5, round(feature_spec.window * fs), 4, fs) * np.array([1e-5, 1.0, 3.0, 20.0]) + 0.3
    w[3, :, 2] = 0.0  # a channel without power: all its bands are 0
    expected = np.load(REFERENCE)[f"{case}_out"]
    got = band_power_windows(w, fs, feature_spec)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)  # in fact equal to rounding


@pytest.mark.parametrize("case", sorted(DESIGN_CASES))
def test_filter_design_equals_todays_sections(case):
    fs, prep, model_fs = DESIGN_CASES[case]
    np.testing.assert_allclose(design_filter(fs, prep, model_fs), np.load(REFERENCE)[f"sos_{case}"], rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- anti-alias path before interpolation


@pytest.mark.parametrize("bandpass", [(5.0, 60.0), (1.0, 50.0), (None, 55.0)])
def test_check_rate_refuses_band_edge_at_or_above_model_nyquist(bandpass):
    # a 100 Hz model grid cannot carry 50 Hz or more, whatever the stream rate
    for stream_sfreq in (100.0, 1000.0):
        with pytest.raises(ModelCardError, match=r"Nyquist 50 Hz.*inconsistent") as info:
            check_rate(stream_sfreq, spec(sfreq=100.0), Preprocessing(bandpass=bandpass), source="amp", target="net")
        assert "net" in str(info.value)


def test_check_rate_refuses_high_pass_above_anti_alias_cutoff():
    prep = Preprocessing(bandpass=(120.0, None))  # fine at 250 Hz, but no room below 0.45 × 250 Hz
    check_rate(250.0, spec(sfreq=250.0), prep, source="amp", target="net")
    with pytest.raises(ModelCardError, match=r"anti-alias low-pass at 112.5 Hz.*120 Hz") as info:
        check_rate(1000.0, spec(sfreq=250.0), prep, source="amp", target="net")
    assert "amp" in str(info.value) and "net" in str(info.value)


def test_design_filter_refuses_interpolation_without_low_pass_below_model_nyquist():
    with pytest.raises(ModelCardError, match=r"without a low-pass below its Nyquist"):
        design_filter(1000.0, Preprocessing(bandpass=(1.0, 60.0)), 100.0)


ACCEPTED = [
    (stream, model, prep)
    for stream, model in ((2000.0, 1000.0), (1000.0, 250.0), (512.0, 500.0), (1000.0, 128.0))
    for prep in (
        Preprocessing(),
        Preprocessing(notch=50.0),
        Preprocessing(bandpass=(0.5, None), notch=60.0),
        Preprocessing(bandpass=(1.0, 40.0)),
        Preprocessing(bandpass=(None, 0.49 * model), filter="causal-butter-2"),
    )
]


@pytest.mark.parametrize(("stream", "model", "prep"), ACCEPTED)
def test_faster_stream_always_low_passed_below_model_nyquist(stream, model, prep):
    check_rate(stream, spec(sfreq=model), prep, source="s", target="t")
    stages = filter_stages(stream, prep, model)
    low_edges = [s.edges[-1] for s in stages if s.btype in ("lowpass", "bandpass")]
    assert low_edges and low_edges[0] < model / 2
    # the chain attenuates everything between the model's Nyquist and the stream's (what interpolation folds back)
    # by at least the -3 dB of a Butterworth edge below it, and more the further above it
    freqs = np.linspace(model / 2, 0.999 * min(stream / 2, model), 6)
    _, h = sps.sosfreqz(design_filter(stream, prep, model), worN=freqs, fs=stream)
    assert np.all(np.abs(h) < 0.72)
    assert np.all(np.diff(np.abs(h)) < 1e-12)


# --------------------------------------------------------------------------- polyphase resampling (pure function)


def _tone(freq: float, n: int, fs: float, t0: float = 0.0) -> np.ndarray:
    return np.sin(2 * np.pi * freq * (t0 + np.arange(n) / fs))[:, None] * np.array([1.0, -2.0])


@pytest.mark.parametrize(
    ("fs_in", "fs_out", "freq"), [(1000.0, 250.0, 30.0), (512.0, 500.0, 95.0), (250.0, 1000.0, 40.0)]
)
def test_resample_epoch_keeps_pass_band_tone_on_model_grid(fs_in, fs_out, freq):
    n_times = 100
    need, before, after = polyphase_span(fs_in, fs_out, n_times)
    t0 = 0.3  # the epoch's first stream sample
    segment = _tone(freq, before + need + after, fs_in, t0 - before / fs_in)
    got = resample_epoch(segment, fs_in, fs_out, n_times)
    np.testing.assert_allclose(got, _tone(freq, n_times, fs_out, t0), atol=5e-3)


def test_resample_epoch_removes_what_would_alias_where_interpolation_does_not():
    fs_in, fs_out, n_times = 1000.0, 250.0, 100
    need, before, after = polyphase_span(fs_in, fs_out, n_times)
    segment = _tone(200.0, before + need + after, fs_in)  # above the 125 Hz model Nyquist: would fold to 50 Hz
    assert np.max(np.abs(resample_epoch(segment, fs_in, fs_out, n_times))) < 0.02
    grid = (before + np.arange(n_times) * 4) / fs_in
    linear = np.interp(grid, np.arange(len(segment)) / fs_in, segment[:, 0])
    assert np.max(np.abs(linear)) > 0.5  # what the epocher relies on the causal low-pass to prevent


def test_polyphase_factors_and_refusals():
    assert polyphase_factors(1000.0, 250.0) == (1, 4)
    assert polyphase_factors(512.0, 500.0) == (125, 128)
    assert polyphase_factors(250.0, 1000.0) == (4, 1)
    with pytest.raises(ModelCardError, match=r"333.333 Hz is not a ratio"):
        polyphase_factors(1000.0, 333.3333)
    with pytest.raises(ValueError, match=r"segment must be \(\d+, n_channels\)"):
        resample_epoch(np.zeros((10, 2)), 1000.0, 250.0, 100)
