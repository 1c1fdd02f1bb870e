"""Train the valence TCN on feature sequences, with (λ > 0) or without (λ = 0) the teacher's features.

- Features are standardised per feature with mean/std fitted on the training sequences only
  (:class:`Standardizer`); the statistics travel with the model (checkpoint, then inside the ONNX graph).
- Training runs a fixed number of optimiser steps: no early stopping, no model selection on any held-out data.
- Each step draws ``batch_size`` trials (with replacement) and a random crop of ``crop`` steps from each
  (shorter trials are padded and masked); the loss's CCC is pooled over all steps of the batch.
- The same ``seed`` gives the same initial weights and the same crops whatever λ is, so KD vs no-KD is paired.
- The steps go through the one training loop (:func:`training.loop.fit_model`, ``name="valence"``) as one epoch of
  ``steps`` batches: :class:`CropBatches` is its batch sampler, :func:`valence_loss` its loss hook, and the history
  every ``log_every`` steps a callback. No validation split, hence no early stopping or checkpoint selection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SettingError, TrainingDataError
from ..loop import Batch, Callback, LoopConfig, LoopState, Step, fit_model
from .data import FeatureSetup, ValenceSequence
from .model import DEFAULT_CHANNELS, DEFAULT_DILATIONS, DEFAULT_DROPOUT, DEFAULT_KERNEL, ValenceTCN, valence_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
    """Student and optimisation settings (defaults: METHODS.md §4 student, λ = 1)."""

    channels: tuple[int, ...] = DEFAULT_CHANNELS
    kernel_size: int = DEFAULT_KERNEL
    dilations: tuple[int, ...] = DEFAULT_DILATIONS
    dropout: float = DEFAULT_DROPOUT
    kd_weight: float = 1.0  # λ; 0 = no teacher
    l1_reduction: str = "sum"  # per-step L1 distance ("sum" over feature dims) or its "mean" over dims
    steps: int = 300  # optimiser steps (fixed; no early stopping)
    batch_size: int = 16
    crop: int = 64  # feature steps per training crop (16 s at 4 Hz)
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0

    def with_(self, **changes: Any) -> FitConfig:
        return FitConfig(**{**asdict(self), **changes})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FitConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise SettingError(f"unknown fit setting(s) {unknown}; known: {sorted(known)}")
        v = dict(values)
        for key in ("channels", "dilations"):
            if key in v:
                v[key] = tuple(int(c) for c in v[key])
        return cls(**v)


@dataclass
class Standardizer:
    """Per-feature z-scoring; fit on training sequences only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, seqs: Sequence[ValenceSequence]) -> Standardizer:
        X = np.concatenate([s.X for s in seqs]).astype(np.float64)
        std = X.std(axis=0)
        return cls(X.mean(axis=0), np.where(std > 1e-12, std, 1.0))

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return np.asarray((X - self.mean) / self.std, dtype=np.float32)


@dataclass
class TrainedValence:
    """A trained student with everything needed to run it on new features."""

    model: ValenceTCN
    standardizer: Standardizer
    config: FitConfig
    n_features: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    setup: FeatureSetup | None = None
    info: dict[str, Any] = field(default_factory=dict)
    output_range: tuple[float, float] | None = None  # 1st-99th percentile of the outputs on the training data


