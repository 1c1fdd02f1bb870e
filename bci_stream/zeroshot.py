"""Zero-shot classes: a class table (class name → embedding) turns an embedding model into a classifier.

Pure numpy, no torch: the daemon and the offline tools share it. A table file is an ``.npz`` with ``classes``
(str, k) and ``embeddings`` (float, k × dim), read with ``allow_pickle=False``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import BciStreamError


class ClassTableError(BciStreamError):
    """A class table file is missing, malformed, or does not fit the model."""


def load_table(path: str | Path, *, dim: int | None = None) -> tuple[list[str], np.ndarray]:
    """Read and validate a class table: the class names and the unit-normalised rows (k, dim) float32.

    Raises
    ------
    ClassTableError
        Missing file, missing keys, k < 2, duplicate names, wrong width (``dim``), zero or non-finite rows.
    """
    path = Path(path)
    if not path.is_file():
        raise ClassTableError(f"class table {str(path)!r} does not exist; pass an .npz with 'classes' and 'embeddings'")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = sorted({"classes", "embeddings"} - set(data.files))
            if missing:
                raise ClassTableError(f"{path}: class table lacks {missing}; it needs 'classes' and 'embeddings'")
            classes = [str(c) for c in data["classes"]]
            table = np.asarray(data["embeddings"], dtype=np.float64)
    except (ValueError, OSError) as exc:
        raise ClassTableError(f"{path}: not a readable .npz class table ({exc})") from exc
    return classes, validate_table(classes, table, dim=dim, source=str(path))


def validate_table(
    classes: list[str], table: np.ndarray, *, dim: int | None = None, source: str = "<table>"
) -> np.ndarray:
    """The table's rows, unit-normalised, after the checks of :func:`load_table`."""
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] != len(classes):
        raise ClassTableError(f"{source}: embeddings have shape {table.shape}, expected ({len(classes)}, dim)")
    if len(classes) < 2:
        raise ClassTableError(f"{source}: a class table needs at least 2 classes, got {len(classes)}")
    dupes = sorted({c for c in classes if classes.count(c) > 1})
    if dupes:
        raise ClassTableError(f"{source}: duplicate class names {dupes}")
    if dim is not None and table.shape[1] != dim:
        raise ClassTableError(f"{source}: embeddings are {table.shape[1]}-d but the model outputs {dim}-d vectors")
    norms = np.linalg.norm(table, axis=1)
    if not np.all(np.isfinite(table)) or np.any(norms == 0):
        raise ClassTableError(f"{source}: every class embedding must be finite and non-zero")
    return (table / norms[:, None]).astype(np.float32)


def probabilities(embedding: np.ndarray, table: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(cos(embedding, table rows) / temperature): (k,) for one embedding (dim,), (n, k) for (n, dim)."""
    e = np.asarray(embedding, dtype=np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
    z = e @ np.asarray(table, dtype=np.float64).T / temperature
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=-1, keepdims=True)
