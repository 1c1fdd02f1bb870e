"""Valence data: trials, the synthetic generator, DEAP and per-trial ``.npz`` loaders, feature sequences.

A :class:`ValenceTrial` is one continuous EEG recording with a valence trace (times in seconds from the
recording's first sample) and, optionally, a teacher's per-step features at the same times. Features come from
:func:`bci_stream.features.features_from_recording` — the daemon's own code — so offline equals online.
:func:`make_sequences` aligns labels and teacher features to the feature windows (linear interpolation at each
window's end time; windows outside the labelled span or starting before ``trial.start`` are left out).

Per-trial ``.npz`` format (continuous labels, MAHNOB-HCI style)
--------------------------------------------------------------
One file per trial, any name ending ``.npz``, read with ``numpy.load(allow_pickle=False)``:

============== ========================= ==========================================================
key            shape / type              meaning
============== ========================= ==========================================================
eeg            (n_samples, n_channels)   EEG samples, float
sfreq          ()  float                 sampling rate, Hz
ch_names       (n_channels,) str         channel labels (EEG only, or mark others in ``ch_types``)
units          ()  str                   ``V``, ``mV`` or ``uV``
valence        (n_labels,) float         continuous valence (e.g. 4 Hz annotation), any scale
valence_times  (n_labels,) float         time of each label, s from the first EEG sample, increasing
subject        ()  str                   subject id (the LOSO unit)
trial          ()  str                   trial id, unique within the data set
ch_types       (n_channels,) str         optional, default all ``eeg``
teacher        (n_labels, d) float       optional: teacher per-step features at ``valence_times``
start          ()  float                 optional: first usable time, s (windows start at/after it)
============== ========================= ==========================================================

For MAHNOB-HCI, cut the BDF at the trial's start/end markers, take the 32 EEG channels, and store the 4 Hz
valence annotations with their times from the cut's first sample. ``training synth`` writes this format too.

DEAP
----
``sNN.dat`` (pickle, latin1): ``data`` (40 trials, 40 channels, 8064 samples at 128 Hz; first 3 s baseline;
channels 0–31 EEG in :data:`DEAP_CHANNELS` order, µV in the preprocessed release), ``labels`` (40, 4): valence,
arousal, dominance, liking on 1–9. Valence is a constant target per trial; the filter runs over the baseline and
windows start at 3 s. The file is read by :class:`_NumpyUnpickler`, which builds numpy arrays, dtypes and plain
containers and refuses every other global a pickle names (a downloaded ``.dat`` cannot run code); nothing in
``bci_stream`` reads pickles.

The synthetic model
-------------------
Per trial, a slowly varying valence ``v(t) ∈ (−1, 1)`` (trial offset + smooth fluctuation, ~6 s time scale) and
:data:`N_NUISANCE` nuisance states ``u_k(t)`` (arousal-like, ~4 s) modulate the log power of band-limited
sources in each of the six bands on every channel:

- ``log P[c, b](t) = base[s, c, b] + effect · gain[s] · pattern[c, b] · v(t) + nuisance · Σ_k Q_k[c, b] · u_k(t)``
- ``pattern``: frontal alpha asymmetry (positive valence → less left-frontal, more right-frontal alpha),
  frontal-midline theta up, temporal beta/gamma up; ``Q_k`` random (fixed by the world seed);
- per subject: baseline band levels and the valence gain differ (0.6–1.4);
- plus white sensor noise and a large common-mode signal that the average reference removes.

Labels are ``v(t)`` plus smooth annotation noise (``label_noise``). The synthetic *teacher* (a stand-in for a
face-video network's per-step 128-d TCN features) sees ``v`` cleanly: ``softplus(A·v + B·u + C·f + bias + ε)``
with a face-only state ``f`` and small noise ``ε`` — it carries valence information the noisy labels lack, which
is what distillation can pass on. Channels play the roles of :data:`DEAP_CHANNELS` in order, whatever their
names (:data:`BIOSEMI32` gives 32 BioSemi-128 names at nearby positions). Deterministic by seed; samples in V.
"""

from __future__ import annotations

import codecs
import logging
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

from bci_stream.card import FeatureSpec, Preprocessing
from bci_stream.features import default_feature_spec, default_preprocessing, features_from_recording
from bci_stream.recordings import Recording