def _batch(
    seqs: Sequence[ValenceSequence],
    Xs: Sequence[np.ndarray],
    picks: np.ndarray,
    starts: np.ndarray,
    crop: int,
    with_teacher: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    n_f = Xs[0].shape[1]
    B = len(picks)
    X = np.zeros((B, crop, n_f), dtype=np.float32)
    y = np.zeros((B, crop), dtype=np.float32)
    m = np.zeros((B, crop), dtype=np.float32)
    T = None
    if with_teacher:
        teacher0 = seqs[picks[0]].teacher
        assert teacher0 is not None
        d = teacher0.shape[1]
        T = np.zeros((B, crop, d), dtype=np.float32)
    for row, (i, s0) in enumerate(zip(picks, starts, strict=True)):
        n = min(crop, len(seqs[i]) - s0)
        X[row, :n] = Xs[i][s0 : s0 + n]
        y[row, :n] = seqs[i].y[s0 : s0 + n]
        m[row, :n] = 1.0
        if T is not None:
            teacher = seqs[i].teacher
            assert teacher is not None
            T[row, :n] = teacher[s0 : s0 + n]
    return (
        torch.from_numpy(X),
        torch.from_numpy(y),
        torch.from_numpy(m),
        None if T is None else torch.from_numpy(T),
    )


class CropBatches:
    """The valence batch sampler: ``steps`` batches of ``batch_size`` random crops, drawn with replacement."""

    def __init__(self, seqs: Sequence[ValenceSequence], Xs: Sequence[np.ndarray], config: FitConfig) -> None:
        self.seqs, self.Xs, self.config = seqs, Xs, config
        self.with_teacher = config.kd_weight > 0
        self.rng = np.random.default_rng(config.seed)
        self.lengths = np.array([len(s) for s in seqs])

    def batches(self, epoch: int) -> Iterator[Batch]:
        c = self.config
        for _ in range(c.steps):
            picks = self.rng.integers(0, len(self.seqs), c.batch_size)
            starts = np.array([self.rng.integers(0, max(self.lengths[i] - c.crop, 0) + 1) for i in picks])
            X, y, m, T = _batch(self.seqs, self.Xs, picks, starts, c.crop, self.with_teacher)
            yield Batch(X, y, teacher=T, mask=m)

    def __len__(self) -> int:
        return self.config.steps


class _History(Callback):
    """The loss parts every ``log_every`` steps (and at the last step), logged and kept."""

    def __init__(self, steps: int, log_every: int) -> None:
        self.steps, self.log_every = steps, log_every
        self.history: list[dict[str, float]] = []

    def on_step(self, state: LoopState, step: Step) -> None:
        if step.step % self.log_every == 0 or step.step == self.steps:
            parts = {**step.parts, "step": step.step}
            self.history.append(parts)
            log.info("step %d/%d  loss %.4f  ccc %.3f%s", step.step, self.steps, parts["loss"], parts["ccc"],
                     f"  l1 {parts['l1']:.4f}" if "l1" in parts else "")  # fmt: skip


def train_valence(
    train: Sequence[ValenceSequence],
    config: FitConfig = FitConfig(),
    *,
    setup: FeatureSetup | None = None,
    log_every: int = 100,
) -> TrainedValence:
    """Train a :class:`ValenceTCN` on ``train`` for ``config.steps`` optimiser steps.

    Raises
    ------
    TrainingDataError
        If λ > 0 and a training sequence has no teacher features, or their width differs from the student's
        (a ``ValueError`` too, for callers of one release).
    """
    if not train:
        raise TrainingDataError("no training sequences")
    if config.kd_weight > 0:
        missing = [s.trial for s in train if s.teacher is None]
        if missing:
            raise TrainingDataError(
                f"kd_weight {config.kd_weight:g} needs teacher features; trials without: {missing[:5]}"
            )
        dims = {s.teacher.shape[1] for s in train}  # type: ignore[union-attr]
        if dims != {config.channels[-1]}:
            raise TrainingDataError(
                f"teacher features are {sorted(dims)}-d but the student's are {config.channels[-1]}-d"
            )
    t0 = time.perf_counter()
    standardizer = Standardizer.fit(train)
    Xs = [standardizer(s.X) for s in train]
    n_features = Xs[0].shape[1]
    torch.manual_seed(config.seed)
    model = ValenceTCN(
        n_features,
        channels=config.channels,
        kernel_size=config.kernel_size,
        dilations=config.dilations,
        dropout=config.dropout,
    )

    def loss(outputs: tuple[torch.Tensor, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        pred, feats = outputs
        return valence_loss(pred, batch.y, feats, batch.teacher, config.kd_weight, batch.mask, config.l1_reduction)

    history = _History(config.steps, log_every)
    loop = LoopConfig(epochs=1, lr=config.lr, weight_decay=config.weight_decay)  # one epoch of `steps` batches
    fit_model(model, CropBatches(train, Xs, config), None, loss=loss, config=loop, callbacks=[history], name="valence")
    trained = TrainedValence(model, standardizer, config, n_features, history.history, time.perf_counter() - t0, setup)
    # The display range a client should draw (card output.range): where the outputs lie on the training data.
    outputs = np.concatenate(predict(trained, train))
    trained.output_range = (float(np.percentile(outputs, 1)), float(np.percentile(outputs, 99)))
    return trained


def predict(trained: TrainedValence, seqs: Sequence[ValenceSequence]) -> list[np.ndarray]:
    """Valence per step of each whole sequence (causal: step t sees steps ≤ t of its own trial only)."""
    out = []
    trained.model.eval()
    with torch.no_grad():
        for s in seqs:
            x = torch.from_numpy(trained.standardizer(s.X))[None]
            pred, _ = trained.model(x)
            out.append(pred[0].numpy().astype(np.float64))
    return out


# ------------------------------------------------------------------------------------------------ checkpoints


def save_checkpoint(trained: TrainedValence, path: str | Path) -> Path:
    """Weights, standardisation, fit config and feature setup in one ``torch.save`` file (no code objects)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    setup = trained.setup
    payload = {
        "state_dict": trained.model.state_dict(),
        "mean": trained.standardizer.mean.tolist(),
        "std": trained.standardizer.std.tolist(),
        "config": asdict(trained.config),
        "n_features": trained.n_features,
        "history": trained.history,
        "seconds": trained.seconds,
        "info": trained.info,
        "output_range": None if trained.output_range is None else list(trained.output_range),
        "setup": None
        if setup is None
        else {
            "spec": setup.spec.model_dump(),
            "preprocessing": setup.preprocessing.model_dump(),
            "channels": list(setup.channels),
        },
    }
    torch.save(payload, path)
    return path


def load_checkpoint(path: str | Path) -> TrainedValence:
    from bci_stream.card import FeatureSpec, Preprocessing

    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    config = FitConfig.from_dict(payload["config"])
    model = ValenceTCN(
        payload["n_features"],
        channels=config.channels,
        kernel_size=config.kernel_size,
        dilations=config.dilations,
        dropout=config.dropout,
    )
    model.load_state_dict(payload["state_dict"])
    model.eval()
    setup = None
    if payload.get("setup"):
        s = payload["setup"]
        setup = FeatureSetup(FeatureSpec(**s["spec"]), Preprocessing(**s["preprocessing"]), list(s["channels"]))
    return TrainedValence(
        model,
        Standardizer(np.asarray(payload["mean"]), np.asarray(payload["std"])),
        config,
        payload["n_features"],
        list(payload.get("history", [])),
        float(payload.get("seconds", 0.0)),
        setup,
        dict(payload.get("info", {})),
        tuple(payload["output_range"]) if payload.get("output_range") else None,
    )
