"""Unseen classes: unsupervised-KD student features, few-shot classifiers, overlapping-excerpt voting."""

import numpy as np
import pytest

from training.cli import main
from training.unseen import excerpts, majority_vote, unseen_classes


def test_excerpts_overlap():
    X = np.arange(2 * 8 * 1, dtype=float).reshape(2, 8, 1)
    ex, owner = excerpts(X, 4, 2)
    assert ex.shape == (2 * 3, 4, 1)
    assert owner.tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(ex[1, :, 0], [2, 3, 4, 5])
    np.testing.assert_array_equal(ex[3, :, 0], [8, 9, 10, 11])
    with pytest.raises(ValueError):
        excerpts(X, 9, 2)


def test_majority_vote():
    pred = np.array([1, 1, 0, 0, 0, 1, 2, 2, 1])
    owner = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    assert majority_vote(pred, owner, 3, 3).tolist() == [1, 0, 2]


def test_unseen_classes_above_chance():
    r = unseen_classes(n_classes=6, n_unseen=2, seconds=60.0, shots=5, train={"epochs": 10})
    assert len(r.seen) == 4 and len(r.unseen) == 2 and not set(r.seen) & set(r.unseen)
    assert r.n_support == 10 and r.n_query >= 20
    assert set(r.accuracy) == {"svm", "knn", "random-forest"}
    assert max(r.accuracy.values()) >= r.chance + 0.15, r.table()
    assert "excerpt vote" in r.table()


def test_unseen_needs_seen_classes():
    with pytest.raises(ValueError, match="n_unseen"):
        unseen_classes(n_classes=3, n_unseen=2)


def test_cli_unseen(tmp_path, capsys):
    out = tmp_path / "unseen.md"
    args = ["unseen", "--classes", "4", "--unseen", "2", "--seconds", "40", "--epochs", "2", "--shots", "3"]
    assert main([*args, "--out", str(out)]) == 0
    assert "random-forest" in out.read_text() and "svm" in capsys.readouterr().out
