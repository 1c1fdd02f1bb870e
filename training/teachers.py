"""Teachers whose soft outputs a student distils. Numpy only.

Today one kind: **precomputed outputs** — a vision classifier's logits per stimulus image, computed once
(or synthesised, see :mod:`training.synthetic`) and stored as ``.npz``:

===============  ===========================  =====================================================
key              dtype / shape                meaning
===============  ===========================  =====================================================
``images``       str, (n_images,)             image ids as they appear in the markers (``n02951358_12``)
``classes``      str, (n_classes,)            class labels as they appear in the markers (WordNet ids)
``logits``       float32, (n_images, n_cls)   the teacher's logits (pre-softmax) for each image
``class_names``  str, (n_classes,), optional  display names of the classes (``n02951358 canoe``)
``description``  str, (), optional            what the teacher is (written into the model card)
===============  ===========================  =====================================================

Distillation softens the logits with the temperature itself, so store logits, not probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bci_stream.errors import BciStreamError


class TeacherError(BciStreamError):
    """A teacher file is missing or malformed, or does not cover the images / classes asked for."""


@dataclass
class PrecomputedTeacher:
    """Logits of a teacher per stimulus image (see the module docstring for the file format)."""

    images: list[str]
    classes: list[str]
    logits: np.ndarray
    class_names: list[str] | None = None
    description: str = "precomputed outputs"
    source: str = "<memory>"

    def __post_init__(self) -> None:
        self.logits = np.asarray(self.logits, dtype=np.float32)
        if self.logits.shape != (len(self.images), len(self.classes)):
            raise TeacherError(
                f"{self.source}: logits have shape {self.logits.shape}, expected "
                f"({len(self.images)} images, {len(self.classes)} classes)"
            )
        if len(set(self.images)) != len(self.images):
            raise TeacherError(f"{self.source}: image ids are not unique")
        if len(set(self.classes)) != len(self.classes):
            raise TeacherError(f"{self.source}: class labels are not unique")
        if self.class_names is not None and len(self.class_names) != len(self.classes):
            raise TeacherError(f"{self.source}: {len(self.class_names)} class names for {len(self.classes)} classes")
        if not np.isfinite(self.logits).all():
            raise TeacherError(f"{self.source}: logits contain NaN or infinity")
        self._row = {image: i for i, image in enumerate(self.images)}
        self._col = {label: j for j, label in enumerate(self.classes)}

    def name_of(self, label: str) -> str:
        """Display name of class ``label`` (the label itself without names)."""
        if self.class_names is None or label not in self._col:
            return label
        return self.class_names[self._col[label]]

    def lookup(self, images: Sequence[str], classes: Sequence[str]) -> np.ndarray:
        """Logits (len(images), len(classes)) float32: rows for ``images``, columns for ``classes``.

        Raises
        ------
        TeacherError
            Naming the images or classes the teacher does not cover.
        """
        missing_cls = [c for c in classes if c not in self._col]
        if missing_cls:
            raise TeacherError(
                f"{self.source}: teacher has no output for classes {missing_cls[:10]} "
                f"(it knows {len(self.classes)}: {self.classes[:5]} ...)"
            )
        missing_img = sorted({i for i in images if i not in self._row})
        if missing_img:
            raise TeacherError(
                f"{self.source}: teacher has no output for {len(missing_img)} images, e.g. {missing_img[:5]}; "
                "was it made for this stimulus set?"
            )
        rows = np.fromiter((self._row[i] for i in images), dtype=np.intp, count=len(images))
        cols = np.fromiter((self._col[c] for c in classes), dtype=np.intp, count=len(classes))
        return self.logits[np.ix_(rows, cols)]

    def save(self, path: str | Path) -> Path:
        """Write the ``.npz`` file (uncompressed, no pickled objects)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "images": np.asarray(self.images, dtype=str),
            "classes": np.asarray(self.classes, dtype=str),
            "logits": self.logits.astype(np.float32),
            "description": np.asarray(self.description, dtype=str),
        }
        if self.class_names is not None:
            arrays["class_names"] = np.asarray(self.class_names, dtype=str)
        with open(path, "wb") as fh:  # a file object keeps numpy from appending a second ".npz"
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        return path

    @classmethod
    def load(cls, path: str | Path) -> PrecomputedTeacher:
        """Read a teacher ``.npz``; raises :class:`TeacherError` naming the file and what is wrong."""
        path = Path(path)
        if not path.is_file():
            raise TeacherError(f"teacher file {str(path)!r} does not exist")
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in ("images", "classes", "logits") if k not in z.files]
                if missing:
                    raise TeacherError(f"{path}: teacher file lacks {missing} (has {z.files})")
                names = [str(s) for s in z["class_names"]] if "class_names" in z.files else None
                description = (
                    str(z["description"]) if "description" in z.files else f"precomputed outputs ({path.name})"
                )
                return cls(
                    images=[str(s) for s in z["images"]],
                    classes=[str(s) for s in z["classes"]],
                    logits=np.asarray(z["logits"], dtype=np.float32),
                    class_names=names,
                    description=description,
                    source=str(path),
                )
        except TeacherError:
            raise
        except (OSError, ValueError) as exc:
            raise TeacherError(f"{path}: not a readable teacher .npz ({exc})") from exc
