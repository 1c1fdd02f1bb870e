"""Zero-shot classes: a class table (class name → embedding) turns an embedding model into a classifier.

Pure numpy, no torch: the daemon and the offline tools share it. A table file is an ``.npz`` with ``classes``
(str, k) and ``embeddings`` (float, k × dim), read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from pathlib import Path

import numpy as np

from .errors import BciStreamError

log = logging.getLogger(__name__)


class ClassTableError(BciStreamError):
    """A class table file is missing, malformed, or does not fit the model."""


def load_table(
    path: str | Path, *, dim: int | None = None, content: bytes | None = None
) -> tuple[list[str], np.ndarray]:
    """Read and validate a class table: the class names and the unit-normalised rows (k, dim) float32.

    ``content``: the file's bytes, already read (so that a hash of them names exactly the table parsed);
    ``path`` then only names it in errors.

    Raises
    ------
    ClassTableError
        Missing file, missing keys, k < 2, duplicate names, wrong width (``dim``), zero or non-finite rows.
    """
    path = Path(path)
    if content is None and not path.is_file():
        raise ClassTableError(f"class table {str(path)!r} does not exist; pass an .npz with 'classes' and 'embeddings'")
    try:
        with np.load(path if content is None else io.BytesIO(content), allow_pickle=False) as data:
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


def unit_rows(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to unit L2 norm along its last axis, as the cosine sees it (a zero vector stays zero, not NaN)."""
    v = np.asarray(v, dtype=np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def probabilities(embedding: np.ndarray, table: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(cos(embedding, table rows) / temperature): (k,) for one embedding (dim,), (n, k) for (n, dim)."""
    e = unit_rows(embedding)
    z = e @ np.asarray(table, dtype=np.float64).T / temperature
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=-1, keepdims=True)


def table_sha256(classes: list[str], table: np.ndarray) -> str:
    """The identity of a table that is not a file (the card's): sha256 of its names (UTF-8, one per line) and its
    rows as float32 bytes."""
    h = hashlib.sha256("\n".join(classes).encode())
    h.update(np.ascontiguousarray(table, dtype=np.float32).tobytes())
    return h.hexdigest()


class ZeroShotHead:
    """An embedding model's class table, from a file (re-read when it changes) or from the model card.

    The daemon's hook: ``probabilities(embeddings)`` after each inference, ``classes`` for the labels, and
    ``maybe_reload()`` once per loop turn (cheap: one ``stat``) or ``reload()`` on SIGHUP. A reload that fails
    keeps the previous table (the error is logged and kept in ``last_error``), so a half-written file never stops
    the service; ``version`` counts successful loads, ``sha256`` (of the file's bytes, or
    :func:`table_sha256` for the card's table) and ``loaded_at`` (unix time, s) name the table in use, for
    ``status``.

    Parameters
    ----------
    dim, temperature
        The card's ``output.dim`` and ``output.temperature``.
    path
        A table ``.npz``; None: the card's own table (``classes``, ``table``).
    """

    def __init__(
        self, dim: int, temperature: float, *, path: str | Path | None = None,
        classes: list[str] | None = None, table: list[list[float]] | None = None,
    ) -> None:  # fmt: skip
        self.dim, self.temperature = dim, temperature
        self.path = None if path is None else Path(path)
        self.version = 0
        self.sha256 = ""
        self.loaded_at = 0.0
        self.last_error: str | None = None
        self._mtime: tuple[int, int] | None = None
        self._forced = False
        if self.path is not None:
            self.reload(strict=True)
        elif table is not None and classes is not None:
            self.classes, self.table = list(classes), validate_table(list(classes), np.asarray(table), dim=dim)
            self.version, self.loaded_at = 1, time.time()
            self.sha256 = table_sha256(self.classes, self.table)
            log.info("class table from the model card: %d classes (sha256 %s)", len(self.classes), self.sha256[:12])
        else:
            raise ClassTableError("an embedding model needs a class table: give one (--classes) or put it in the card")

    def _stamp(self) -> tuple[int, int]:
        assert self.path is not None
        st = self.path.stat()
        return st.st_mtime_ns, st.st_size

    def reload(self, *, strict: bool = False) -> bool:
        """Re-read the file; True when a new table is in use. ``strict``: raise instead of keeping the old one."""
        if self.path is None:
            return False
        try:
            stamp = self._stamp()
            content = self.path.read_bytes()  # one read: the hash names exactly the table parsed
            self.classes, self.table = load_table(self.path, dim=self.dim, content=content)
        except (ClassTableError, OSError) as exc:
            if strict:
                raise ClassTableError(str(exc)) from exc
            self.last_error = str(exc)
            log.error(
                "class table %s not reloaded, keeping version %d (%d classes, sha256 %s): %s",
                self.path, self.version, len(self.classes), self.sha256[:12], exc,
            )  # fmt: skip
            return False
        previous = self.sha256
        self._mtime, self.last_error = stamp, None
        self.sha256, self.loaded_at = hashlib.sha256(content).hexdigest(), time.time()
        self.version += 1
        if self.version == 1:
            log.info("class table %s loaded: %d classes (sha256 %s)", self.path, len(self.classes), self.sha256[:12])
        else:
            log.info(
                "class table %s reloaded (version %d, reload %d): %d classes, sha256 %s (was %s)",
                self.path, self.version, self.version - 1, len(self.classes), self.sha256[:12], previous[:12],
            )  # fmt: skip
        return True

    def request_reload(self) -> None:
        """Ask for a re-read at the next :meth:`maybe_reload` (safe from a signal handler: it only sets a flag)."""
        self._forced = True

    def maybe_reload(self) -> bool:
        """Reload when asked (:meth:`request_reload`, SIGHUP) or when the file's modification time or size changed."""
        if self.path is None:
            return False
        if self._forced:
            self._forced = False
            return self.reload()
        try:
            changed = self._stamp() != self._mtime
        except OSError:
            return False
        return self.reload() if changed else False

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """softmax(cos / temperature) over the current table, (n, k)."""
        return probabilities(np.asarray(embeddings).reshape(len(embeddings), -1), self.table, self.temperature)

    def status(self) -> dict[str, object]:
        """What ``status`` messages carry about the table (the fields of :class:`bci_stream.messages.ClassTable`)."""
        return {"source": str(self.path) if self.path else "card", "sha256": self.sha256,
                "classes": len(self.classes), "loaded_at": self.loaded_at, "version": self.version,
                "reloads": self.version - 1, "error": self.last_error}  # fmt: skip
