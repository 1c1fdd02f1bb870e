"""The train/validation split is by image, stratified by class, deterministic, and never leaks an image; a fit run's
``[data] split`` default is never by trial."""

from __future__ import annotations

import numpy as np
import pytest

from bci_stream.errors import ConfigError
from training.fit import LabelledEpochs, TrainingDataError, split_by_group, split_whole_groups
from training.run_config import DataConfig, TrainConfig
from training.runs import plan_split, split_run


def _trials(n_classes=4, images=6, repeats=5):
    groups, labels = [], []
    for c in range(n_classes):
        for i in range(images):
            for _ in range(repeats):
                groups.append(f"c{c}_{i}")
                labels.append(f"c{c}")
    order = np.random.default_rng(0).permutation(len(groups))
    return [groups[i] for i in order], [labels[i] for i in order]


def test_no_image_on_both_sides_and_every_class_validated():
    groups, labels = _trials()
    train, val = split_by_group(groups, labels, val_fraction=0.3, seed=1)
    assert len(train) + len(val) == len(groups) and not set(train) & set(val)
    assert not {groups[i] for i in train} & {groups[i] for i in val}
    val_images = {groups[i] for i in val}
    for c in range(4):
        assert sum(g.startswith(f"c{c}_") for g in val_images) == 2  # round(0.3 × 6)


