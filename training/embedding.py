"""Embedding students trained against precomputed image embeddings, and zero-shot retrieval (issue 13).

:func:`train_embedding` trains an :data:`training.zoo.embedding.EMBEDDERS` student through the one loop
(:func:`training.loop.fit_model`, ``name="embedding"``) with the §2 compatibility hinge or the §3 symmetric
InfoNCE as the loss hook. Validation is on *other classes* than training (the validation classes), so the loop's
best epoch is chosen on zero-shot performance without looking at the test classes. :func:`retrieval` scores
k-way zero-shot retrieval against a class table (class → embedding): top-1/top-5, chance, permutation p.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SettingError, TrainingDataError

log = logging.getLogger(__name__)


@dataclass
class EmbeddingFit:
    model: Any
    history: list[dict[str, float]]
    best_epoch: int


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def retrieval(
    emb: np.ndarray, labels: np.ndarray, table: np.ndarray, *, ks: tuple[int, ...] = (1, 5),
    permutations: int = 1000, seed: int = 0,
) -> dict[str, float]:  # fmt: skip
    """k-way zero-shot retrieval: each epoch's embedding against every row of ``table`` (k rows, cosine).

    ``labels`` are row indices into ``table``. Returns ``top1``, ``top5`` … (fractions), ``chance_top1`` … (k'/k),
    ``k``, ``n`` and ``p_top1``: the permutation p of top-1 (labels shuffled ``permutations`` times; (1 + #≥) /
    (1 + permutations)).
    """
    labels = np.asarray(labels, dtype=np.int64)
    sims = _unit(np.asarray(emb, dtype=np.float64)) @ _unit(np.asarray(table, dtype=np.float64)).T
    k = sims.shape[1]

    def rank_of(lab: np.ndarray) -> np.ndarray:  # how many classes score above the true one
        return (sims > sims[np.arange(len(lab)), lab][:, None]).sum(1)

    ranks = rank_of(labels)
    out: dict[str, float] = {"k": k, "n": len(labels)}
    for kk in ks:
        out[f"top{kk}"] = float(np.mean(ranks < kk))
        out[f"chance_top{kk}"] = min(kk, k) / k
    rng = np.random.default_rng(seed)
    null = np.array([np.mean(rank_of(rng.permutation(labels)) < 1) for _ in range(permutations)])
    out["p_top1"] = float((1 + np.sum(null >= out["top1"])) / (1 + permutations))
    return out


def _loss_hook(objective: str, labels: Any, margin: float, seed: int) -> Any:
    """``loss(outputs, batch)`` for the loop: ``batch.teacher`` holds the rows' image embeddings."""
    import torch

    from .losses import compatibility_hinge, symmetric_infonce

    generator = torch.Generator().manual_seed(seed)

    def loss(out: Any, batch: Any) -> Any:
        images = torch.as_tensor(batch.teacher)
        if objective == "infonce":
            return symmetric_infonce(out, images, model_ref[0].logit_scale)
        # negatives: the image of another row of the batch; rows drawing their own class are masked. Validation
        # (no grad) draws from a fresh generator so its loss is the same function every epoch.
        gen = generator if torch.is_grad_enabled() else torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(out), generator=gen)
        cls = labels[torch.as_tensor(batch.index)]
        return compatibility_hinge(out, images, images[perm], margin, weight=(cls != cls[perm]).float())

    model_ref: list[Any] = []
    loss.model_ref = model_ref  # type: ignore[attr-defined]
    return loss


def train_embedding(
    X: np.ndarray, image_rows: np.ndarray, labels: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
    val_table: np.ndarray, *, encoder: str = "nice", objective: str = "infonce", dim: int | None = None,
    options: dict[str, Any] | None = None, epochs: int = 20, lr: float = 1e-3, batch_size: int = 32,
    margin: float = 0.2, patience: int | None = None, seed: int = 0,
) -> EmbeddingFit:  # fmt: skip
    """Train an embedding student; the best epoch is the lowest validation loss (validation classes only).

    ``X`` (n, n_times, n_chans) float32; ``image_rows`` (n, dim): the embedding of the image each epoch was shown
    with; ``labels`` (n,) class indices (the hinge's negatives must be of another class); ``val_table``
    (n_classes, dim) the class table the history's ``val_top1`` is scored on (labels index it).
    """
    import torch

    from .loop import Batch, Callback, IndexBatches, LoopConfig, fit_model
    from .zoo.embedding import EMBEDDERS

    if encoder not in EMBEDDERS:
        raise SettingError(f"encoder {encoder!r} is not an embedding student; known: {', '.join(EMBEDDERS)}")
    if objective not in ("hinge", "infonce"):
        raise SettingError(f"objective {objective!r}: use 'hinge' (§2) or 'infonce' (§3)")
    if len(X) != len(image_rows) or len(X) != len(labels):
        raise TrainingDataError(f"{len(X)} epochs but {len(image_rows)} image embeddings and {len(labels)} labels")
    dim = dim or image_rows.shape[1]
    torch.manual_seed(seed)
    model = EMBEDDERS[encoder](X.shape[2], dim, X.shape[1], 0.0, **(options or {}))
    Xt, It = torch.from_numpy(np.asarray(X, np.float32)), torch.from_numpy(np.asarray(image_rows, np.float32))
    yt = torch.from_numpy(np.asarray(labels, np.int64))
    loss = _loss_hook(objective, yt, margin, seed)
    loss.model_ref.append(model)
    val_idx_t = torch.as_tensor(val_idx)

    class Retrieval(Callback):
        # the loop's accuracies are argmax-of-logits; for embeddings they mean nothing, so replace them
        def on_epoch_end(self, state: Any, row: dict[str, float]) -> None:
            row.pop("train_accuracy", None)
            row.pop("val_accuracy", None)
            out = state.last_val_outputs.numpy()
            row["val_top1"] = retrieval(out, labels[val_idx], val_table, permutations=0)["top1"]

    result = fit_model(
        model, IndexBatches(Xt, yt.float(), train_idx, batch_size=batch_size, seed=seed, teacher=It, order="generator"),
        Batch(Xt[val_idx_t], yt[val_idx_t], teacher=It[val_idx_t], index=val_idx_t), loss=loss,
        config=LoopConfig(epochs=epochs, lr=lr, patience=patience, keep_best=True), callbacks=[Retrieval()],
        name="embedding",
    )  # fmt: skip
    return EmbeddingFit(result.model, result.history, result.state.best_epoch)


def embed(model: Any, X: np.ndarray) -> np.ndarray:
    """Embeddings (n, dim) of ``X`` in eval mode."""
    from .fit import predict_logits

    return predict_logits(model, np.asarray(X, dtype=np.float32))


def save_table(path: str | Path, classes: list[str], table: np.ndarray) -> Path:
    """Write a class table ``.npz``: ``classes`` (str, k) and ``embeddings`` (float32, k × dim)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, classes=np.asarray(classes, dtype=str), embeddings=np.asarray(table, dtype=np.float32))
    return path


def embedding_card(model: Any, name: str, channels: list[str], sfreq: float, n_times: int, *,
                   classes: list[str] | None = None, table: np.ndarray | None = None,
                   provenance: dict[str, Any] | None = None) -> Any:  # fmt: skip
    """The model card of an embedding student (task ``embedding``, output ``embedding``), optionally with a table."""
    from bci_stream.card import InputSpec, ModelCard, OutputSpec

    return ModelCard(
        name=name, version="1.0.0", task="embedding",
        input=InputSpec(sfreq=sfreq, n_times=n_times, channels=channels, units="V"),
        output=OutputSpec(
            name="embedding", dim=model.dim, temperature=round(model.temperature, 6), classes=list(classes or []),
            table=None if table is None else [[float(v) for v in row] for row in np.asarray(table, np.float32)],
        ),
        provenance=provenance or {},
    )  # fmt: skip


SMALL_OPTIONS: dict[str, dict[str, Any]] = {
    "nice": {"filters": 16},
    "spectrogram-cnn": {"filters": (16, 16)},
    "joint-encoder": {"rnn_hidden": 32, "filters": (16, 16, 32, 32)},
}


def zeroshot_synthetic(
    *, encoder: str = "nice", objectives: tuple[str, ...] = ("infonce", "hinge"), epochs: int = 15,
    lr: float = 3e-3, seed: int = 0, permutations: int = 1000, out: str | Path | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Zero-shot retrieval on held-out classes of :func:`training.zeroshot_synth.synthesize_embedding_world`.

    Trains on the training classes, selects the epoch on the validation classes, scores the test classes (never
    seen, never used for selection) with the true class table and with a shuffled one (control: rows permuted
    so no class keeps its own embedding). With ``out``, writes ``<encoder>-<objective>.onnx`` (card with the
    test classes' table) and ``table.npz`` there. One row per (objective, table).
    """
    from .export import export_onnx
    from .zeroshot_synth import synthesize_embedding_world

    w = synthesize_embedding_world(seed=seed)
    tr, va, te = w.rows(w.train_classes), w.rows(w.val_classes), w.rows(w.test_classes)
    test_table = w.class_table[w.test_classes]
    test_labels = np.searchsorted(w.test_classes, w.labels[te])
    k = len(w.test_classes)
    shuffled = test_table[np.roll(np.arange(k), 1)]  # a derangement: every class gets another's embedding
    rows = []
    for objective in objectives:
        fit = train_embedding(
            w.X, w.image_emb[w.images], w.labels, tr, va, w.class_table, encoder=encoder, objective=objective,
            options=SMALL_OPTIONS.get(encoder), epochs=epochs, lr=lr, seed=seed,
        )  # fmt: skip
        emb = embed(fit.model, w.X[te])
        for table_name, table in (("true", test_table), ("shuffled (control)", shuffled)):
            r = retrieval(emb, test_labels, table, permutations=permutations, seed=seed)
            rows.append({"encoder": encoder, "objective": objective, "table": table_name,
                         "best_epoch": fit.best_epoch, **r})  # fmt: skip
        if out is not None:
            names = [w.class_names[c] for c in w.test_classes]
            card = embedding_card(fit.model, f"zeroshot-{encoder}-{objective}", w.channels, w.sfreq, w.X.shape[1],
                                  classes=names, table=test_table,
                                  provenance={"student": {"name": encoder}, "loss": objective, "seed": seed,
                                              "data": "training.zeroshot_synth"})  # fmt: skip
            export_onnx(fit.model, card, Path(out) / f"{encoder}-{objective}.onnx")
            save_table(Path(out) / "table.npz", names, test_table)
    return rows


def retrieval_markdown(rows: list[dict[str, Any]]) -> str:
    """The retrieval table as Markdown."""
    lines = ["| encoder | objective | class table | k | n | top-1 | chance | top-5 | chance | p (top-1) | best epoch |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r['encoder']} | {r['objective']} | {r['table']} | {r['k']} | {r['n']} | {r['top1']:.3f} | "
            f"{r['chance_top1']:.3f} | {r['top5']:.3f} | {r['chance_top5']:.3f} | {r['p_top1']:.3g} | "
            f"{r['best_epoch']} |"
        )
    return "\n".join(lines)


def load_image_embeddings(path: str | Path, images: list[str]) -> np.ndarray:
    """The precomputed embedding of each of ``images`` (n, dim) float32, from an ``.npz`` with ``images`` (str,
    image ids as in the markers) and ``embeddings`` (float, n_images × dim); read with ``allow_pickle=False``.

    Raises
    ------
    TrainingDataError
        Missing file or keys, duplicate ids, or an image id of the data that the file lacks (named).
    """
    path = Path(path)
    if not path.is_file():
        raise TrainingDataError(f"image embeddings {str(path)!r} do not exist; give an .npz with images/embeddings")
    with np.load(path, allow_pickle=False) as data:
        missing = sorted({"images", "embeddings"} - set(data.files))
        if missing:
            raise TrainingDataError(f"{path}: lacks {missing}; it needs 'images' (ids) and 'embeddings'")
        ids, emb = [str(i) for i in data["images"]], np.asarray(data["embeddings"], dtype=np.float32)
    if emb.ndim != 2 or len(ids) != len(emb):
        raise TrainingDataError(f"{path}: {len(ids)} image ids but embeddings of shape {emb.shape}")
    if len(set(ids)) != len(ids):
        raise TrainingDataError(f"{path}: duplicate image ids")
    row = {i: k for k, i in enumerate(ids)}
    absent = sorted({i for i in images if i not in row})
    if absent:
        raise TrainingDataError(f"{path}: no embedding for images {absent[:5]} ({len(absent)} in all)")
    return _unit(emb[[row[i] for i in images]]).astype(np.float32)
