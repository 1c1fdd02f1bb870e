"""Valence data: DEAP pickle and per-trial .npz loaders, label alignment, the synthetic generator."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from bci_stream.recordings import Recording
from training.valence.data import (
    BIOSEMI32,
    DEAP_CHANNELS,
    FeatureSetup,
    SynthConfig,
    ValenceDataError,
    ValenceTrial,
    load_deap,
    make_sequence,
    make_sequences,
    read_trial_folder,
    read_trial_npz,
    synth_trial,
    write_trial_npz,
)

SETUP = FeatureSetup(channels=list(DEAP_CHANNELS))


def fake_deap(path: Path, n_trials: int = 2, seed: int = 0) -> np.ndarray:
    """A tiny DEAP-format file: data (n_trials, 40, 8064) in µV, labels (n_trials, 4) on 1–9."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((n_trials, 40, 8064)).astype(np.float32) * 20.0
    labels = rng.uniform(1, 9, (n_trials, 4)).round(2)
    with path.open("wb") as fh:
        pickle.dump({"data": data, "labels": labels}, fh, protocol=2)
    return labels


def test_deap_loader_reads_the_pickle(tmp_path: Path) -> None:
    labels = fake_deap(tmp_path / "s05.dat")
    trials = load_deap(tmp_path / "s05.dat")
    assert len(trials) == 2
    t = trials[1]
    assert t.subject == "s05" and t.trial == "s05/t02"
    assert t.recording.sfreq == 128.0 and t.recording.units == "uV"
    assert t.recording.ch_names == list(DEAP_CHANNELS)
    assert t.recording.data.shape == (8064, 32)
    with (tmp_path / "s05.dat").open("rb") as fh:
        raw = pickle.load(fh, encoding="latin1")
    np.testing.assert_allclose(t.recording.data, raw["data"][1, :32].T)
    assert t.start == 3.0
    np.testing.assert_allclose(t.labels, labels[1, 0])  # valence, constant
    seq = make_sequence(t, SETUP)
    assert seq.times[0] == pytest.approx(5.0)  # windows start after the 3 s baseline
    assert seq.times[-1] == pytest.approx(63.0)
    assert len(seq) == int((63.0 - 5.0) / 0.25) + 1
    np.testing.assert_allclose(seq.y, labels[1, 0], rtol=1e-6)
    assert seq.X.shape == (len(seq), 192) and seq.teacher is None
    arousal = load_deap(tmp_path / "s05.dat", label="arousal")
    np.testing.assert_allclose(arousal[0].labels, labels[0, 1])


def test_deap_loader_refuses_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "s01.dat"
    with bad.open("wb") as fh:
        pickle.dump({"data": np.zeros((2, 40, 10))}, fh)
    with pytest.raises(ValenceDataError, match="'data' and 'labels'"):
        load_deap(bad)
    (tmp_path / "s02.dat").write_bytes(b"not a pickle")
    with pytest.raises(ValenceDataError, match="cannot unpickle"):
        load_deap(tmp_path / "s02.dat")


def ramp_trial(seconds: float = 8.0, sfreq: float = 128.0, offset: float = 0.0) -> ValenceTrial:
    rng = np.random.default_rng(0)
    n = int(seconds * sfreq)
    rec = Recording(rng.standard_normal((n, 32)) * 1e-5, sfreq, list(DEAP_CHANNELS), ["eeg"] * 32, "V", source="ramp")
    label_times = offset + np.arange(0, seconds, 0.25)
    teacher = np.stack([label_times, 2 * label_times], axis=1)
    return ValenceTrial(rec, "p07", "p07/clip3", label_times, 0.1 * label_times, teacher)


def test_npz_round_trip_and_alignment(tmp_path: Path) -> None:
    trial = ramp_trial(offset=0.1)  # labels at 0.1, 0.35, …: interpolated at the window ends
    path = write_trial_npz(trial, tmp_path / "p07_clip3.npz")
    back = read_trial_npz(path)
    assert back.subject == "p07" and back.trial == "p07/clip3"
    np.testing.assert_allclose(back.recording.data, trial.recording.data)
    assert back.recording.ch_names == list(DEAP_CHANNELS) and back.recording.sfreq == 128.0
    np.testing.assert_allclose(back.labels, trial.labels)
    np.testing.assert_allclose(back.label_times, trial.label_times)
    assert back.teacher is not None and trial.teacher is not None
    np.testing.assert_allclose(back.teacher, trial.teacher, rtol=1e-6)
    seq = make_sequence(back, SETUP)
    assert seq.teacher is not None
    assert seq.times[0] == pytest.approx(2.0) and seq.times[-1] <= trial.label_times[-1] + 0.125
    np.testing.assert_allclose(seq.y, 0.1 * seq.times, atol=1e-6)  # linear labels: interpolation is exact
    np.testing.assert_allclose(seq.teacher, np.stack([seq.times, 2 * seq.times], axis=1), atol=1e-5)
    assert read_trial_folder(tmp_path)[0].trial == "p07/clip3"