from ..errors import TrainingDataError

log = logging.getLogger(__name__)

#: DEAP's 32 EEG channels in file order (Geneva order).
DEAP_CHANNELS: tuple[str, ...] = (
    "Fp1", "AF3", "F3", "F7", "FC5", "FC1", "C3", "T7", "CP5", "CP1", "P3", "P7", "PO3", "O1", "Oz", "Pz",
    "Fp2", "AF4", "Fz", "F4", "F8", "FC6", "FC2", "Cz", "C4", "T8", "CP6", "CP2", "P4", "P8", "PO4", "O2",
)  # fmt: skip

#: 32 BioSemi-128 channels, the i-th nearest to the i-th of :data:`DEAP_CHANNELS` (one-to-one assignment
#: minimising angular distance between MNE's ``standard_1020`` and ``biosemi128`` positions, each centred on its
#: fitted sphere). The shipped demo valence model uses these, so it runs on the 128-channel demo recording.
BIOSEMI32: tuple[str, ...] = (
    "C29", "C28", "C32", "D7", "D10", "C24", "D19", "D23", "D26", "D16", "A7", "D31", "A17", "A16", "A22", "A4",
    "C16", "C15", "C21", "C10", "C7", "B29", "C11", "A1", "B22", "B26", "B16", "B2", "B4", "B11", "A30", "A29",
)  # fmt: skip

CHANNEL_SETS: dict[str, tuple[str, ...]] = {"deap": DEAP_CHANNELS, "biosemi32": BIOSEMI32}

DEAP_SFREQ = 128.0
DEAP_BASELINE = 3.0  # s
DEAP_LABELS = ("valence", "arousal", "dominance", "liking")

N_NUISANCE = 3
LABEL_RATE = 4.0  # Hz, the synthetic label / teacher grid
WORLD_SEED = 20180205


class ValenceDataError(TrainingDataError):
    """Files or trials that cannot give a valence data set (the message names the file and the problem)."""


# ----------------------------------------------------------------------------------------------------- trials


@dataclass
class ValenceTrial:
    """One continuous trial: EEG, valence trace, optional teacher features (times from the first sample)."""

    recording: Recording
    subject: str
    trial: str
    label_times: np.ndarray  # (n_labels,) s
    labels: np.ndarray  # (n_labels,)
    teacher: np.ndarray | None = None  # (n_labels, d)
    start: float = 0.0  # s: windows must start at or after this
    channels: list[str] | None = None  # EEG channels to use (default: all channels of type eeg)

    def __post_init__(self) -> None:
        self.label_times = np.asarray(self.label_times, dtype=np.float64)
        self.labels = np.asarray(self.labels, dtype=np.float64)
        where = f"trial {self.trial!r} ({self.recording.source})"
        if self.label_times.ndim != 1 or self.label_times.shape != self.labels.shape or len(self.labels) < 1:
            raise ValenceDataError(
                f"{where}: valence {self.labels.shape} and valence_times {self.label_times.shape} must be equal 1-d"
            )
        if len(self.label_times) > 1 and np.any(np.diff(self.label_times) <= 0):
            raise ValenceDataError(f"{where}: valence_times must increase strictly")
        if not np.all(np.isfinite(self.labels)):
            raise ValenceDataError(f"{where}: valence has non-finite values")
        if self.teacher is not None:
            self.teacher = np.asarray(self.teacher, dtype=np.float64)
            if self.teacher.ndim != 2 or len(self.teacher) != len(self.labels):
                raise ValenceDataError(
                    f"{where}: teacher features {self.teacher.shape} must be (n_labels={len(self.labels)}, d)"
                )


@dataclass
class ValenceSequence:
    """Features of one trial aligned with its labels: ``X`` (steps, n_features), ``y`` (steps,)."""

    subject: str
    trial: str
    times: np.ndarray
    X: np.ndarray
    y: np.ndarray
    teacher: np.ndarray | None = None  # (steps, d)

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class FeatureSetup:
    """How features were computed: spec, preprocessing, channels (recorded in checkpoints and cards)."""

    spec: FeatureSpec = field(default_factory=default_feature_spec)
    preprocessing: Preprocessing = field(default_factory=default_preprocessing)
    channels: list[str] = field(default_factory=lambda: list(DEAP_CHANNELS))


