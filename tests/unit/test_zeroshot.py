"""bci_stream.zeroshot: class tables and cosine-softmax probabilities (no torch)."""

from __future__ import annotations

import numpy as np
import pytest

from bci_stream.zeroshot import ClassTableError, load_table, probabilities


def _write(path, classes, emb):
    np.savez(path, classes=np.asarray(classes, dtype=str), embeddings=np.asarray(emb, dtype=np.float32))
    return path


def test_table_round_trip_normalises_rows(tmp_path):
    classes, table = load_table(_write(tmp_path / "t.npz", ["a", "b"], [[3.0, 0.0], [0.0, 0.5]]), dim=2)
    assert classes == ["a", "b"] and np.allclose(table, np.eye(2))


@pytest.mark.parametrize(
    ("classes", "emb", "dim", "match"),
    [
        (["a"], [[1.0, 0.0]], None, "at least 2"),
        (["a", "a"], [[1.0, 0.0], [0.0, 1.0]], None, "duplicate"),
        (["a", "b"], [[1.0, 0.0], [0.0, 1.0]], 3, "2-d but the model outputs 3-d"),
        (["a", "b"], [[1.0, 0.0], [0.0, 0.0]], None, "non-zero"),
        (["a", "b", "c"], [[1.0, 0.0], [0.0, 1.0]], None, "shape"),
    ],
)
def test_bad_tables_are_refused_with_the_file_named(tmp_path, classes, emb, dim, match):
    path = _write(tmp_path / "bad.npz", classes, emb)
    with pytest.raises(ClassTableError, match=match) as info:
        load_table(path, dim=dim)
    assert "bad.npz" in str(info.value)


def test_missing_keys_and_files(tmp_path):
    np.savez(tmp_path / "k.npz", names=np.array(["a"]))
    with pytest.raises(ClassTableError, match="lacks"):
        load_table(tmp_path / "k.npz")
    with pytest.raises(ClassTableError, match="does not exist"):
        load_table(tmp_path / "none.npz")


def test_probabilities_are_softmax_of_cosines_over_temperature():
    table = np.eye(3, dtype=np.float32)
    p = probabilities(np.array([2.0, 0.0, 0.0]), table, temperature=0.5)
    expected = np.exp([2.0, 0.0, 0.0]) / np.exp([2.0, 0.0, 0.0]).sum()  # cos 1, 0, 0 over T = 0.5
    assert np.allclose(p, expected) and p.argmax() == 0
    batch = probabilities(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 5.0]]), table, temperature=1.0)
    assert batch.shape == (2, 3) and list(batch.argmax(1)) == [1, 2] and np.allclose(batch.sum(1), 1)


def test_head_swaps_its_table_when_the_file_changes_and_keeps_it_on_a_bad_file(tmp_path, caplog):
    import os

    from bci_stream.zeroshot import ZeroShotHead

    path = _write(tmp_path / "t.npz", ["cat", "dog"], [[1.0, 0.0], [0.0, 1.0]])
    head = ZeroShotHead(2, 0.1, path=path)
    emb = np.array([[1.0, 0.1]])
    assert head.classes[int(head.probabilities(emb).argmax())] == "cat" and head.version == 1
    assert not head.maybe_reload()  # unchanged file: nothing read
    _write(path, ["car", "boat", "tree"], [[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    os.utime(path, ns=(1, 1))  # a new stamp even on a coarse-mtime file system
    assert head.maybe_reload() and head.version == 2
    p = head.probabilities(emb)
    assert p.shape == (1, 3) and head.classes[int(p.argmax())] == "boat"
    path.write_bytes(b"half-written")
    os.utime(path, ns=(2, 2))
    assert not head.maybe_reload() and head.version == 2 and head.classes == ["car", "boat", "tree"]
    assert "not reloaded" in caplog.text and head.status()["error"]


def test_head_from_the_card_table_and_without_any_table():
    from bci_stream.zeroshot import ZeroShotHead

    head = ZeroShotHead(2, 0.5, classes=["a", "b"], table=[[2.0, 0.0], [0.0, 1.0]])
    assert head.status()["source"] == "card" and np.allclose(head.table, np.eye(2))
    with pytest.raises(ClassTableError, match="needs a class table"):
        ZeroShotHead(2, 0.5)


def test_a_requested_reload_reads_the_file_even_with_the_same_stamp(tmp_path):
    import os

    from bci_stream.zeroshot import ZeroShotHead

    path = _write(tmp_path / "t.npz", ["cat", "dog"], [[1.0, 0.0], [0.0, 1.0]])
    os.utime(path, ns=(5, 5))
    head = ZeroShotHead(2, 0.1, path=path)
    _write(path, ["cow", "pig"], [[0.0, 1.0], [1.0, 0.0]])
    os.utime(path, ns=(5, 5))  # same mtime and size: the watch cannot see it
    assert not head.maybe_reload() and head.classes == ["cat", "dog"]
    head.request_reload()  # what SIGHUP does
    assert head.maybe_reload() and head.classes == ["cow", "pig"] and head.version == 2
