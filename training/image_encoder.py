"""Image embeddings from a local ONNX image encoder and local images (issue 13); nothing is downloaded.

Where training takes precomputed image embeddings (an ``.npz`` of ``images`` → ``embeddings``, read by
:func:`training.embedding.load_image_embeddings`), it can instead take an image encoder exported to ONNX (e.g. a
CLIP/DINO vision tower the lab exported itself) plus the stimulus images:

- images: an ``.npz`` whose every key is an image id (as in the markers) and whose value is an H × W × 3 uint8
  array, or a folder of ``ID.png`` files (read with Pillow, converted to RGB);
- the encoder: one input, float32 ``(batch, 3, H, W)`` with values in [0, 1] (uint8 / 255; any mean/std
  normalisation belongs inside the graph), one output ``(batch, dim)``; run with ONNX Runtime on the CPU;
- embeddings: L2-normalised float32, cached as the same ``.npz`` format under ``cache_dir`` keyed by the sha256 of
  the encoder file and of the images, so a second run reads them back instead of encoding again.

Images are not resized: a resize (its size, interpolation and crop) changes the embedding, so it is the caller's
choice, made before; an image of another size than a fixed-size encoder expects is refused.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from bci_stream.zeroshot import unit_rows

from .errors import TrainingDataError

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path("~/.cache/bci-stream/image-embeddings")


def _image_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.png"))
    if not files:
        raise TrainingDataError(f"{folder}: no .png images; give a folder of ID.png files or an .npz of id → HxWx3")
    return files


def read_images(source: str | Path) -> dict[str, np.ndarray]:
    """Image id → H × W × 3 uint8 array, from an ``.npz`` (``allow_pickle=False``) or a folder of ``ID.png``.

    Raises
    ------
    TrainingDataError
        Missing source, an array that is not H × W × 3 uint8 (named), a PNG that cannot be read.
    """
    source = Path(source)
    images: dict[str, np.ndarray] = {}
    if source.is_dir():
        from PIL import Image

        for f in _image_files(source):
            try:
                with Image.open(f) as im:
                    images[f.stem] = np.asarray(im.convert("RGB"), dtype=np.uint8)
            except OSError as exc:
                raise TrainingDataError(f"{f}: not a readable PNG ({exc})") from exc
    elif source.is_file():
        try:
            with np.load(source, allow_pickle=False) as data:
                images = {str(k): np.asarray(data[k]) for k in data.files}
        except (ValueError, OSError) as exc:
            raise TrainingDataError(f"{source}: not a readable .npz of images ({exc})") from exc
    else:
        raise TrainingDataError(f"images {str(source)!r} do not exist; give an .npz of id → HxWx3 uint8 or a folder")
    if not images:
        raise TrainingDataError(f"{source}: holds no images")
    for key, arr in images.items():
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise TrainingDataError(
                f"{source}: image {key!r} is {arr.dtype} {arr.shape}; every image must be an H × W × 3 uint8 array"
            )
    return images


def _digest(path: Path) -> str:
    """sha256 of a file, or of a folder's PNGs (names and bytes, in name order)."""
    h = hashlib.sha256()
    if path.is_dir():
        for f in _image_files(path):
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def encode_images(
    encoder: str | Path, images: str | Path, *, cache_dir: str | Path | None = DEFAULT_CACHE, batch_size: int = 32
) -> tuple[list[str], np.ndarray]:
    """Every image's L2-normalised embedding: ``(ids sorted, (n_images, dim) float32)``.

    Parameters
    ----------
    encoder
        ONNX image encoder: input float32 (batch, 3, H, W) in [0, 1], output (batch, dim).
    images
        ``.npz`` of id → H × W × 3 uint8, or a folder of ``ID.png``.
    cache_dir
        Where embeddings are cached (``<sha256 prefix>.npz``, the :func:`save_image_embeddings` format); None: no
        cache.
    batch_size
        Images per ONNX Runtime call (an encoder with a fixed batch dimension uses that instead).

    Raises
    ------
    TrainingDataError
        Missing encoder or images, an encoder with other than one input/output, an image of the wrong size.
    """
    import onnxruntime as ort

    encoder, images = Path(encoder), Path(images)
    if not encoder.is_file():
        raise TrainingDataError(f"image encoder {str(encoder)!r} does not exist; give a local .onnx file")
    if not images.exists():
        raise TrainingDataError(f"images {str(images)!r} do not exist; give an .npz of id → HxWx3 uint8 or a folder")
    cache = None
    if cache_dir is not None:
        key = hashlib.sha256((_digest(encoder) + _digest(images)).encode()).hexdigest()[:24]
        cache = Path(cache_dir).expanduser() / f"{key}.npz"
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as data:
                ids, emb = [str(i) for i in data["images"]], np.asarray(data["embeddings"], dtype=np.float32)
            log.info("image embeddings of %s by %s read from the cache %s", images, encoder.name, cache)
            return ids, emb
    pictures = read_images(images)
    session = ort.InferenceSession(str(encoder), providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise TrainingDataError(f"{encoder}: an image encoder needs one input and one output, "
                                f"has {len(inputs)} and {len(outputs)}")  # fmt: skip
    shape = inputs[0].shape  # e.g. ['batch', 3, 224, 224]; str/None = dynamic
    fixed_hw = tuple(d if isinstance(d, int) else None for d in shape[2:4]) if len(shape) == 4 else (None, None)
    if isinstance(shape[0], int):
        batch_size = shape[0]
    ids = sorted(pictures)
    for i in ids:
        h, w = pictures[i].shape[:2]
        if any(f is not None and f != d for f, d in zip(fixed_hw, (h, w), strict=True)):
            raise TrainingDataError(
                f"{images}: image {i!r} is {h} × {w} but {encoder.name} takes {fixed_hw[0]} × {fixed_hw[1]}; "
                "resize the images first (the resize is part of the embedding, so it is your choice)"
            )
    rows = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        try:
            x = np.stack([pictures[i] for i in chunk]).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
        except ValueError as exc:  # images of different sizes in one batch
            raise TrainingDataError(f"{images}: images {chunk[0]!r} … differ in size; give same-size images") from exc
        out = session.run([outputs[0].name], {inputs[0].name: x})[0]
        rows.append(np.asarray(out, dtype=np.float64).reshape(len(chunk), -1))
    emb = unit_rows(np.concatenate(rows)).astype(np.float32)
    if not np.all(np.isfinite(emb)):
        raise TrainingDataError(f"{encoder}: non-finite embeddings for images of {images}")
    log.info("encoded %d images of %s with %s: %d-d embeddings", len(ids), images, encoder.name, emb.shape[1])
    if cache is not None:
        save_image_embeddings(cache, ids, emb)
        log.info("image embeddings cached at %s", cache)
    return ids, emb


def save_image_embeddings(path: str | Path, ids: list[str], embeddings: np.ndarray) -> Path:
    """Write the ``.npz`` that :func:`training.embedding.load_image_embeddings` reads (``images``, ``embeddings``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, images=np.asarray(ids, dtype=str), embeddings=np.asarray(embeddings, dtype=np.float32))
    tmp.replace(path)  # atomic: a cache hit never reads half a file
    return path


def image_embeddings(
    source: str | Path, images_shown: list[str], *, images: str | Path | None = None,
    cache_dir: str | Path | None = DEFAULT_CACHE,
) -> np.ndarray:  # fmt: skip
    """The embedding of each image in ``images_shown`` (n, dim) float32: from a precomputed ``.npz`` (``source``)
    or from an ONNX image encoder (``source`` ending in ``.onnx``) run over ``images``.

    Raises
    ------
    TrainingDataError
        An encoder without ``images``, or an image shown that the source lacks (named).
    """
    from .embedding import load_image_embeddings

    source = Path(source)
    if source.suffix.lower() != ".onnx":
        return load_image_embeddings(source, images_shown)
    if images is None:
        raise TrainingDataError(f"{source} is an image encoder: give the images it should encode (.npz or folder)")
    ids, emb = encode_images(source, images, cache_dir=cache_dir)
    row = {i: k for k, i in enumerate(ids)}
    absent = sorted({i for i in images_shown if i not in row})
    if absent:
        raise TrainingDataError(f"{images}: no image for ids {absent[:5]} ({len(absent)} in all)")
    return emb[[row[i] for i in images_shown]]
