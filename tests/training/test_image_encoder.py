"""Image embeddings from an ONNX image encoder over local images (issue 13): equal to torch's, cached, trainable."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from training.embedding import SMALL_OPTIONS, embed, retrieval, train_embedding
from training.errors import TrainingDataError
from training.image_encoder import encode_images, image_embeddings, read_images
from training.zeroshot_synth import synthesize_embedding_world

N_CLASSES, PER_CLASS, SIDE, DIM = 16, 3, 12, 8


class TinyEncoder(nn.Module):
    """Centre → conv → ReLU → mean pool → linear: (batch, 3, H, W) in [0, 1] → (batch, DIM); any image size.

    Centred input and no biases, so different colours point in different directions (a random encoder with biases
    maps every image to nearly the same direction, and no class could be told from another)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.head = nn.Linear(16, DIM, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x - 0.5)).mean(dim=(2, 3)))


def _images(seed: int = 0) -> dict[str, np.ndarray]:
    """Class c's images: its own colour gradient plus a little per-image noise, ids ``c<cc>_<j>``."""
    rng = np.random.default_rng(seed)
    out = {}
    for c in range(N_CLASSES):
        base = rng.uniform(0, 255, (1, 1, 3)) * np.linspace(0.2, 1.0, SIDE)[:, None, None] + rng.uniform(0, 60, 3)
        for j in range(PER_CLASS):
            img = base + rng.normal(0, 8, (SIDE, SIDE, 3))
            out[f"c{c:02d}_{j}"] = np.clip(img, 0, 255).astype(np.uint8)
    return out


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A tiny torch image encoder, exported to ONNX (dynamic batch, height and width)."""
    torch.manual_seed(0)
    model = TinyEncoder().eval()
    path = tmp_path_factory.mktemp("enc") / "encoder.onnx"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (torch.rand(2, 3, SIDE, SIDE),), str(path), input_names=["image"],
                          output_names=["embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={"image": {0: "batch", 2: "h", 3: "w"}, "embedding": {0: "batch"}})  # fmt: skip
    return model, path


def _torch_embeddings(model, images: dict[str, np.ndarray]) -> np.ndarray:
    x = torch.from_numpy(np.stack([images[i] for i in sorted(images)]).astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    with torch.no_grad():
        e = model(x).numpy().astype(np.float64)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def test_encoder_embeddings_equal_torch_from_npz_and_from_pngs_and_come_back_from_the_cache(encoder, tmp_path, caplog):
    from PIL import Image

    model, path = encoder
    images = _images()
    npz = tmp_path / "images.npz"
    np.savez(npz, **images)
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, arr in images.items():
        Image.fromarray(arr).save(folder / f"{i}.png")
    want = _torch_embeddings(model, images)
    cache = tmp_path / "cache"
    for source in (npz, folder):
        ids, emb = encode_images(path, source, cache_dir=cache, batch_size=5)  # batches of 5: a ragged last one
        assert ids == sorted(images) and emb.dtype == np.float32 and emb.shape == (len(images), DIM)
        assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
        assert np.abs(emb - want).max() < 1e-5
    assert len(list(cache.glob("*.npz"))) == 2  # one per (encoder, images)
    with caplog.at_level(logging.INFO, logger="training.image_encoder"):
        ids2, emb2 = encode_images(path, npz, cache_dir=cache)
    assert "read from the cache" in caplog.text and ids2 == ids and np.array_equal(emb2, emb)
    # the images changed: not the cached embeddings
    images["c00_0"] = 255 - images["c00_0"]
    np.savez(npz, **images)
    _, emb3 = encode_images(path, npz, cache_dir=cache)
    assert not np.allclose(emb3[0], emb2[0]) and np.allclose(emb3[1:], emb2[1:], atol=1e-6)


def test_bad_images_and_missing_ids_are_named(encoder, tmp_path):
    _, path = encoder
    bad = tmp_path / "bad.npz"
    np.savez(bad, ok=np.zeros((4, 4, 3), np.uint8), grey=np.zeros((4, 4), np.uint8))
    with pytest.raises(TrainingDataError, match="'grey'"):
        read_images(bad)
    good = tmp_path / "good.npz"
    np.savez(good, a=np.zeros((4, 4, 3), np.uint8), b=np.full((4, 4, 3), 200, np.uint8))
    with pytest.raises(TrainingDataError, match="no image for ids \\['z'\\]"):
        image_embeddings(path, ["a", "z"], images=good, cache_dir=None)
    with pytest.raises(TrainingDataError, match="give the images"):
        image_embeddings(path, ["a"], cache_dir=None)


def test_training_from_encoder_embeddings_retrieves_unseen_classes(encoder, tmp_path):
    """End to end: images → ONNX encoder → planted into synthetic EEG → NICE student → unseen classes retrieved."""
    _, path = encoder
    images = _images()
    npz = tmp_path / "images.npz"
    np.savez(npz, **images)
    shown = [f"c{c:02d}_{j}" for c in range(N_CLASSES) for j in range(PER_CLASS)]
    rows = image_embeddings(path, shown, images=npz, cache_dir=tmp_path / "cache")
    w = synthesize_embedding_world(n_classes=N_CLASSES, images_per_class=PER_CLASS, repeats=6, split=(8, 4),
                                   image_emb=rows, seed=3)  # fmt: skip
    assert np.allclose(w.image_emb, rows, atol=1e-6)
    tr, va, te = w.rows(w.train_classes), w.rows(w.val_classes), w.rows(w.test_classes)
    fit = train_embedding(w.X, w.image_emb[w.images], w.labels, tr, va, w.class_table, encoder="nice",
                          objective="infonce", options=SMALL_OPTIONS["nice"], epochs=12, lr=3e-3, seed=0)  # fmt: skip
    test_labels = np.searchsorted(w.test_classes, w.labels[te])
    r = retrieval(embed(fit.model, w.X[te]), test_labels, w.class_table[w.test_classes], permutations=300)
    assert r["k"] == 4 and r["n"] == 4 * PER_CLASS * 6
    assert r["top1"] > r["chance_top1"] + 0.2 and r["p_top1"] < 0.01, r


def test_cli_writes_the_npz_training_reads(encoder, tmp_path, capsys):
    from training.cli import main
    from training.embedding import load_image_embeddings

    model, path = encoder
    images = _images()
    npz = tmp_path / "images.npz"
    np.savez(npz, **images)
    out = tmp_path / "emb.npz"
    assert main(["image-embeddings", str(path), "--images", str(npz), "--out", str(out), "--no-cache"]) == 0
    assert '"images": 48' in capsys.readouterr().out
    ids = sorted(images)
    assert np.abs(load_image_embeddings(out, ids) - _torch_embeddings(model, images)).max() < 1e-5
    assert main(["image-embeddings", str(tmp_path / "none.onnx"), "--images", str(npz), "--out", str(out)]) == 2
    assert "none.onnx" in capsys.readouterr().err


def test_an_embedding_run_takes_its_image_embeddings_from_an_encoder(encoder, tmp_path):
    """``[embedding] images = ENCODER.onnx`` with ``image_files``: the run's rows are the encoder's embeddings."""
    from training.embedding_run import _image_rows
    from training.run_config import RunConfig

    model, path = encoder
    images = _images()
    npz = tmp_path / "images.npz"
    np.savez(npz, **images)
    config = RunConfig.model_validate({
        "data": {"synth": {"classes": 8}}, "student": {"name": "nice"},
        "embedding": {"images": str(path), "image_files": str(npz), "image_cache": str(tmp_path / "cache")},
    })  # fmt: skip
    shown = ["c03_1", "c00_0", "c03_1"]
    rows = _image_rows(config, shown)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    want = _torch_embeddings(model, images)
    order = sorted(images)
    assert np.abs(rows - want[[order.index(i) for i in shown]]).max() < 1e-5