def _interp_rows(t: np.ndarray, tp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Linear interpolation of the rows of ``fp`` (len(tp), ...) at times ``t``."""
    if len(tp) == 1:
        return np.repeat(fp[:1], len(t), axis=0)
    idx = np.clip(np.searchsorted(tp, t, side="right") - 1, 0, len(tp) - 2)
    w = (t - tp[idx]) / (tp[idx + 1] - tp[idx])
    w = np.clip(w, 0.0, 1.0).reshape((-1,) + (1,) * (fp.ndim - 1))
    return np.asarray(fp[idx] * (1 - w) + fp[idx + 1] * w)


def _longest_stretch(
    times: np.ndarray, X: np.ndarray, hop: float, trial: ValenceTrial
) -> tuple[np.ndarray, np.ndarray]:
    """The longest run of windows one hop apart. After a hole in the recording the daemon restarts the model's
    context, so a sequence that ran on across the hole would train the model on what it never sees live."""
    cuts = np.flatnonzero(np.diff(times) > 1.5 * hop) + 1
    if not len(cuts):
        return times, X
    runs = np.split(np.arange(len(times)), cuts)
    best = max(runs, key=len)
    log.warning(
        "trial %r (%s): the recording has %d hole(s) inside the labelled span; training on its longest "
        "unbroken stretch, %.2f-%.2f s (%d of %d windows)",
        trial.trial,
        trial.recording.source,
        len(cuts),
        times[best[0]],
        times[best[-1]],
        len(best),
        len(times),
    )
    return times[best], X[best]


def make_sequence(trial: ValenceTrial, setup: FeatureSetup) -> ValenceSequence:
    """Features of ``trial`` (the daemon's pipeline) with labels and teacher features at the window ends."""
    channels = trial.channels if trial.channels is not None else setup.channels
    times, X = features_from_recording(
        trial.recording, setup.spec, channels=channels, preprocessing=setup.preprocessing
    )
    tol = setup.spec.hop / 2
    keep = (
        (times - setup.spec.window >= trial.start - 1e-9)
        & (times >= trial.label_times[0] - tol)
        & (times <= trial.label_times[-1] + tol)
    )
    if not keep.any():
        raise ValenceDataError(
            f"trial {trial.trial!r} ({trial.recording.source}): no {setup.spec.window:g} s window fits between "
            f"start {trial.start:g} s, labels {trial.label_times[0]:g}–{trial.label_times[-1]:g} s and the end "
            f"of the recording ({trial.recording.duration:g} s)"
        )
    times, X = times[keep], X[keep]
    times, X = _longest_stretch(times, X, setup.spec.hop, trial)
    y = _interp_rows(times, trial.label_times, trial.labels)
    teacher = None if trial.teacher is None else _interp_rows(times, trial.label_times, trial.teacher)
    return ValenceSequence(trial.subject, trial.trial, times, X.astype(np.float32), y.astype(np.float32), teacher)


def make_sequences(trials: Sequence[ValenceTrial], setup: FeatureSetup | None = None) -> list[ValenceSequence]:
    """:func:`make_sequence` for every trial; asserts trial ids are unique (the unit of every split)."""
    setup = setup or FeatureSetup()
    ids = [t.trial for t in trials]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValenceDataError(f"trial ids must be unique across the data set; repeated: {dupes[:5]}")
    seqs = []
    for i, trial in enumerate(trials):
        seqs.append(make_sequence(trial, setup))
        if (i + 1) % 20 == 0 or i + 1 == len(trials):
            log.info("features: %d/%d trials", i + 1, len(trials))
    return seqs


# -------------------------------------------------------------------------------------------------- synthetic


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of a synthetic valence data set (see the module docstring for the model)."""

    subjects: int = 10
    trials: int = 8  # per subject
    seconds: float = 60.0  # per trial
    sfreq: float = 128.0
    channels: str = "deap"  # a key of CHANNEL_SETS
    teacher_dim: int = 128
    effect: float = 0.6  # valence effect on log band power at |pattern| = 1
    nuisance: float = 0.5  # nuisance effect on log band power
    label_noise: float = 0.6  # std of the smooth annotation noise
    label_bias: float = 0.0  # std of a per-trial annotation offset (the rater's bias on that trial)
    teacher_noise: float = 0.3  # std of the per-step teacher feature noise
    teacher_scale: float = 1.0  # scale of the teacher features (sets how much the L1 term weighs at a given λ)
    seed: int = 0

    def channel_names(self) -> list[str]:
        if self.channels not in CHANNEL_SETS:
            raise ValueError(f"unknown channel set {self.channels!r}; known: {', '.join(CHANNEL_SETS)}")
        return list(CHANNEL_SETS[self.channels])


_BAND_EDGES = ((0.3, 4.0), (4.0, 8.0), (8.0, 12.0), (12.0, 18.0), (18.0, 30.0), (30.0, 45.0))
_BAND_UV = np.array([10.0, 6.0, 7.0, 4.0, 3.0, 1.5])  # µV RMS per band at baseline


def valence_pattern() -> np.ndarray:
    """(32, 6) effect of valence on log band power per channel (DEAP channel roles) and band."""
    idx = {n: i for i, n in enumerate(DEAP_CHANNELS)}
    p = np.zeros((len(DEAP_CHANNELS), len(_BAND_EDGES)))
    for name in ("Fp1", "AF3", "F3", "F7", "FC5", "FC1"):
        p[idx[name], 2] = -1.0  # left-frontal alpha down with positive valence
    for name in ("Fp2", "AF4", "F4", "F8", "FC6", "FC2"):
        p[idx[name], 2] = +1.0  # right-frontal alpha up
    for name in ("Fz", "FC1", "FC2", "AF3", "AF4"):
        p[idx[name], 1] += 0.7  # frontal-midline theta
    for name in ("T7", "T8", "CP5", "CP6"):
        p[idx[name], 4] += 0.4  # temporal high beta
        p[idx[name], 5] += 0.7  # temporal gamma
    return p


@dataclass(frozen=True)
class _SynthWorld:
    pattern: np.ndarray  # (32, 6)
    nuisance: np.ndarray  # (K, 32, 6)
    spatial_alpha: np.ndarray  # (32,) posterior alpha emphasis
    teacher_a: np.ndarray  # (d,)
    teacher_b: np.ndarray  # (d, K)
    teacher_c: np.ndarray  # (d,)
    teacher_bias: np.ndarray  # (d,)


def _synth_world(teacher_dim: int) -> _SynthWorld:
    rng = np.random.default_rng(np.random.SeedSequence([WORLD_SEED, teacher_dim]))
    n_ch, n_b = len(DEAP_CHANNELS), len(_BAND_EDGES)
    posterior = np.array([1.6 if n.startswith(("O", "PO", "P")) else 1.0 for n in DEAP_CHANNELS])
    return _SynthWorld(
        pattern=valence_pattern(),
        nuisance=rng.standard_normal((N_NUISANCE, n_ch, n_b)),
        spatial_alpha=posterior,
        teacher_a=rng.standard_normal(teacher_dim) * 2.0,
        teacher_b=rng.standard_normal((teacher_dim, N_NUISANCE)) * 0.4,
        teacher_c=rng.standard_normal(teacher_dim) * 0.4,
        teacher_bias=rng.standard_normal(teacher_dim) * 0.5,
    )


def _smooth(rng: np.random.Generator, n: int, sigma_steps: float, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Smooth Gaussian noise along axis 0 with unit standard deviation (over the draw)."""
    pad = int(4 * sigma_steps) + 1
    x = gaussian_filter1d(rng.standard_normal((n + 2 * pad, *shape)), sigma_steps, axis=0, mode="wrap")[pad:-pad]
    return np.asarray(x / (x.std() + 1e-12))


def _band_noise(rng: np.random.Generator, n: int, sfreq: float, n_ch: int, lo: float, hi: float) -> np.ndarray:
    """(n, n_ch) white noise band-limited to [lo, hi) Hz by an FFT mask, unit variance per channel."""
    freqs = np.fft.rfftfreq(n, 1.0 / sfreq)
    spec = np.fft.rfft(rng.standard_normal((n, n_ch)), axis=0)
    spec[(freqs < lo) | (freqs >= hi)] = 0.0
    x = np.fft.irfft(spec, n=n, axis=0)
    return np.asarray(x / (x.std(axis=0, keepdims=True) + 1e-30))


def synth_trial(config: SynthConfig, subject: int, trial: int) -> ValenceTrial:
    """One synthetic trial (deterministic in ``config.seed``, ``subject``, ``trial``)."""
    names = config.channel_names()
    world = _synth_world(config.teacher_dim)
    n_ch, n_b = len(names), len(_BAND_EDGES)
    if config.sfreq / 2 <= _BAND_EDGES[-1][1]:
        raise ValueError(f"sfreq {config.sfreq:g} Hz is too low for bands up to {_BAND_EDGES[-1][1]:g} Hz")
    srng = np.random.default_rng(np.random.SeedSequence([WORLD_SEED, config.seed, 1, subject]))
    base = np.log(_BAND_UV[None, :] ** 2) + 0.3 * srng.standard_normal((n_ch, n_b))
    base[:, 2] += 2 * np.log(world.spatial_alpha)
    gain = srng.uniform(0.6, 1.4)
    # latent states, labels and teacher on the 4 Hz grid (their own stream: independent of rate and names)
    lrng = np.random.default_rng(np.random.SeedSequence([WORLD_SEED, config.seed, 2, subject, trial]))
    n_grid = int(np.floor(config.seconds * LABEL_RATE)) + 1
    grid = np.arange(n_grid) / LABEL_RATE
    offset = lrng.normal(0.0, 0.6)
    v = np.tanh(offset + 0.6 * _smooth(lrng, n_grid, 6.0 * LABEL_RATE))
    u = lrng.normal(0.0, 0.5, N_NUISANCE) + _smooth(lrng, n_grid, 4.0 * LABEL_RATE, (N_NUISANCE,))
    face = _smooth(lrng, n_grid, 3.0 * LABEL_RATE)
    labels = v + config.label_noise * _smooth(lrng, n_grid, 2.0 * LABEL_RATE) + config.label_bias * lrng.normal()
    z = (
        np.outer(v, world.teacher_a)
        + u @ world.teacher_b.T
        + np.outer(face, world.teacher_c)
        + world.teacher_bias
        + config.teacher_noise * lrng.standard_normal((n_grid, config.teacher_dim))
    )
    teacher = config.teacher_scale * np.logaddexp(0.0, z)  # softplus: non-negative like the ReLU features of a TCN

    # EEG: band-limited sources with time-varying power
    rng = np.random.default_rng(np.random.SeedSequence([WORLD_SEED, config.seed, 3, subject, trial]))
    n = round(config.seconds * config.sfreq)
    t = np.arange(n) / config.sfreq
    v_t = np.interp(t, grid, v)
    u_t = np.stack([np.interp(t, grid, u[:, k]) for k in range(N_NUISANCE)], axis=1)
    data = np.zeros((n, n_ch))
    for b, (lo, hi) in enumerate(_BAND_EDGES):
        log_p = (
            base[None, :, b]
            + config.effect * gain * world.pattern[None, :, b] * v_t[:, None]
            + config.nuisance * (u_t @ world.nuisance[:, :, b])
        )
        data += np.exp(0.5 * log_p) * _band_noise(rng, n, config.sfreq, n_ch, lo, hi)
    data += 0.5 * rng.standard_normal((n, n_ch))  # sensor noise (µV)
    common = _smooth(rng, n, config.sfreq / 8.0)  # a common-mode signal the average reference removes
    data += 30.0 * common[:, None]
    data *= 1e-6  # volts

    sid = f"s{subject:02d}"
    recording = Recording(
        data=data,
        sfreq=float(config.sfreq),
        ch_names=names,
        ch_types=["eeg"] * n_ch,
        units="V",
        source=f"synthetic-valence(seed={config.seed}, subject={subject}, trial={trial})",
    )
    return ValenceTrial(recording, sid, f"{sid}/t{trial:02d}", grid, labels, teacher)


def synth_sequences(config: SynthConfig, setup: FeatureSetup) -> list[ValenceSequence]:
    """Features of every synthetic trial, one trial in memory at a time (1 kHz data sets stay small)."""
    seqs = []
    for s in range(1, config.subjects + 1):
        for k in range(1, config.trials + 1):
            seqs.append(make_sequence(synth_trial(config, s, k), setup))
        log.info("synthetic features: subject %d/%d", s, config.subjects)
    return seqs


def synthesize(config: SynthConfig) -> list[ValenceTrial]:
    """``config.subjects × config.trials`` synthetic trials (subjects 1…, trials 1…)."""
    trials = []
    for s in range(1, config.subjects + 1):
        for k in range(1, config.trials + 1):
            trials.append(synth_trial(config, s, k))
    log.info(
        "synthesised %d subjects x %d trials of %g s at %g Hz (%s channels)",
        config.subjects,
        config.trials,
        config.seconds,
        config.sfreq,
        config.channels,
    )
    return trials


# --------------------------------------------------------------------------------------------- per-trial npz


def write_trial_npz(trial: ValenceTrial, path: str | Path) -> Path:
    """Write ``trial`` in the per-trial ``.npz`` format (module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = trial.recording
    arrays: dict[str, np.ndarray] = {
        "eeg": np.asarray(rec.data, dtype=np.float64),
        "sfreq": np.asarray(rec.sfreq, dtype=np.float64),
        "ch_names": np.asarray(rec.ch_names, dtype=str),
        "ch_types": np.asarray(rec.ch_types, dtype=str),
        "units": np.asarray(rec.units, dtype=str),
        "valence": trial.labels,
        "valence_times": trial.label_times,
        "subject": np.asarray(trial.subject, dtype=str),
        "trial": np.asarray(trial.trial, dtype=str),
        "start": np.asarray(trial.start, dtype=np.float64),
    }
    if trial.teacher is not None:
        arrays["teacher"] = trial.teacher.astype(np.float32)
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def read_trial_npz(path: str | Path) -> ValenceTrial:
    """Read one per-trial ``.npz`` file.

    Raises
    ------
    ValenceDataError
        Naming the file and the missing or malformed key.
    """
    path = Path(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises OSError/ValueError/BadZipFile for bad files
        raise ValenceDataError(f"cannot read {str(path)!r} as .npz: {exc}") from exc
    with npz:
        need = ("eeg", "sfreq", "ch_names", "units", "valence", "valence_times", "subject", "trial")
        missing = [k for k in need if k not in npz.files]
        if missing:
            raise ValenceDataError(f"{path}: missing key(s) {', '.join(missing)} (present: {', '.join(npz.files)})")
        eeg = np.asarray(npz["eeg"], dtype=np.float64)
        names = [str(c) for c in npz["ch_names"]]
        if eeg.ndim != 2 or eeg.shape[1] != len(names):
            raise ValenceDataError(f"{path}: eeg {eeg.shape} must be (n_samples, {len(names)} channels)")
        types = [str(c) for c in npz["ch_types"]] if "ch_types" in npz.files else ["eeg"] * len(names)
        rec = Recording(
            data=eeg,
            sfreq=float(npz["sfreq"]),
            ch_names=names,
            ch_types=types,
            units=str(npz["units"]),
            source=str(path),
        )
        try:
            return ValenceTrial(
                rec,
                subject=str(npz["subject"]),
                trial=str(npz["trial"]),
                label_times=npz["valence_times"],
                labels=npz["valence"],
                teacher=npz["teacher"] if "teacher" in npz.files else None,
                start=float(npz["start"]) if "start" in npz.files else 0.0,
            )
        except ValenceDataError as exc:
            raise ValenceDataError(f"{path}: {exc}") from exc


def read_trial_folder(folder: str | Path) -> list[ValenceTrial]:
    """Every ``*.npz`` trial in ``folder`` (sorted by name)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise ValenceDataError(f"{str(folder)!r} holds no .npz trial files")
    return [read_trial_npz(f) for f in files]


def write_trial_folder(trials: Sequence[ValenceTrial], folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return [write_trial_npz(t, folder / (t.trial.replace("/", "_") + ".npz")) for t in trials]


# ---------------------------------------------------------------------------------------------------- DEAP


class UnsafePickleError(ValenceDataError):
    """A pickle names a global that is not a numpy array part: it may be trying to run code."""


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The globals numpy array pickles name (numpy 1.x and 2.x spellings, protocols 2–5), and nothing else."""
    reconstruct = np.zeros(1).__reduce__()[0]  # the functions themselves, without importing numpy.core
    scalar = np.float64(0).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # protocol-2 pickles of bytes under Python 3
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    for builtins in ("builtins", "__builtin__"):
        for name in ("set", "frozenset", "complex", "bytearray"):
            allowed[(builtins, name)] = getattr(__import__("builtins"), name)
    return allowed


class _NumpyUnpickler(pickle.Unpickler):
    """An unpickler that builds only numpy arrays/dtypes and builtin containers (no code runs)."""

    _allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"it asks for {module}.{name}, which a DEAP file never needs (only numpy arrays); "
                "it may be trying to run code, so it was not loaded"
            ) from None


def load_deap(
    path: str | Path,
    *,
    label: str = "valence",
    teacher: np.ndarray | None = None,
    teacher_times: np.ndarray | None = None,
) -> list[ValenceTrial]:
    """The 40 trials of one DEAP ``sNN.dat`` file, valence (or ``label``) as a constant target per trial.

    Parameters
    ----------
    label : str
        One of :data:`DEAP_LABELS`.
    teacher, teacher_times : ndarray, optional
        Teacher features ``(40, n, d)`` at ``teacher_times`` (n,) seconds from each trial's first sample
        (baseline included), e.g. from a face-video network on DEAP's videos. Without them only λ = 0 training
        (no teacher) is possible.

    Raises
    ------
    ValenceDataError
        If the file is not a DEAP pickle of the documented shape.
    """
    path = Path(path)
    if label not in DEAP_LABELS:
        raise ValueError(f"label must be one of {DEAP_LABELS}, got {label!r}")
    try:
        with path.open("rb") as fh:
            content = _NumpyUnpickler(fh, encoding="latin1").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"refused to unpickle {str(path)!r}: {exc}") from None
    except Exception as exc:  # pickle raises many types for bad files
        raise ValenceDataError(f"cannot unpickle {str(path)!r} as a DEAP file: {exc}") from exc
    if not isinstance(content, dict) or "data" not in content or "labels" not in content:
        raise ValenceDataError(f"{path}: a DEAP file is a dict with 'data' and 'labels'")
    data = np.asarray(content["data"], dtype=np.float64)
    labels = np.asarray(content["labels"], dtype=np.float64)
    if data.ndim != 3 or data.shape[1] < len(DEAP_CHANNELS) or labels.shape != (data.shape[0], len(DEAP_LABELS)):
        raise ValenceDataError(
            f"{path}: expected data (trials, ≥32 channels, samples) and labels (trials, 4); "
            f"got {data.shape} and {labels.shape}"
        )
    m = re.search(r"s(\d+)", path.stem)
    subject = f"s{int(m.group(1)):02d}" if m else path.stem
    column = DEAP_LABELS.index(label)
    n_trials, _, n_samples = data.shape
    duration = n_samples / DEAP_SFREQ
    if teacher is not None and (teacher_times is None or teacher.ndim != 3 or len(teacher) != n_trials):
        raise ValenceDataError(f"teacher features must be ({n_trials}, n, d) with teacher_times (n,)")
    trials = []
    for i in range(n_trials):
        rec = Recording(
            data=np.ascontiguousarray(data[i, : len(DEAP_CHANNELS)].T),
            sfreq=DEAP_SFREQ,
            ch_names=list(DEAP_CHANNELS),
            ch_types=["eeg"] * len(DEAP_CHANNELS),
            units="uV",
            source=f"{path}#trial{i + 1}",
        )
        if teacher is not None and teacher_times is not None:
            times, targets = np.asarray(teacher_times, dtype=np.float64), np.full(len(teacher_times), labels[i, column])
            feats = teacher[i]
        else:
            times, targets, feats = np.array([DEAP_BASELINE, duration]), np.full(2, labels[i, column]), None
        trials.append(ValenceTrial(rec, subject, f"{subject}/t{i + 1:02d}", times, targets, feats, start=DEAP_BASELINE))
    return trials
