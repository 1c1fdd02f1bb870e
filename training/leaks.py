"""Leak checks by content: copied recordings and identical epochs on both sides of a split.

Real data sets contain copied files (the same session exported twice, a run renamed). A split by recording
then puts the same brain data in train and test and reports decoding that is memory. Every recording and every
epoch is hashed before any fitting (:func:`training.realdata.load_epochs` does it); :func:`check_folds` says which
files and how many epochs are shared by the train and test side of each fold. ``strict`` turns the finding into
a :class:`LeakError`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from bci_stream.errors import BciStreamError

log = logging.getLogger(__name__)


class LeakError(BciStreamError):
    """Identical recordings or epochs are on both sides of a split (``--strict``)."""


def duplicate_recordings(sources: Sequence[str], content_hashes: Sequence[str]) -> list[list[str]]:
    """Groups (two or more) of recordings whose samples and markers are identical."""
    by_hash: dict[str, list[str]] = {}
    for src, h in zip(sources, content_hashes, strict=True):
        by_hash.setdefault(h, []).append(src)
    return [group for group in by_hash.values() if len(group) > 1]


def check_folds(
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    epoch_hashes: Sequence[str],
    recording: np.ndarray,
    sources: Sequence[str],
    recording_hashes: Sequence[str],
    strict: bool = False,
    strict_option: str = "--strict",
) -> list[str]:
    """Warnings (one per finding) for recordings/epochs shared by train and test of any fold.

    Parameters
    ----------
    folds
        (train indices, test indices) into the epochs.
    epoch_hashes, recording
        Per epoch: its content hash and the index of its recording in ``sources``.
    sources, recording_hashes
        Per recording: its path and content hash.
    strict
        Raise :class:`LeakError` instead of returning warnings; ``strict_option`` names the setting in its message
        (``--strict``, or ``[data] strict = true`` for a fit run).
    """
    warnings: list[str] = []
    for group in duplicate_recordings(sources, recording_hashes):
        warnings.append(f"identical recordings (same samples and markers): {', '.join(group)}")
    hashes = np.asarray(epoch_hashes)
    for k, (train, test) in enumerate(folds):
        shared = set(hashes[train].tolist()) & set(hashes[test].tolist())
        if not shared:
            continue
        test_hit = [i for i in test if hashes[i] in shared]
        train_hit = [i for i in train if hashes[i] in shared]
        test_files = sorted({sources[int(recording[i])] for i in test_hit})
        train_files = sorted({sources[int(recording[i])] for i in train_hit})
        warnings.append(
            f"fold {k}: {len(test_hit)} of {len(test)} test epochs are identical to training epochs "
            f"(test {', '.join(test_files)}; train {', '.join(train_files)})"
        )
    for w in warnings:
        log.warning("leak: %s", w)
    if warnings and strict:
        raise LeakError(f"refusing to fit ({strict_option}): " + "; ".join(warnings))
    return warnings


def check_split(
    train: np.ndarray,
    test: np.ndarray,
    *,
    epoch_hashes: Sequence[str],
    recording: np.ndarray,
    sources: Sequence[str],
    recording_hashes: Sequence[str],
    strict: bool = False,
    strict_option: str = "--strict",
) -> list[str]:
    """:func:`check_folds` for one train/validation (or train/test) split, as ``fit``/``distil`` use it."""
    return check_folds(
        [(np.asarray(train), np.asarray(test))],
        epoch_hashes=epoch_hashes,
        recording=recording,
        sources=sources,
        recording_hashes=recording_hashes,
        strict=strict,
        strict_option=strict_option,
    )


def check_epoch_split(
    recordings: Sequence[Any],
    data: Any,
    train: np.ndarray,
    held_out: np.ndarray,
    *,
    strict: bool = False,
    strict_option: str = "--strict",
) -> list[str]:
    """:func:`check_split` for epochs cut by :func:`training.fit.cut_epochs` from ``recordings`` (fit, distil).

    ``data`` is the :class:`~training.fit.LabelledEpochs`; every epoch and recording is hashed here.
    """
    import hashlib

    from .realdata import recording_content_hash

    rec_of = data.recording  # which recording each epoch came from (cut_epochs records it)
    hashes = [hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest() for x in data.X]
    return check_split(
        train,
        held_out,
        epoch_hashes=hashes,
        recording=rec_of,
        sources=[r.source for r in recordings],
        recording_hashes=[recording_content_hash(r) for r in recordings],
        strict=strict,
        strict_option=strict_option,
    )
