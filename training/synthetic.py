"""Synthetic 128-channel visual-evoked EEG with a matching synthetic teacher. Numpy (and MNE to write FIF) only.

The model of the data
---------------------
A fixed *world* (seed :data:`WORLD_SEED`) holds what does not change between sessions:

- the 40 EEG-ImageNet classes, each with a unit **class embedding** in R^D (D = :data:`EMBED_DIM`) made of a
  superclass direction plus a class direction, so classes of one superclass (animals, vehicles ...) are similar;
- ``images_per_class`` images per class, each with an **image embedding** = class embedding + small noise;
- D **evoked components**: a spatial pattern (a smooth blob over the occipital/parietal scalp of the BioSemi-128
  montage) times a temporal Gabor (latency 0.10–0.36 s, 6–16 Hz), confined to 0.05–0.45 s after onset.

The evoked response to an image is Σ_k embedding_k · component_k (so its similarity structure is the teacher's),
scaled by ``evoked_uv``, plus a class-independent VEP (P1/N1/P2). A *subject* (``subject=K``) has its own gain,
latency shift and alpha frequency. A *session* (``seed``) draws the background and the stimulus sequence:

- background: 32 spatially smooth 1/f^χ sources (χ = 2: amplitude falls as 1/f; about 20 µV RMS broadband, about
  5 µV after the 5–95 Hz filter) + white sensor noise + posterior alpha + a little 50 Hz line noise;
- stimuli about 2 per second (SOA 0.45–0.55 s) in random order, every image shown several times, each trial
  with its own small amplitude and latency jitter; one marker per stimulus ``stim/<wnid>/<wnid>_<k>``.

The **teacher** gives, per image, logits = ``teacher_scale`` × cosine(image embedding, class embedding) over the
session's classes: a soft posterior with class-similarity structure, stored as a precomputed-outputs teacher
(:class:`training.teachers.PrecomputedTeacher`, written next to the FIF as ``<name>.teacher.npz``).

Everything is deterministic given (world seed, subject, seed, parameters). Samples are in volts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bci_stream.epochs import Marker
from bci_stream.recordings import Recording

from .errors import SettingError, TrainingDataError
from .teachers import PrecomputedTeacher

#: The 40 EEG-ImageNet classes (Spampinato et al. 2017) in WordNet-id order: (wnid, name, superclass).
#: The superclass is ours; it gives the synthetic teacher its similarity structure.
EEG_IMAGENET_CLASSES: tuple[tuple[str, str, str], ...] = (
    ("n02106662", "German shepherd", "animal"),
    ("n02124075", "Egyptian cat", "animal"),
    ("n02281787", "lycaenid butterfly", "animal"),
    ("n02389026", "sorrel", "animal"),
    ("n02492035", "capuchin", "animal"),
    ("n02504458", "African elephant", "animal"),
    ("n02510455", "giant panda", "animal"),
    ("n02607072", "anemone fish", "animal"),
    ("n02690373", "airliner", "vehicle"),
    ("n02906734", "broom", "household"),
    ("n02951358", "canoe", "vehicle"),
    ("n02992529", "cellular telephone", "device"),
    ("n03063599", "coffee mug", "household"),
    ("n03100240", "convertible", "vehicle"),
    ("n03180011", "desktop computer", "device"),
    ("n03197337", "digital watch", "device"),
    ("n03272010", "electric guitar", "household"),
    ("n03272562", "electric locomotive", "vehicle"),
    ("n03297495", "espresso maker", "device"),
    ("n03376595", "folding chair", "household"),
    ("n03445777", "golf ball", "household"),
    ("n03452741", "grand piano", "household"),
    ("n03584829", "iron", "device"),
    ("n03590841", "jack-o'-lantern", "food-plant"),
    ("n03709823", "mailbag", "clothing"),
    ("n03773504", "missile", "vehicle"),
    ("n03775071", "mitten", "clothing"),
    ("n03792782", "mountain bike", "vehicle"),
    ("n03792972", "mountain tent", "household"),
    ("n03877472", "pajama", "clothing"),
    ("n03888257", "parachute", "vehicle"),
    ("n03982430", "pool table", "household"),
    ("n04044716", "radio telescope", "device"),
    ("n04069434", "reflex camera", "device"),
    ("n04086273", "revolver", "household"),
    ("n04120489", "running shoe", "clothing"),
    ("n07753592", "banana", "food-plant"),
    ("n07873807", "pizza", "food-plant"),
    ("n11939491", "daisy", "food-plant"),
    ("n13054560", "bolete", "food-plant"),
)

SUPERCLASSES = ("animal", "vehicle", "device", "household", "clothing", "food-plant")
WORLD_SEED = 20170721
EMBED_DIM = 12
MONTAGE = "biosemi128"
#: Evoked responses live in this window after the stimulus (epochs are cut at tmin 0.040 s, 440 samples).
EVOKED_WINDOW = (0.05, 0.45)
FIRST_STIMULUS = 1.0  # seconds of signal before the first stimulus (filters settle)


def class_order() -> list[tuple[str, str, str]]:
    """All 40 classes, interleaved across superclasses so that any prefix mixes superclasses."""
    groups = [[c for c in EEG_IMAGENET_CLASSES if c[2] == s] for s in SUPERCLASSES]
    order: list[tuple[str, str, str]] = []
    for i in range(max(len(g) for g in groups)):
        order.extend(g[i] for g in groups if i < len(g))
    return order


def select_classes(n_classes: int) -> list[tuple[str, str, str]]:
    """The first ``n_classes`` of :func:`class_order` (2 ≤ n ≤ 40)."""
    if not 2 <= n_classes <= len(EEG_IMAGENET_CLASSES):
        raise SettingError(f"n_classes must be 2 … {len(EEG_IMAGENET_CLASSES)}, got {n_classes}")
    return class_order()[:n_classes]


def class_name(wnid: str) -> str:
    """``"n02951358 canoe"`` for ``"n02951358"`` (the wnid itself when unknown)."""
    for w, name, _ in EEG_IMAGENET_CLASSES:
        if w == wnid:
            return f"{w} {name}"
    return wnid


def image_id(wnid: str, k: int) -> str:
    return f"{wnid}_{k}"


def image_embeddings_of(ids: list[str], *, image_spread: float = 0.3, world_seed: int = WORLD_SEED) -> np.ndarray:
    """The synthetic world's unit image embedding (n, :data:`EMBED_DIM`) of each image id ``<wnid>_<k>`` (the ones
    the evoked responses are made of: what a perfect image encoder would give for these data)."""
    world = _world(world_seed, float(image_spread))
    wnids = [c[0] for c in EEG_IMAGENET_CLASSES]
    rows = []
    for i in ids:
        wnid, _, k = i.rpartition("_")
        if wnid not in wnids or not k.isdigit():
            raise TrainingDataError(f"image id {i!r} is not a synthetic image (<wnid>_<k> of the 40 classes)")
        rows.append(_image_embedding(world, wnids.index(wnid), int(k)))
    return np.stack(rows).astype(np.float32)


def teacher_path_for(fif_path: str | Path) -> Path:
    """``build/demo.fif`` → ``build/demo.teacher.npz`` (also for ``.fif.gz``)."""
    p = Path(fif_path)
    name = p.name
    for suffix in (".fif.gz", ".fif"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return p.with_name(name + ".teacher.npz")


# ----------------------------------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class _World:
    ch_names: list[str]
    positions: np.ndarray  # (128, 3) metres
    occipital: np.ndarray  # indices of posterior channels
    class_emb: np.ndarray  # (40, D), rows unit
    spatial: np.ndarray  # (D, 128)
    latency: np.ndarray  # (D,) s
    width: np.ndarray  # (D,) s
    freq: np.ndarray  # (D,) Hz
    phase: np.ndarray  # (D,) rad
    vep_spatial: np.ndarray  # (128,)
    seed: int
    image_spread: float


def _montage() -> tuple[list[str], np.ndarray]:
    import mne

    montage = mne.channels.make_standard_montage(MONTAGE)
    pos = montage.get_positions()["ch_pos"]
    names = list(pos)
    return names, np.array([pos[n] for n in names], dtype=np.float64)


def _blob(positions: np.ndarray, center: np.ndarray, sigma: float) -> np.ndarray:
    d2 = ((positions - center) ** 2).sum(axis=1)
    return np.exp(-d2 / (2 * sigma**2))


def occipital_channels(positions: np.ndarray) -> np.ndarray:
    """Indices of the posterior (occipital / parieto-occipital) channels: y < −6 cm on the MNE head sphere."""
    return np.flatnonzero(positions[:, 1] < -0.06)


@functools.lru_cache(maxsize=4)
def _world(seed: int, image_spread: float) -> _World:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    names, pos = _montage()
    occ = occipital_channels(pos)
    d = EMBED_DIM
    # class embeddings: superclass direction + class direction → cos ≈ 0.5 within a superclass, ≈ 0 across
    sup = {s: rng.standard_normal(d) for s in SUPERCLASSES}
    emb = np.stack([sup[s] / np.linalg.norm(sup[s]) * 1.0 for _, _, s in EEG_IMAGENET_CLASSES])
    own = rng.standard_normal((len(EEG_IMAGENET_CLASSES), d))
    emb = emb + own / np.linalg.norm(own, axis=1, keepdims=True)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    # evoked components: a posterior blob × a Gabor
    centers = pos[rng.choice(occ, size=d, replace=True)]
    spatial = np.stack([_blob(pos, c, rng.uniform(0.025, 0.04)) for c in centers])
    spatial *= rng.choice([-1.0, 1.0], size=(d, 1))
    latency = rng.uniform(0.10, 0.36, d)
    width = rng.uniform(0.02, 0.04, d)
    freq = rng.uniform(6.0, 16.0, d)
    phase = rng.uniform(0, 2 * np.pi, d)
    midline_occ = pos[np.argmin(pos[:, 1])]
    vep_spatial = _blob(pos, midline_occ, 0.045)
    return _World(names, pos, occ, emb, spatial, latency, width, freq, phase, vep_spatial, seed, image_spread)


def _image_embedding(world: _World, class_index: int, k: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([world.seed, 1, class_index, k]))
    e = world.class_emb[class_index] + world.image_spread * rng.standard_normal(EMBED_DIM) / np.sqrt(EMBED_DIM)
    return np.asarray(e / np.linalg.norm(e))


@dataclass(frozen=True)
class SubjectParams:
    """Per-subject variation: evoked gain, latency shift (s), alpha peak (Hz), background scale."""

    subject: int
    gain: float
    latency_shift: float
    alpha_freq: float
    background_scale: float


def subject_params(subject: int, world_seed: int = WORLD_SEED) -> SubjectParams:
    rng = np.random.default_rng(np.random.SeedSequence([world_seed, 2, subject]))
    return SubjectParams(
        subject=subject,
        gain=float(rng.uniform(0.8, 1.2)),
        latency_shift=float(rng.uniform(-0.012, 0.012)),
        alpha_freq=float(rng.uniform(8.5, 11.5)),
        background_scale=float(rng.uniform(0.85, 1.15)),
    )


# --------------------------------------------------------------------------------------------------- the session


@dataclass
class SyntheticSession:
    """One synthetic recording session and its teacher."""

    recording: Recording
    teacher: PrecomputedTeacher
    classes: list[str]  # wnids, the labels in the markers
    class_names: list[str]  # "wnid name"
    subject: SubjectParams
    params: dict[str, object] = field(default_factory=dict)


def _colored_noise(rng: np.random.Generator, n: int, sfreq: float, n_src: int, shape) -> np.ndarray:
    """(n, n_src) noise, unit variance per column, with amplitude spectrum ``shape(freqs)``."""
    freqs = np.fft.rfftfreq(n, 1.0 / sfreq)
    amp = shape(freqs)
    out = np.empty((n, n_src))
    for j in range(n_src):  # one column at a time keeps memory at O(n)
        spec = (rng.standard_normal(len(freqs)) + 1j * rng.standard_normal(len(freqs))) * amp
        x = np.fft.irfft(spec, n=n)
        out[:, j] = x / (x.std() + 1e-30)
    return out


def _gabors(world: _World, t: np.ndarray, shift: float) -> np.ndarray:
    """(len(t), D) temporal components, shifted by ``shift`` seconds, windowed to :data:`EVOKED_WINDOW`."""
    tt = t[:, None] - (world.latency[None, :] + shift)
    g = np.exp(-(tt**2) / (2 * world.width**2)) * np.cos(2 * np.pi * world.freq * tt + world.phase)
    return g * _evoked_window(t)[:, None]


def _evoked_window(t: np.ndarray) -> np.ndarray:
    lo, hi = EVOKED_WINDOW
    ramp = 0.02
    w = np.clip(np.minimum((t - lo) / ramp, (hi - t) / ramp), 0.0, 1.0)
    return np.sin(w * np.pi / 2) ** 2


def _vep(t: np.ndarray, shift: float) -> np.ndarray:
    """Class-independent P1 / N1 / P2 (unit peak ≈ 1)."""
    comps = ((0.10, 0.015, 0.8), (0.17, 0.02, -1.0), (0.25, 0.03, 0.7))
    v = sum(a * np.exp(-((t - lat - shift) ** 2) / (2 * w**2)) for lat, w, a in comps)
    return np.asarray(v) * _evoked_window(t)


def _background(
    rng: np.random.Generator, world: _World, subj: SubjectParams, n: int, sfreq: float, *, background_uv: float,
    background_exponent: float, alpha_uv: float, sensor_uv: float, line_uv: float,
) -> np.ndarray:  # fmt: skip
    """(n, n_ch) volts: smooth 1/f sources, posterior alpha, sensor noise, line noise."""
    n_ch = len(world.ch_names)
    uv = 1e-6
    n_pink = 32
    pink = _colored_noise(rng, n, sfreq, n_pink, lambda f: np.maximum(f, 0.5) ** (-background_exponent / 2))
    centers = world.positions[rng.choice(n_ch, n_pink, replace=False)]
    mix = np.stack([_blob(world.positions, c, rng.uniform(0.03, 0.06)) for c in centers])
    mix *= rng.choice([-1.0, 1.0], size=(n_pink, 1))
    mix /= np.sqrt((mix**2).sum(axis=0, keepdims=True))  # unit variance per channel
    data = pink @ (mix * (background_uv * subj.background_scale * uv))
    del pink
    af = subj.alpha_freq
    n_alpha = 3
    alpha = _colored_noise(rng, n, sfreq, n_alpha, lambda f: np.exp(-((f - af) ** 2) / (2 * 0.6**2)))
    occ_pos = world.positions[world.occipital]
    a_mix = np.stack([_blob(world.positions, occ_pos[rng.integers(len(occ_pos))], 0.05) for _ in range(n_alpha)])
    a_mix /= np.sqrt((a_mix**2).sum(axis=0)).max()
    data += alpha @ (a_mix * (alpha_uv * uv))
    del alpha
    data += rng.standard_normal((n, n_ch)) * (sensor_uv * uv)
    t_all = np.arange(n) / sfreq
    line_amp = rng.uniform(0.5, 1.0, n_ch) * line_uv * uv
    line_phase = rng.uniform(0, 2 * np.pi, n_ch)
    data += np.sin(2 * np.pi * 50.0 * t_all[:, None] + line_phase) * line_amp

    return data


def _schedule(
    rng: np.random.Generator, seconds: float, n_chosen: int, images_per_class: int, soa: tuple[float, float]
) -> tuple[list[float], list[tuple[int, int]], list[tuple[int, int]]]:
    """Stimulus onsets (s), the (class, image) stimuli, and the shown sequence: randomised order, every image
    several times, SOA drawn from ``soa``."""
    onsets = []
    t = FIRST_STIMULUS
    last_allowed = seconds - EVOKED_WINDOW[1] - 0.1
    while t <= last_allowed:
        onsets.append(t)
        t += rng.uniform(*soa)
    stimuli = [(ci, k) for ci in range(n_chosen) for k in range(1, images_per_class + 1)]
    sequence: list[tuple[int, int]] = []
    while len(sequence) < len(onsets):
        sequence.extend(stimuli[i] for i in rng.permutation(len(stimuli)))
    sequence = sequence[: len(onsets)]

    return onsets, stimuli, sequence


def synthesize(
    seconds: float = 60.0,
    *,
    seed: int = 0,
    n_classes: int = 8,
    subject: int = 1,
    images_per_class: int = 8,
    sfreq: float = 1000.0,
    evoked_uv: float = 20.0,
    vep_uv: float = 5.0,
    background_uv: float = 20.0,
    background_exponent: float = 2.0,
    alpha_uv: float = 5.0,
    sensor_uv: float = 2.0,
    line_uv: float = 2.0,
    soa: tuple[float, float] = (0.45, 0.55),
    trial_jitter: float = 0.004,
    image_spread: float = 0.3,
    teacher_scale: float = 10.0,
    world_seed: int = WORLD_SEED,
) -> SyntheticSession:
    """Generate one session: a 128-channel :class:`Recording` in volts with markers, and its teacher.

    Parameters
    ----------
    seconds : float
        Length of the recording.
    seed : int
        Session seed: background, stimulus order and trial jitter.
    n_classes : int
        How many of the 40 classes are shown (see :func:`select_classes`).
    subject : int
        Subject id: gain, latency shift and alpha frequency (:func:`subject_params`).
    images_per_class : int
        Images per class; every image is shown several times (randomised order, not blocks).
    evoked_uv : float
        Typical peak amplitude (µV) of one component of the class/image-specific evoked response (the image
        embedding, whose entries have RMS 1 after scaling by √D, weights the D components).
    background_exponent : float
        The background's power spectrum falls as 1/f^exponent (flat below 0.5 Hz).
    background_uv, alpha_uv, sensor_uv, line_uv, vep_uv : float
        RMS of the 1/f background per channel (broadband), peak-channel alpha RMS, white sensor noise, 50 Hz amplitude and the
        class-independent VEP amplitude, all in µV.
    """
    if seconds < FIRST_STIMULUS + 1.0:
        raise SettingError(f"seconds must be at least {FIRST_STIMULUS + 1.0:g}, got {seconds}")
    if images_per_class < 1:
        raise SettingError(f"images_per_class must be ≥ 1, got {images_per_class}")
    world = _world(world_seed, float(image_spread))
    subj = subject_params(subject, world_seed)
    chosen = select_classes(n_classes)
    all_wnids = [c[0] for c in EEG_IMAGENET_CLASSES]
    class_idx = [all_wnids.index(w) for w, _, _ in chosen]
    rng = np.random.default_rng(np.random.SeedSequence([world_seed, 3, subject, seed]))
    n = round(seconds * sfreq)
    n_ch = len(world.ch_names)
    uv = 1e-6

    # ---- background, then the stimulus schedule (in this order: they share the session's generator)
    data = _background(rng, world, subj, n, sfreq, background_uv=background_uv,
                       background_exponent=background_exponent, alpha_uv=alpha_uv, sensor_uv=sensor_uv,
                       line_uv=line_uv)  # fmt: skip
    onsets, stimuli, sequence = _schedule(rng, seconds, len(chosen), images_per_class, soa)

    # ---- evoked responses
    length = int(np.ceil(EVOKED_WINDOW[1] * sfreq)) + 2
    t_ep = np.arange(length) / sfreq
    embeddings = {(ci, k): _image_embedding(world, class_idx[ci], k) for ci, k in stimuli}
    vep_pattern = world.vep_spatial * (vep_uv * uv * subj.gain)
    markers = []
    for onset, (ci, k) in zip(onsets, sequence, strict=True):
        i0 = round(onset * sfreq)
        onset_exact = i0 / sfreq  # markers sit on a sample, like a hardware trigger
        shift = subj.latency_shift + rng.normal(0.0, trial_jitter)
        amp = subj.gain * max(rng.normal(1.0, 0.15), 0.2) * evoked_uv * uv
        tc = _gabors(world, t_ep, shift) * (embeddings[(ci, k)] * (amp * np.sqrt(EMBED_DIM)))
        evoked = tc @ world.spatial + np.outer(_vep(t_ep, shift), vep_pattern)
        stop = min(i0 + length, n)
        data[i0:stop] += evoked[: stop - i0]
        wnid = chosen[ci][0]
        markers.append(Marker(f"stim/{wnid}/{image_id(wnid, k)}", float(onset_exact)))

    wnids = [w for w, _, _ in chosen]
    names = [f"{w} {name}" for w, name, _ in chosen]
    source = f"synthetic(seconds={seconds:g}, seed={seed}, subject={subject}, classes={n_classes})"
    recording = Recording(
        data=data,
        sfreq=float(sfreq),
        ch_names=list(world.ch_names),
        ch_types=["eeg"] * n_ch,
        units="V",
        markers=markers,
        source=source,
    )
    teacher = make_teacher(
        n_classes,
        images_per_class=images_per_class,
        image_spread=image_spread,
        teacher_scale=teacher_scale,
        world_seed=world_seed,
    )
    params: dict[str, object] = {
        "seconds": seconds, "seed": seed, "n_classes": n_classes, "subject": subject,
        "images_per_class": images_per_class, "evoked_uv": evoked_uv, "background_uv": background_uv,
        "alpha_uv": alpha_uv, "world_seed": world_seed,
    }  # fmt: skip
    return SyntheticSession(recording, teacher, wnids, names, subj, params)


def make_teacher(
    n_classes: int,
    *,
    images_per_class: int = 8,
    image_spread: float = 0.3,
    teacher_scale: float = 10.0,
    world_seed: int = WORLD_SEED,
) -> PrecomputedTeacher:
    """The synthetic teacher of a stimulus set: logits = scale × cos(image embedding, class embedding)."""
    world = _world(world_seed, float(image_spread))
    chosen = select_classes(n_classes)
    all_wnids = [c[0] for c in EEG_IMAGENET_CLASSES]
    class_idx = [all_wnids.index(w) for w, _, _ in chosen]
    images, rows = [], []
    for ci, (wnid, _, _) in zip(class_idx, chosen, strict=True):
        for k in range(1, images_per_class + 1):
            images.append(image_id(wnid, k))
            rows.append(_image_embedding(world, ci, k))
    logits = teacher_scale * np.stack(rows) @ world.class_emb[class_idx].T
    return PrecomputedTeacher(
        images=images,
        classes=[w for w, _, _ in chosen],
        logits=logits.astype(np.float32),
        class_names=[f"{w} {name}" for w, name, _ in chosen],
        description=(
            f"synthetic teacher (precomputed outputs): {teacher_scale:g} x cosine of image and class embeddings, "
            f"world seed {world_seed}"
        ),
        source="synthetic teacher",
    )


def write_fif(recording: Recording, path: str | Path) -> Path:
    """Write ``recording`` (units V) to FIF with one annotation per marker and the BioSemi-128 montage."""
    import mne

    if recording.units != "V":
        raise TrainingDataError(f"write_fif expects samples in volts, got {recording.units!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = mne.create_info(recording.ch_names, recording.sfreq, recording.ch_types, verbose="error")
    raw = mne.io.RawArray(recording.data.T, info, verbose="error")
    if set(recording.ch_names) <= set(_montage()[0]):
        raw.set_montage(MONTAGE, verbose="error")
    raw.set_annotations(
        mne.Annotations(
            onset=[m.time for m in recording.markers],
            duration=[0.0] * len(recording.markers),
            description=[m.value for m in recording.markers],
        )
    )
    raw.save(path, overwrite=True, verbose="error")
    return path


def write_session(session: SyntheticSession, path: str | Path) -> tuple[Path, Path]:
    """Write the FIF and its teacher (``<name>.teacher.npz`` beside it); returns both paths."""
    fif = write_fif(session.recording, path)
    return fif, session.teacher.save(teacher_path_for(fif))
