"""The train/validation split is by image, stratified by class, deterministic, and never leaks an image."""

from __future__ import annotations

import numpy as np
import pytest

from training.fit import TrainingDataError, split_by_group


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
