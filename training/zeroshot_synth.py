"""Synthetic EEG with a planted image-embedding structure, for zero-shot retrieval (issue 13).

Each class has a random unit vector; each image of it is that vector plus noise (normalised): the "precomputed
image embeddings". An epoch shown image *i* is ``amplitude · Σ_k e_i[k] · B_k + noise``, where the ``B_k``
(``dim`` of them) are fixed spatio-temporal patterns (a delayed Gaussian-windowed oscillation on the
``informative`` channels only) and the noise is white, unit variance, on every channel. A linear map from EEG back
to the image embedding therefore exists for *every* class, seen or not, so an encoder trained on some classes can
retrieve classes it never saw, and only the informative channels carry information (what the maps test checks).
Units are arbitrary (already z-scored); no filter is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: 10-20 names, so MNE's standard montage places them on a scalp map.
CHANNELS = ["Fp1", "Fp2", "F7", "F3", "F4", "F8", "T7", "C3", "C4", "T8", "P7", "P3", "P4", "P8", "O1", "O2"]
INFORMATIVE = ["P7", "O1", "O2", "P8"]


@dataclass
class EmbeddingWorld:
    """Epochs ``X`` (n, n_times, n_chans) float32, their class ``labels`` and ``images`` (indices), the image
    embeddings ``image_emb`` (n_images, dim) and their classes ``image_class``; ``class_table`` (n_classes, dim)
    is each class's mean image embedding, normalised; classes split into ``train``/``val``/``test`` index arrays."""

    X: np.ndarray
    labels: np.ndarray
    images: np.ndarray
    image_emb: np.ndarray
    image_class: np.ndarray
    class_names: list[str]
    class_table: np.ndarray
    channels: list[str]
    informative: list[str]
    sfreq: float
    train_classes: np.ndarray
    val_classes: np.ndarray
    test_classes: np.ndarray

    def rows(self, classes: np.ndarray) -> np.ndarray:
        """Indices of the epochs whose class is in ``classes``."""
        return np.flatnonzero(np.isin(self.labels, classes))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _patterns(rng: np.random.Generator, dim: int, n_times: int, sfreq: float, spatial: np.ndarray) -> np.ndarray:
    """``dim`` patterns (dim, n_times, n_chans): a Gaussian-windowed 4–20 Hz oscillation at 80–400 ms, with random
    weights on the channels where ``spatial`` is 1."""
    t = np.arange(n_times) / sfreq
    latency = rng.uniform(0.08, 0.4, dim)[:, None]
    freq = rng.uniform(4.0, 20.0, dim)[:, None]
    wave = np.exp(-(((t - latency) / 0.05) ** 2)) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi, (dim, 1)))
    weights = rng.standard_normal((dim, len(spatial))) * spatial
    return wave[:, :, None] * weights[:, None, :]


def synthesize_embedding_world(
    *, n_classes: int = 32, images_per_class: int = 3, repeats: int = 4, dim: int = 16, n_times: int = 64,
    sfreq: float = 128.0, amplitude: float = 2.0, image_noise: float = 0.5, split: tuple[int, int] = (16, 8),
    seed: int = 0, image_emb: np.ndarray | None = None,
) -> EmbeddingWorld:  # fmt: skip
    """The planted world; ``split`` = (training classes, validation classes), the rest are test classes.

    ``image_emb`` (n_classes · images_per_class, dim): plant these image embeddings (e.g. an image encoder's, image
    ``c · images_per_class + j`` of class ``c``) instead of drawing them; ``dim`` is then their width.
    """
    rng = np.random.default_rng(seed)
    spatial = np.isin(CHANNELS, INFORMATIVE).astype(float)
    image_class = np.repeat(np.arange(n_classes), images_per_class)
    if image_emb is not None:
        if image_emb.ndim != 2 or len(image_emb) != len(image_class):
            raise ValueError(f"image_emb has shape {image_emb.shape}; expected ({len(image_class)}, dim)")
        dim = image_emb.shape[1]
    patterns = _patterns(rng, dim, n_times, sfreq, spatial)
    centres = _unit(rng.standard_normal((n_classes, dim)))
    if image_emb is None:
        image_emb = _unit(
            centres[image_class] + image_noise * rng.standard_normal((len(image_class), dim)) / np.sqrt(dim)
        )
    else:
        image_emb = _unit(np.asarray(image_emb, dtype=np.float64))
    images = rng.permutation(np.repeat(np.arange(len(image_class)), repeats))  # randomised order, not blocks
    signal = amplitude * np.einsum("nk,ktc->ntc", image_emb[images], patterns)
    X = (signal + rng.standard_normal(signal.shape)).astype(np.float32)
    table = _unit(np.stack([image_emb[image_class == c].mean(0) for c in range(n_classes)]))
    order = rng.permutation(n_classes)
    n_train, n_val = split
    return EmbeddingWorld(
        X=X, labels=image_class[images], images=images, image_emb=image_emb.astype(np.float32),
        image_class=image_class, class_names=[f"class{c:02d}" for c in range(n_classes)],
        class_table=table.astype(np.float32), channels=list(CHANNELS), informative=list(INFORMATIVE),
        sfreq=sfreq, train_classes=np.sort(order[:n_train]), val_classes=np.sort(order[n_train : n_train + n_val]),
        test_classes=np.sort(order[n_train + n_val :]),
    )  # fmt: skip
