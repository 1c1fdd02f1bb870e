"""Teachers whose soft outputs a student distils.

Three kinds. :class:`PrecomputedTeacher` (numpy only) holds **precomputed outputs**; :class:`OnnxTeacher` (an ONNX
image classifier run with onnxruntime) and :class:`TorchvisionTeacher` (a torchvision architecture + a local weights
file) compute them from the stimulus images, cache them on disk, and turn into a :class:`PrecomputedTeacher` with
``to_precomputed(images)`` so that any teacher feeds :func:`training.fit.train_student`.

Precomputed outputs are — a vision classifier's logits per stimulus image, computed once
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

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bci_stream.errors import BciStreamError
from bci_stream.inference import file_sha256

if TYPE_CHECKING:
    import onnxruntime as ort
    import torch


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


# ------------------------------------------------------------------------------------------ image classifiers

#: Where computed teacher logits are cached unless a teacher is given ``cache_dir``.
DEFAULT_CACHE_DIR = Path(".cache/teachers")


def image_key(image: np.ndarray) -> str:
    """sha256 of an image as the teacher sees it: float32, C-contiguous bytes, plus its shape."""
    a = np.ascontiguousarray(image, dtype=np.float32)
    h = hashlib.sha256(repr(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()


class ImageTeacher:
    """Base of teachers that compute logits from images, once per (teacher, image), cached on disk.

    Images are the model's input for one image: float32 ``(C, H, W)`` already resized and normalised the way the
    classifier expects (e.g. ImageNet mean/std). The cache file of an image is
    ``<cache_dir>/<teacher identity>/<image sha256>.npy``; the identity is a sha256 of what defines the teacher's
    outputs (the model file, or the architecture and weights file), so a changed model never reads stale logits.
    ``n_computed`` counts images run through the model (not read from the cache) by this object.
    """

    kind = "image classifier"

    def __init__(
        self,
        identity: str,
        description: str,
        *,
        classes: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    ) -> None:
        self.identity = identity
        self.description = description
        self.classes = list(classes) if classes is not None else None
        self.class_names = list(class_names) if class_names is not None else None
        self.cache_dir = Path(cache_dir) / identity[:32] if cache_dir is not None else None
        self.n_computed = 0

    def _compute(self, batch: np.ndarray) -> np.ndarray:  # (1, C, H, W) float32 → (1, n_outputs)
        raise NotImplementedError

    def logits_of(self, image: np.ndarray) -> np.ndarray:
        """Logits (n_outputs,) float32 of one image ``(C, H, W)``: from the cache, else computed and cached."""
        a = np.ascontiguousarray(image, dtype=np.float32)
        if a.ndim != 3:
            raise TeacherError(f"{self.description}: an image must be (C, H, W), got shape {a.shape}")
        path = self.cache_dir / f"{image_key(a)}.npy" if self.cache_dir is not None else None
        if path is not None and path.is_file():
            try:
                return np.load(path, allow_pickle=False).astype(np.float32)
            except (OSError, ValueError):
                pass  # a damaged cache entry is recomputed
        out = np.asarray(self._compute(a[None]), dtype=np.float32).reshape(-1)
        self.n_computed += 1
        if not np.isfinite(out).all():
            raise TeacherError(f"{self.description}: the model returned NaN or infinity")
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, out)
            os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        return out

    def logits(self, images: Mapping[str, np.ndarray]) -> np.ndarray:
        """Logits (n_images, n_outputs) float32, rows in the order of ``images``."""
        rows = [self.logits_of(img) for img in images.values()]
        if not rows:
            raise TeacherError("no images given")
        if len({r.shape for r in rows}) != 1:
            raise TeacherError(f"{self.description}: outputs of different sizes {sorted({r.size for r in rows})}")
        return np.stack(rows)

    def to_precomputed(self, images: Mapping[str, np.ndarray]) -> PrecomputedTeacher:
        """A :class:`PrecomputedTeacher` over ``images`` (image id → ``(C, H, W)`` array) for ``train_student``.

        Its classes are ``classes`` given to the teacher (one per output, e.g. the 1000 ImageNet WordNet ids),
        else the output indices ``"0"``, ``"1"`` ...
        """
        logits = self.logits(images)
        classes = self.classes if self.classes is not None else [str(i) for i in range(logits.shape[1])]
        if len(classes) != logits.shape[1]:
            raise TeacherError(f"{self.description}: {len(classes)} classes given for {logits.shape[1]} outputs")
        return PrecomputedTeacher(
            images=[str(k) for k in images],
            classes=classes,
            logits=logits,
            class_names=self.class_names,
            description=self.description,
            source=self.description,
        )


class OnnxTeacher(ImageTeacher):
    """An ONNX image classifier (input float32 NCHW, first output logits) run with onnxruntime on the CPU.

    The cache identity is the sha256 of the ``.onnx`` file.
    """

    kind = "onnx"

    def __init__(
        self,
        path: str | Path,
        *,
        classes: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
    ) -> None:
        path = Path(path)
        if not path.is_file():
            raise TeacherError(f"ONNX teacher {str(path)!r} does not exist")
        digest = file_sha256(path)
        super().__init__(
            f"onnx-{digest}",
            f"ONNX image classifier {path.name} (sha256 {digest[:12]})",
            classes=classes,
            class_names=class_names,
            cache_dir=cache_dir,
        )
        self.path = path
        self._session: ort.InferenceSession | None = None

    def _compute(self, batch: np.ndarray) -> np.ndarray:
        if self._session is None:  # opened on the first miss: a fully cached teacher never loads the model
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            try:
                self._session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own exception types
                raise TeacherError(f"{self.path}: not a loadable ONNX model ({exc})") from exc
        name = self._session.get_inputs()[0].name
        return np.asarray(self._session.run(None, {name: batch})[0])


def _torchvision_models():
    try:
        import torchvision.models as models
    except Exception as exc:  # ImportError, or RuntimeError when its C++ ops do not match the installed torch
        import torch

        raise TeacherError(
            "TorchvisionTeacher needs torchvision's model definitions and `import torchvision.models` failed "
            f"({type(exc).__name__}: {exc}). Install the torchvision build that matches torch {torch.__version__} "
            "(for a CPU torch: pip install torchvision --index-url https://download.pytorch.org/whl/cpu)"
        ) from exc
    return models


class TorchvisionTeacher(ImageTeacher):
    """A torchvision architecture (``"googlenet"``, ``"alexnet"``, ``"vgg19"`` ...) with weights from a LOCAL file.

    ``weights_path`` is a ``state_dict`` saved with ``torch.save`` (read with ``weights_only=True``); nothing is
    downloaded. ``model_kwargs`` go to the constructor (default ``num_classes=1000``; GoogLeNet / Inception get
    ``aux_logits`` from whether the file has the auxiliary heads). The cache identity is sha256 of the architecture,
    the kwargs and the weights file's sha256. Runs on the CPU in eval mode.
    """

    kind = "torchvision"

    def __init__(
        self,
        arch: str,
        weights_path: str | Path,
        *,
        classes: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        cache_dir: str | Path | None = DEFAULT_CACHE_DIR,
        **model_kwargs: object,
    ) -> None:
        models = _torchvision_models()
        weights_path = Path(weights_path)
        if not weights_path.is_file():
            raise TeacherError(f"weights file {str(weights_path)!r} does not exist")
        builder = getattr(models, arch, None)
        if builder is None or not callable(builder):
            raise TeacherError(f"torchvision.models has no architecture {arch!r}")
        digest = file_sha256(weights_path)
        ident = hashlib.sha256(f"{arch}|{sorted(model_kwargs.items())!r}|{digest}".encode()).hexdigest()
        super().__init__(
            f"torchvision-{ident}",
            f"torchvision {arch} with weights {weights_path.name} (sha256 {digest[:12]})",
            classes=classes,
            class_names=class_names,
            cache_dir=cache_dir,
        )
        self.arch, self.weights_path, self.model_kwargs = arch, weights_path, dict(model_kwargs)
        self._builder = builder
        self._model: torch.nn.Module | None = None

    def _load(self):
        import torch

        state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        kwargs: dict[str, object] = {"weights": None, **self.model_kwargs}
        if self.arch in ("googlenet", "inception_v3"):
            kwargs.setdefault("aux_logits", any(k.startswith(("aux1.", "AuxLogits.")) for k in state))
            kwargs.setdefault("init_weights", False)
        model = self._builder(**kwargs)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise TeacherError(f"{self.weights_path}: weights do not fit torchvision {self.arch} ({exc})") from exc
        return model.eval()

    def _compute(self, batch: np.ndarray) -> np.ndarray:
        import torch

        if self._model is None:
            self._model = self._load()
        with torch.no_grad():
            out = self._model(torch.from_numpy(batch))
        if isinstance(out, tuple):  # GoogLeNet/Inception outputs in train mode; eval gives a tensor
            out = out[0]
        return out.numpy()
