"""EEG-ImageNet reader and leak-checked splits, on small files in the exact released format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data import (
    SplitLeakError,
    assert_disjoint,
    leave_one_subject_out,
    load_eeg_imagenet,
    load_splits,
    split_by_block,
    split_by_image,
    synthetic_eeg_imagenet,
)


@pytest.fixture(scope="module")
def pth(tmp_path_factory):
    raw = synthetic_eeg_imagenet(n_classes=3, n_subjects=2, images_per_class=4, length=500, seed=3)
    # two trials outside 450 ≤ L ≤ 600 (dropped) and one of 470 (too short for the default 40 + 440 crop)
    extra = [
        {"eeg": torch.zeros(128, 400), "image": 0, "label": 0, "subject": 1},
        {"eeg": torch.zeros(128, 700), "image": 1, "label": 0, "subject": 1},
        {"eeg": torch.zeros(128, 470), "image": 2, "label": 0, "subject": 2},
    ]
    raw["dataset"] = raw["dataset"] + extra
    path = tmp_path_factory.mktemp("eegimagenet") / "eeg_test_std.pth"
    torch.save(raw, path)
    return path, raw


def test_reads_the_released_format(pth):
    path, raw = pth
    d = load_eeg_imagenet(path)
    assert d.X.shape == (24, 440, 128) and d.X.dtype == np.float32
    assert d.n_dropped == 3 and len(d) == 24
    first = raw["dataset"][0]
    np.testing.assert_array_equal(d.X[0], first["eeg"].numpy()[:, 40:480].T)
    assert d.y[0] == first["label"] and d.images[0] == first["image"] and d.subjects[0] == first["subject"]
    assert d.image_ids[0] == raw["images"][first["image"]] and d.image_ids[0].startswith(raw["labels"][d.y[0]])
    assert d.blocks[0] == f"s{first['subject']}/c{first['label']}"
    assert d.design == "block design" and "subject×label" in d.block_source
    assert d.classes == raw["labels"] and list(d.index) == list(range(24))
    d20 = load_eeg_imagenet(path, tmin_samples=20)
    assert d20.n_dropped == 2  # the 470-sample trial fits [20, 460)
    np.testing.assert_array_equal(d20.X[0], first["eeg"].numpy()[:, 20:460].T)


def _write_splits(path, splits):
    torch.save({"splits": splits}, path)
    return path


def test_splits_file_is_mapped_and_checked(pth, tmp_path):
    path, _ = pth
    d = load_eeg_imagenet(path)
    ids = d.image_ids
    train = [i for i in range(24) if ids[i].endswith(("_1", "_2", "_3"))] + [24]  # 24: a dropped trial
    test = [i for i in range(24) if ids[i].endswith("_4") and d.subjects[i] == 1]
    (split,) = load_splits(_write_splits(tmp_path / "ok.pth", [{"train": train, "val": [], "test": test}]), d)
    assert len(split["train"]) == len(train) - 1 and len(split["test"]) == len(test)

    leak_trial = [{"train": train, "val": [], "test": [*test, train[0]]}]
    with pytest.raises(SplitLeakError, match=rf"trials between 'train' and 'test': {train[0]}"):
        load_splits(_write_splits(tmp_path / "leak1.pth", leak_trial), d)

    # subject 2's trial of an image in train, subject 1's trial of the same image in test
    same_image = [i for i in range(24) if d.images[i] == d.images[test[0]] and d.subjects[i] == 2]
    assert len(same_image) == 1
    leak_image = [{"train": [*train, *same_image], "val": [], "test": test}]
    with pytest.raises(SplitLeakError, match=f"images between 'train' and 'test': {ids[test[0]]}"):
        load_splits(_write_splits(tmp_path / "leak2.pth", leak_image), d)


def test_split_builders_keep_units_apart(pth):
    d = load_eeg_imagenet(pth[0])
    parts = split_by_image(d.images, d.y, test_fraction=0.25, val_fraction=0.25, seed=1)
    assert {*parts} == {"train", "val", "test"}
    assert sum(map(len, parts.values())) == len(d)
    for name in parts:  # stratified: every class in every part
        assert set(d.y[parts[name]]) == {0, 1, 2}
    folds = split_by_block(d.blocks, d.images, n_folds=3)
    # blocks of the same class in two subjects share images: they move together, so a fold holds out a class
    for f in folds:
        assert not set(d.blocks[f["train"]]) & set(d.blocks[f["test"]])
        assert not set(d.images[f["train"]]) & set(d.images[f["test"]])
    loso = leave_one_subject_out(d.subjects, d.blocks, d.images)
    assert [s for s, _ in loso] == [1, 2]
    assert set(d.subjects[loso[0][1]["test"]]) == {1}
    with pytest.raises(SplitLeakError, match="images"):
        leave_one_subject_out(d.subjects, d.blocks, d.images, check_images=True)


def test_assert_disjoint_names_offenders():
    assert_disjoint({"a": np.array([0, 1]), "b": np.array([2])}, block=np.array(["x", "y", "z"]))
    with pytest.raises(SplitLeakError, match="blocks between 'a' and 'b': y"):
        assert_disjoint({"a": np.array([0, 1]), "b": np.array([2])}, block=np.array(["x", "y", "y"]))
