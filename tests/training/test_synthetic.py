"""Synthetic recordings: deterministic by seed, the right shape, markers, rate, units and teacher."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from bci_stream.recordings import Recording
from training.synthetic import (
    EEG_IMAGENET_CLASSES,
    EVOKED_WINDOW,
    SUPERCLASSES,
    make_teacher,
    select_classes,
    synthesize,
    teacher_path_for,
)

MARKER = re.compile(r"^stim/(n\d{8})/(n\d{8})_(\d+)$")


@pytest.fixture(scope="module")
def session():
    return synthesize(20.0, seed=3, n_classes=6, subject=2, images_per_class=3)


def test_same_seed_same_data_other_seed_other_data(session):
    again = synthesize(20.0, seed=3, n_classes=6, subject=2, images_per_class=3)
    assert np.array_equal(session.recording.data, again.recording.data)
    assert session.recording.markers == again.recording.markers
    other = synthesize(20.0, seed=4, n_classes=6, subject=2, images_per_class=3)
    assert not np.allclose(session.recording.data, other.recording.data)
    assert [m.value for m in other.recording.markers] != [m.value for m in session.recording.markers]


def test_shape_units_and_channels(session):
    rec = session.recording
    assert isinstance(rec, Recording)
    assert rec.data.shape == (20_000, 128)
    assert rec.sfreq == 1000.0 and rec.units == "V"
    assert len(set(rec.ch_names)) == 128 and set(rec.ch_types) == {"eeg"}
    assert "A1" in rec.ch_names and "D32" in rec.ch_names  # BioSemi-128 labels
    rms_uv = rec.data.std(axis=0) * 1e6
    assert 5 < np.median(rms_uv) < 60  # background: tens of µV, in volts


def test_markers_format_rate_and_classes(session):
    markers = session.recording.markers
    times = np.array([m.time for m in markers])
    assert np.all(np.diff(times) > 0.4) and np.all(np.diff(times) < 0.6)
    rate = (len(markers) - 1) / (times[-1] - times[0])
    assert 1.8 < rate < 2.2
    assert times[-1] + EVOKED_WINDOW[1] < session.recording.duration
    wnids = set()
    for m in markers:
        match = MARKER.match(m.value)
        assert match, m.value
        assert match.group(1) == match.group(2)  # the image belongs to its class
        wnids.add(match.group(1))
    assert wnids == set(session.classes) == {c[0] for c in select_classes(6)}
    assert session.class_names[0].startswith(session.classes[0] + " ")
    images = [m.value.rsplit("/", 1)[1] for m in markers]
    assert max(images.count(i) for i in set(images)) >= 2  # images are shown several times


def test_classes_constant_and_selection_mix_superclasses():
    assert len(EEG_IMAGENET_CLASSES) == 40 and len({c[0] for c in EEG_IMAGENET_CLASSES}) == 40
    assert ("n02951358", "canoe", "vehicle") in EEG_IMAGENET_CLASSES
    assert {c[2] for c in select_classes(len(SUPERCLASSES))} == set(SUPERCLASSES)
    with pytest.raises(ValueError):
        select_classes(41)


def test_evoked_responses_are_confined_to_their_window():
    quiet = synthesize(6.0, seed=1, n_classes=3, background_uv=0, alpha_uv=0, sensor_uv=0, line_uv=0).recording
    inside = np.zeros(quiet.n_samples, dtype=bool)
    for m in quiet.markers:
        i0 = round((m.time + EVOKED_WINDOW[0]) * quiet.sfreq)
        i1 = round((m.time + EVOKED_WINDOW[1]) * quiet.sfreq) + 1
        inside[i0:i1] = True
    assert np.abs(quiet.data[~inside]).max() == 0.0
    assert np.abs(quiet.data[inside]).max() > 1e-6


def test_teacher_has_class_similarity_structure(session):
    teacher = session.teacher
    assert teacher.classes == session.classes and teacher.logits.dtype == np.float32
    assert teacher.logits.shape == (len(teacher.images), 6)
    own = np.array([teacher.classes.index(i.split("_")[0]) for i in teacher.images])
    assert np.all(teacher.logits.argmax(1) == own)  # the teacher is right...
    probs = np.exp(teacher.logits / 5.0)
    probs /= probs.sum(1, keepdims=True)
    assert probs.max(1).mean() < 0.9  # ...but soft at T = 5
    # classes of one superclass (the 1st and 7th of the selection are both animals) look alike
    t8 = make_teacher(8)
    rows = [i for i, im in enumerate(t8.images) if im.startswith(t8.classes[0])]
    logits = t8.logits[rows]
    same_super, other = logits[:, 6].mean(), np.delete(logits, [0, 6], axis=1).mean()
    assert same_super > other + 2.0


def test_teacher_file_round_trip(tmp_path, session):
    from training.teachers import PrecomputedTeacher

    path = session.teacher.save(teacher_path_for(tmp_path / "x.fif"))
    assert path.name == "x.teacher.npz"
    back = PrecomputedTeacher.load(path)
    assert back.images == session.teacher.images and back.classes == session.teacher.classes
    assert np.array_equal(back.logits, session.teacher.logits)
    assert back.class_names == session.class_names


def test_sixty_seconds_is_fast():
    t0 = time.perf_counter()
    synthesize(60.0, seed=0)
    assert time.perf_counter() - t0 < 10.0