def test_npz_missing_key_is_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", eeg=np.zeros((10, 2)), sfreq=128.0)
    with pytest.raises(ValenceDataError, match=r"missing key.*ch_names"):
        read_trial_npz(tmp_path / "bad.npz")


def test_labels_must_fit_the_trial() -> None:
    with pytest.raises(ValenceDataError, match="increase"):
        ValenceTrial(ramp_trial().recording, "s", "t", np.array([1.0, 0.5]), np.array([0.0, 0.0]))
    late = ValenceTrial(ramp_trial().recording, "s", "t", np.array([20.0, 30.0]), np.array([0.0, 1.0]))
    with pytest.raises(ValenceDataError, match="no 2 s window"):
        make_sequence(late, SETUP)
    trial = ramp_trial()
    with pytest.raises(ValenceDataError, match="unique"):
        make_sequences([trial, trial], SETUP)


def test_a_hole_in_a_trial_keeps_its_longest_unbroken_stretch(caplog: pytest.LogCaptureFixture) -> None:
    """Live, the daemon restarts the model's context after a hole; a training sequence must not run across one."""
    cfg = SynthConfig(seconds=30.0, sfreq=128.0)
    trial = synth_trial(cfg, 1, 1)
    rec = trial.recording
    hole = (round(8.0 * rec.sfreq), round(10.0 * rec.sfreq))
    data = rec.data.copy()
    data[hole[0] : hole[1]] = np.nan
    trial.recording = Recording(data, rec.sfreq, rec.ch_names, rec.ch_types, rec.units, source="holey", gaps=(hole,))
    with caplog.at_level("WARNING"):
        seq = make_sequence(trial, SETUP)
    hop = SETUP.spec.hop
    np.testing.assert_allclose(np.diff(seq.times), hop)  # one unbroken run of windows
    assert seq.times[0] >= 10.0 + SETUP.spec.window - 1e-9  # the longer side: after the hole (20 s vs 8 s)
    assert np.isfinite(seq.X).all()
    assert "1 hole(s)" in caplog.text and "holey" in caplog.text


def test_synthetic_is_deterministic_and_rate_and_names_are_free() -> None:
    cfg = SynthConfig(seconds=6.0, sfreq=128.0, teacher_dim=8)
    a, b = synth_trial(cfg, 1, 1), synth_trial(cfg, 1, 1)
    np.testing.assert_array_equal(a.recording.data, b.recording.data)
    np.testing.assert_array_equal(a.teacher, b.teacher)
    c = synth_trial(SynthConfig(seconds=6.0, sfreq=128.0, teacher_dim=8, seed=1), 1, 1)
    assert not np.allclose(a.recording.data, c.recording.data)
    assert a.teacher is not None and a.teacher.shape == (len(a.labels), 8) and (a.teacher >= 0).all()
    k = synth_trial(SynthConfig(seconds=6.0, sfreq=1000.0, channels="biosemi32", teacher_dim=8), 1, 1)
    assert k.recording.ch_names == list(BIOSEMI32) and k.recording.sfreq == 1000.0
    assert k.recording.data.shape == (6000, 32)
    np.testing.assert_allclose(k.labels, a.labels)  # the latent states do not depend on rate or names


def test_synthetic_plants_frontal_alpha_asymmetry() -> None:
    """Relative alpha at right-frontal minus left-frontal channels rises with the valence label."""
    cfg = SynthConfig(seconds=30.0, sfreq=128.0, teacher_dim=8, label_noise=0.0)
    seqs = make_sequences([synth_trial(cfg, 1, k) for k in range(1, 5)], SETUP)
    idx = {n: i for i, n in enumerate(DEAP_CHANNELS)}
    alpha = 2
    right = [idx[n] * 6 + alpha for n in ("F4", "F8", "AF4", "FC6")]
    left = [idx[n] * 6 + alpha for n in ("F3", "F7", "AF3", "FC5")]
    X = np.concatenate([s.X for s in seqs])
    y = np.concatenate([s.y for s in seqs])
    asym = X[:, right].mean(axis=1) - X[:, left].mean(axis=1)
    assert np.corrcoef(asym, y)[0, 1] > 0.3