def test_split_is_deterministic_by_seed():
    groups, labels = _trials()
    a = split_by_group(groups, labels, seed=5)
    b = split_by_group(groups, labels, seed=5)
    c = split_by_group(groups, labels, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


def test_an_image_with_two_labels_is_refused():
    with pytest.raises(TrainingDataError, match="two labels"):
        split_by_group(["img1", "img1", "img2", "img3"], ["a", "b", "a", "b"])


def _epochs(n_recordings: int, pattern: str = "aabbaabb", images: bool = False) -> LabelledEpochs:
    """Trials of ``pattern`` (one class letter each) in every recording, in recording order."""
    labels = list(pattern) * n_recordings
    rec = np.repeat(np.arange(n_recordings), len(pattern))
    groups = [f"img{i}" for i in range(len(labels))] if images else [f"trial{r}:{i}" for i, r in enumerate(rec)]
    return LabelledEpochs(X=np.zeros((len(labels), 2, 1)), labels=labels, groups=groups, markers=[],
                          split_unit="image" if images else "trial", n_dropped=0,
                          sources=[f"/data/run-{r}.fif" for r in range(n_recordings)], recording=rec)  # fmt: skip


def _data(**kw):  # type: ignore[no-untyped-def]
    return DataConfig(recordings=[], image_regex="", **kw)


@pytest.mark.parametrize(
    ("n_recordings", "images", "expected"),
    [(1, False, "by-block"), (2, False, "by-block"), (3, False, "by-recording"), (4, True, "by-image")],
)
def test_default_split_is_never_by_trial(n_recordings, images, expected):
    plan = plan_split(_epochs(n_recordings, images=images), _data(), TrainConfig())
    assert plan.name == expected and plan.chosen.startswith("default") and plan.leak is None
    if expected == "by-block":  # runs of same-class trials inside each recording: aa, bb, aa, bb
        assert len(set(plan.groups)) == 4 * n_recordings and plan.groups[0] == plan.groups[1] != plan.groups[2]


def test_by_recording_split_keeps_recordings_whole_with_a_test_part():
    data = _epochs(5)
    plan = plan_split(data, _data(split="by-recording"), TrainConfig(test_fraction=0.2))
    parts = split_run(plan.groups, data.labels, TrainConfig(test_fraction=0.2), plan.unit)
    sides = [{plan.groups[i] for i in idx} for idx in parts]
    assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert sum(map(len, sides)) == 5 and sum(map(len, parts)) == len(data.labels)


def test_split_whole_groups_is_deterministic_and_disjoint():
    groups = [f"r{i % 4}" for i in range(40)]
    train, val = split_whole_groups(groups, val_fraction=0.3, seed=3)
    assert len({groups[i] for i in val}) == 1 and not {groups[i] for i in train} & {groups[i] for i in val}
    assert np.array_equal(val, split_whole_groups(groups, val_fraction=0.3, seed=3)[1])
    with pytest.raises(TrainingDataError, match="at least 2"):
        split_whole_groups(["r0"] * 5)


def test_by_trial_carries_the_leak_note_and_by_recording_needs_recordings():
    plan = plan_split(_epochs(1), _data(split="by-trial"), TrainConfig())
    assert plan.name == "by-trial" and "not independent" in (plan.leak or "")
    with pytest.raises(ConfigError, match=r"\[data\] split = 'by-recording' needs at least 2 recordings .* got 1"):
        plan_split(_epochs(1), _data(split="by-recording"), TrainConfig())


def test_a_recording_split_that_leaves_a_class_out_of_validation_or_training_is_refused():
    """Three recordings, the third only of class 'c': whichever recording the seed holds out, some class is on one
    side only; refused naming the key, each class and side, the epochs per class per part and the ways out."""
    data = _epochs(3, "abab")
    data.labels[8:] = ["c"] * 4  # recording 2 holds only 'c'
    plan = plan_split(data, _data(split="by-recording"), TrainConfig())
    names = [f"run-{r}.fif" for r in range(3)]
    held_out = {seed: names[int(split_whole_groups(names, val_fraction=0.3, seed=seed)[1][0])] for seed in range(4)}
    assert set(held_out.values()) >= {"run-0.fif", "run-2.fif"}, held_out  # the real split function picks these
    seed = next(s for s, name in held_out.items() if name == "run-2.fif")
    with pytest.raises(ConfigError) as err:  # 'c' only in validation, 'a' and 'b' only in training
        plan.parts(data.labels, val_fraction=0.3, seed=seed)
    message = str(err.value)
    for key in ("run config: [data] split = 'by-recording' leaves a class out of a part",
                "class 'a' is not in validation (its epochs are all in train (4))",
                "class 'c' is not in train (its epochs are all in validation (4))",
                "epochs per class: train 'a' 4, 'b' 4, 'c' 0; validation 'a' 0, 'b' 0, 'c' 4",
                "choose another split (split = 'by-block' or split = 'by-image')",
                "'c' is in only 1 recording(s) for 2 parts: give more recordings that hold it"):  # fmt: skip
        assert key in message, message
    assert "seed" not in message  # a class in one recording is on one side whatever the seed
    seed = next(s for s, name in held_out.items() if name == "run-0.fif")
    with pytest.raises(ConfigError, match=r"class 'c' is not in validation .* or choose another split"):
        plan.parts(data.labels, val_fraction=0.3, seed=seed)


def test_every_class_on_every_side_passes_and_is_counted():
    data = _epochs(3, "aabb")
    data.labels[8:] = list("abab")
    plan = plan_split(data, _data(split="by-recording"), TrainConfig())
    train, val, test = plan.parts(data.labels, val_fraction=0.3, seed=0)
    info = plan.info({"train": train, "validation": val, "test": test}, data.labels)
    assert info["classes"] == {"train": {"a": 4, "b": 4}, "validation": {"a": 2, "b": 2}, "test": {"a": 0, "b": 0}}


def test_an_image_split_with_too_few_images_of_a_class_for_a_test_part_is_refused():
    """By image with a test part: a class of two images gives one to test and one to train, none to validation."""
    groups, labels = _trials(n_classes=3, images=4, repeats=2)
    keep = [i for i, g in enumerate(groups) if not g.startswith("c2_") or g in ("c2_0", "c2_1")]
    groups, labels = [groups[i] for i in keep], [labels[i] for i in keep]
    data = LabelledEpochs(X=np.zeros((len(labels), 2, 1)), labels=labels, groups=groups, markers=[],
                          split_unit="image", n_dropped=0, sources=["/data/run-0.fif"],
                          recording=np.zeros(len(labels), dtype=np.int64))  # fmt: skip
    plan = plan_split(data, _data(), TrainConfig(test_fraction=0.2))
    assert plan.name == "by-image"
    assert plan.parts(labels, val_fraction=0.3, seed=0)  # without a test part every class has two images: fine
    with pytest.raises(ConfigError) as err:
        plan.parts(labels, val_fraction=0.3, seed=0, test_fraction=0.2)
    message = str(err.value)
    for key in ("[data] split = 'by-image' (the default)", "class 'c2' is not in validation",
                "'c2' is in only 2 image(s) for 3 parts", "validation 'c0' 2, 'c1' 2, 'c2' 0; test"):  # fmt: skip
        assert key in message, message
    assert "seed" not in message.split("epochs per class")[1]  # stratified by class: no seed can help


def test_a_recording_split_another_seed_can_cover_says_so():
    """Recording 0 holds only 'a', the others both classes: held out alone it leaves 'b' out of validation, and
    since 'b' is in two recordings another seed can cover it: the message says which setting to change."""
    data = _epochs(3, "abab")
    data.labels[:4] = ["a"] * 4
    plan = plan_split(data, _data(split="by-recording"), TrainConfig())
    names = [f"run-{r}.fif" for r in range(3)]
    held_out = {seed: names[int(split_whole_groups(names, val_fraction=0.3, seed=seed)[1][0])] for seed in range(8)}
    bad = next(s for s, name in held_out.items() if name == "run-0.fif")
    good = next(s for s, name in held_out.items() if name != "run-0.fif")
    with pytest.raises(ConfigError) as err:
        plan.parts(data.labels, val_fraction=0.3, seed=bad)
    message = str(err.value)
    assert "class 'b' is not in validation (its epochs are all in train (4))" in message, message
    assert "validation 'a' 4, 'b' 0" in message and "try another seed ([train] seed)" in message, message
    train, val, _ = plan.parts(data.labels, val_fraction=0.3, seed=good)
    assert {data.labels[i] for i in val} == {data.labels[i] for i in train} == {"a", "b"}
