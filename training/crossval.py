"""``bci-train crossval``: every student and the classical baseline on the same folds of real recordings.

One call cuts the epochs once (:func:`training.realdata.load_epochs`, the daemon's filter and epocher), hashes
every recording and epoch and checks the folds for copies (:mod:`training.leaks`) before anything is fitted, then
for each fold and each model: artefact rejection (optional, on the training fold only: the live service scores
every epoch, so test epochs are never dropped), normalisation fitted on the training fold, training with a fixed
number of epochs (no selection on the test fold), and class probabilities for the test fold.

Splits: ``by-recording`` (leave one recording out: the runs of a session), ``by-subject`` (leave one subject
out), ``by-block`` (stratified group k-fold over runs of consecutive same-class trials inside each recording: the
honest split for a block design such as the EEGLAB tutorial file) and ``shuffled`` (stratified k-fold over trials:
the protocol that lets slow drifts and blocks leak, for comparison).

Metrics per model: accuracy and ROC AUC (mean over folds), the per-fold values, and a label-permutation p-value:
the labels are permuted *within each test fold* (the trained models and their predictions stay fixed; with
``by-block`` whole blocks' labels are permuted, since trials of a block are not exchangeable) and the pooled
accuracy recomputed, ``p = (1 + #{perm >= observed}) / (1 + n_permutations)``. It tests whether the
predictions carry information about the labels; it does not retrain under permuted labels (too costly on two
cores), so it does not cover a pipeline that learns a bias from the training labels' order — the split does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .leaks import check_folds
from .realdata import RealDataError, RealEpochs

log = logging.getLogger(__name__)

SPLITS = ("by-recording", "by-subject", "by-block", "shuffled")

#: Small options per student, so a fold trains in seconds on one CPU thread.
STUDENT_OPTIONS: dict[str, dict[str, Any]] = {
    "cogninet-blstm": {"hidden": 32, "n_layers": 2, "n_features": 32},
    "eegimagenet-lstm": {"hidden": 32, "n_features": 32},
    "conv1d": {"filters": (16, 32), "kernel_size": 7},
    "joint-encoder": {"rnn_hidden": 32, "embedding": 32, "filters": (16, 32), "kernel_size": 5},
    "eegnet": {},
    "shallow-fbcsp": {},
}


@dataclass(frozen=True)
class StudentSpec:
    """A student and how it is trained: ``NAME[+aug][+bal]`` on the command line.

    ``aug``: each training batch is augmented (amplitude ×U(0.9, 1.1) per epoch, a random time shift of up to
    ±4 samples with edge padding, Gaussian noise of 0.1 normalised units). ``bal``: class-balanced sampling
    (indices drawn with replacement, probability ∝ 1 / class count).
    """

    name: str
    augment: bool = False
    balanced: bool = False
    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name + ("+aug" if self.augment else "") + ("+bal" if self.balanced else "")

    @classmethod
    def parse(cls, text: str, **train: Any) -> StudentSpec:
        from .students import STUDENTS

        name, *flags = text.strip().split("+")
        if name not in STUDENTS:
            raise RealDataError(f"unknown student {name!r} in --students; known: {', '.join(sorted(STUDENTS))}")
        unknown = sorted(set(flags) - {"aug", "bal"})
        if unknown:
            raise RealDataError(f"--students {text!r}: unknown flag(s) {unknown}; use +aug and/or +bal")
        return cls(name, "aug" in flags, "bal" in flags, options=dict(STUDENT_OPTIONS.get(name, {})), **train)


# ------------------------------------------------------------------------------------------------ training adapter


class _FoldBatches:
    """The loop's batch hook for one fold: a permutation per epoch (or class-balanced draws), optional augmentation.

    Batches of one are skipped (batch norm cannot train on them). One generator drives order and augmentation,
    so a seed gives the same model bit for bit.
    """

    def __init__(self, Xt: Any, yt: Any, spec: StudentSpec, n_classes: int) -> None:
        import torch

        self.Xt, self.yt, self.spec = Xt, yt, spec
        self.gen = torch.Generator().manual_seed(spec.seed)
        self.weights = 1.0 / torch.bincount(yt, minlength=n_classes).clamp(min=1).double()[yt]

    def batches(self, epoch: int) -> Any:
        import torch

        from .loop import Batch

        n, spec = len(self.yt), self.spec
        if spec.balanced:
            order = torch.multinomial(self.weights, n, replacement=True, generator=self.gen)
        else:
            order = torch.randperm(n, generator=self.gen)
        for i in range(0, n, spec.batch_size):
            idx = order[i : i + spec.batch_size]
            if len(idx) < 2:  # a batch of one breaks batch norm
                continue
            x = _augment(self.Xt[idx], self.gen) if spec.augment else self.Xt[idx]
            yield Batch(x, self.yt[idx], index=idx)


def _train_student(X: np.ndarray, y: np.ndarray, spec: StudentSpec, *, n_classes: int, sfreq: float) -> Any:
    """Train a fresh student on normalised float32 epochs ``X`` (n, n_times, n_chans); returns it in eval mode.

    Through the project's one training loop: a fixed number of Adam epochs, cross-entropy, no validation-based
    selection (the fold's test part is never looked at; there is no other held-out part to select on).
    """
    import torch

    from .loop import LoopConfig, fit_model
    from .students import build_student

    torch.manual_seed(spec.seed)
    model = build_student(spec.name, X.shape[2], n_classes, X.shape[1], sfreq, **spec.options)
    Xt, yt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)), torch.from_numpy(y.astype(np.int64))

    def loss(outputs: Any, batch: Any) -> Any:
        return torch.nn.functional.cross_entropy(outputs, batch.y)

    config = LoopConfig(epochs=spec.epochs, lr=spec.lr)
    return fit_model(
        model, _FoldBatches(Xt, yt, spec, n_classes), None, loss=loss, config=config, name="crossval"
    ).model


def _augment(x: Any, gen: Any) -> Any:
    import torch

    n, t, _ = x.shape
    scale = 0.9 + 0.2 * torch.rand(n, 1, 1, generator=gen)
    shift = int(torch.randint(-4, 5, (1,), generator=gen))
    if shift:
        pad = x[:, :1].expand(-1, shift, -1) if shift > 0 else x[:, -1:].expand(-1, -shift, -1)
        x = torch.cat([pad, x[:, : t - shift]], 1) if shift > 0 else torch.cat([x[:, -shift:], pad], 1)
    return x * scale + 0.1 * torch.randn(x.shape, generator=gen)


def student_fit_predict(spec: StudentSpec, sfreq: float, n_classes: int) -> Callable[..., np.ndarray]:
    """``(X_train, y_train, X_test) -> probabilities``, normalisation fitted on ``X_train`` only."""

    def fit_predict(X_tr: np.ndarray, y_tr: np.ndarray, X_te: np.ndarray) -> np.ndarray:
        from bci_stream.signal import fit_channel_normalization, normalize, softmax

        from .fit import predict_logits

        norm = fit_channel_normalization(X_tr)
        model = _train_student(normalize(X_tr, norm), y_tr, spec, n_classes=n_classes, sfreq=sfreq)
        return softmax(predict_logits(model, normalize(X_te, norm).astype(np.float32)), axis=1)

    return fit_predict


def baseline_fit_predict(name: str) -> Callable[..., np.ndarray]:
    from .riemann import BASELINES, fit_predict_proba

    if name not in BASELINES:
        raise RealDataError(f"unknown --baseline {name!r}; known: {', '.join(BASELINES)}")
    return fit_predict_proba


# ------------------------------------------------------------------------------------------------------- folds


def block_ids(data: RealEpochs) -> np.ndarray:
    """Runs of consecutive same-class trials, numbered across recordings (the unit of a block design)."""
    return same_class_runs(data.y, data.recording)


def same_class_runs(y: np.ndarray, recording: np.ndarray) -> np.ndarray:
    """:func:`block_ids` on plain arrays: per trial (in recording order) its class ``y`` and recording index; a new
    block starts where the class or the recording changes. ``bci-train fit`` uses it for ``[data] split = "by-block"``."""
    y, recording = np.asarray(y), np.asarray(recording)
    new = np.ones(len(y), dtype=bool)
    new[1:] = (y[1:] != y[:-1]) | (recording[1:] != recording[:-1])
    return np.cumsum(new) - 1


def make_folds(data: RealEpochs, split: str, *, n_folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs for ``split`` (see the module docstring)."""
    from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold, StratifiedKFold

    y, idx = data.y, np.arange(len(data.y))
    if split == "by-recording":
        groups = data.recording
    elif split == "by-subject":
        groups = np.unique(np.asarray(data.subject), return_inverse=True)[1]
    elif split == "by-block":
        return list(StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed).split(idx, y, block_ids(data)))
    elif split == "shuffled":
        return list(StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(idx, y))
    else:
        raise RealDataError(f"unknown --split {split!r}; known: {', '.join(SPLITS)}")
    if len(np.unique(groups)) < 2:
        what = "recordings" if split == "by-recording" else "subjects"
        raise RealDataError(f"--split {split} needs at least 2 {what}, got {len(np.unique(groups))}")
    return list(LeaveOneGroupOut().split(idx, y, groups))


# ----------------------------------------------------------------------------------------------------- metrics


def _auc(y: np.ndarray, proba: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    present = np.unique(y)
    if len(present) < 2:
        return None
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    if len(present) < proba.shape[1]:
        return None
    return float(roc_auc_score(y, proba, multi_class="ovr"))


def permutation_p(
    y: np.ndarray,
    pred: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    n_permutations: int,
    seed: int,
    units: np.ndarray | None = None,
) -> float:
    """p of the pooled accuracy under labels permuted within each test fold (predictions fixed).

    ``units`` (one id per trial, e.g. the blocks of a block design) permutes whole units' labels among the units
    of a test fold instead of single trials: trials of one block are not exchangeable, and permuting them one by
    one would make p far too small.
    """
    rng = np.random.default_rng(seed)
    tests = [np.asarray(te) for _, te in folds]
    observed = sum(int((pred[te] == y[te]).sum()) for te in tests)
    plans: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = []
    for te in tests:
        if units is None:
            plans.append((te, None, None))
        else:
            _, first, inverse = np.unique(units[te], return_index=True, return_inverse=True)
            plans.append((te, y[te][first], inverse))
    hits = 0
    for _ in range(n_permutations):
        k = 0
        for te, unit_labels, unit_of in plans:
            perm = rng.permutation(y[te]) if unit_labels is None else rng.permutation(unit_labels)[unit_of]
            k += int((pred[te] == perm).sum())
        hits += k >= observed
    return (1 + hits) / (1 + n_permutations)


def _fold_name(data: RealEpochs, test: np.ndarray, split: str, k: int) -> str:
    if split == "by-recording":
        return Path(data.sources[int(data.recording[test[0]])]).name
    if split == "by-subject":
        return f"sub-{data.subject[int(test[0])]}"
    return f"fold {k}"


def reject_mask(X: np.ndarray, reject_uv: float | None) -> np.ndarray:
    """True for epochs to keep: peak-to-peak below ``reject_uv`` µV on every channel (None keeps all)."""
    if reject_uv is None:
        return np.ones(len(X), dtype=bool)
    p2p = (X.max(axis=1) - X.min(axis=1)).max(axis=1)
    return p2p < reject_uv * 1e-6


def evaluate(
    data: RealEpochs,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    models: dict[str, Callable[..., np.ndarray]],
    *,
    split: str,
    reject_uv: float | None = None,
    n_permutations: int = 1000,
    seed: int = 0,
    progress: Callable[[str], None] = log.info,
) -> dict[str, dict[str, Any]]:
    """Fit every model on every fold; returns ``{name: {accuracy, auc, p_value, folds}}``."""
    keep = reject_mask(data.X, reject_uv)
    out: dict[str, dict[str, Any]] = {}
    total = len(models) * len(folds)
    done = 0
    for name, fit_predict in models.items():
        pred = np.zeros(len(data.y), dtype=np.int64)
        fold_rows: list[dict[str, Any]] = []
        for k, (train, test) in enumerate(folds):
            t0 = time.perf_counter()
            train = train[keep[train]]
            proba = fit_predict(data.X[train], data.y[train], data.X[test])
            pred[test] = proba.argmax(1)
            acc = float((pred[test] == data.y[test]).mean())
            auc = _auc(data.y[test], proba)
            fold_rows.append({"fold": _fold_name(data, test, split, k), "n_train": len(train),
                              "n_test": len(test), "accuracy": acc, "auc": auc})  # fmt: skip
            done += 1
            progress(f"[{done}/{total}] {name} {fold_rows[-1]['fold']}: accuracy {acc:.3f} auc "
                     f"{'n/a' if auc is None else f'{auc:.3f}'} ({time.perf_counter() - t0:.1f} s)")  # fmt: skip
        aucs = [r["auc"] for r in fold_rows if r["auc"] is not None]
        out[name] = {
            "accuracy": float(np.mean([r["accuracy"] for r in fold_rows])),
            "auc": float(np.mean(aucs)) if aucs else None,
            "p_value": permutation_p(
                data.y, pred, folds, n_permutations, seed, units=block_ids(data) if split == "by-block" else None
            ),
            "folds": fold_rows,
        }
    return out


@dataclass
class CrossvalResult:
    chance: float
    split: str
    n_trials: int
    warnings: list[str]
    models: dict[str, dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def crossval(
    data: RealEpochs,
    *,
    students: Sequence[StudentSpec],
    baseline: str | None = "xdawn",
    split: str = "by-recording",
    n_folds: int = 5,
    reject_uv: float | None = None,
    n_permutations: int = 1000,
    strict: bool = False,
    seed: int = 0,
    progress: Callable[[str], None] = log.info,
) -> CrossvalResult:
    """Leak-check the folds, then run the baseline and every student on them (see the module docstring)."""
    import torch

    folds = make_folds(data, split, n_folds=n_folds, seed=seed)
    warnings = check_folds(
        folds, epoch_hashes=data.epoch_hashes, recording=data.recording, sources=data.sources,
        recording_hashes=data.recording_hashes, strict=strict,
    )  # fmt: skip
    models: dict[str, Callable[..., np.ndarray]] = {}
    if baseline:
        models[f"{baseline} (baseline)"] = baseline_fit_predict(baseline)
    n_classes = len(data.classes)
    for spec in students:
        models[spec.label] = student_fit_predict(spec, data.input_spec.sfreq, n_classes)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # small models on a shared CPU: one thread is fastest and machine-independent
    try:
        results = evaluate(data, folds, models, split=split, reject_uv=reject_uv,
                           n_permutations=n_permutations, seed=seed, progress=progress)  # fmt: skip
    finally:
        torch.set_num_threads(previous)
    chance = float(np.bincount(data.y).max() / len(data.y))
    return CrossvalResult(chance, split, len(data.y), warnings, results)


# ------------------------------------------------------------------------------------------------------ report


def write_results(out: str | Path, result: CrossvalResult, *, command: str, data: RealEpochs,
                  reject_uv: float | None, n_permutations: int) -> Path:  # fmt: skip
    """``OUT/results.json``, ``OUT/folds.png`` (per-fold accuracy per model, chance line) and ``OUT/report.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result.as_json(), indent=2) + "\n")
    _plot(out / "folds.png", result)
    lines = [
        "# Cross-validation",
        "",
        f"`{command}`",
        "",
        f"- split: **{result.split}**, {len(result.models[next(iter(result.models))]['folds'])} folds; "
        f"{result.n_trials} trials from {len(data.sources)} recording(s); classes {data.classes}",
        f"- chance (majority class): **{result.chance:.3f}**",
        f"- epochs: {data.input_spec.tmin:g} s + {data.input_spec.n_times} samples at {data.input_spec.sfreq:g} Hz, "
        f"channels {data.input_spec.channels}, causal {data.preprocessing.filter} band "
        f"{data.preprocessing.bandpass} Hz over the continuous recording (the daemon's code)",
        f"- artefact rejection: {'none' if reject_uv is None else f'training folds only, peak-to-peak >= {reject_uv:g} µV'}"
        "; test folds keep every epoch (the live service scores them all)",
        "- normalisation and every fit inside the fold; fixed training length, no selection on the test fold",
        f"- p: labels permuted within each test fold ({n_permutations} permutations"
        f"{'; whole blocks, not trials' if result.split == 'by-block' else ''}), predictions fixed; "
        "pooled accuracy compared with the observed one",
        "",
    ]
    if result.warnings:
        lines += ["## Leak warnings", "", *[f"- **{w}**" for w in result.warnings], ""]
    else:
        lines += ["No identical recordings or epochs across train and test of any fold (content hashes).", ""]
    lines += ["| model | accuracy | AUC | p |", "| --- | --- | --- | --- |"]
    for name, m in result.models.items():
        auc = "n/a" if m["auc"] is None else f"{m['auc']:.3f}"
        lines.append(f"| {name} | {m['accuracy']:.3f} | {auc} | {m['p_value']:.3g} |")
    lines += ["", "![per-fold accuracy](folds.png)", "", "## Folds", ""]
    first = next(iter(result.models.values()))["folds"]
    lines += ["| model | " + " | ".join(r["fold"] for r in first) + " |", "| --- |" + " --- |" * len(first)]
    for name, m in result.models.items():
        lines.append(f"| {name} | " + " | ".join(f"{r['accuracy']:.3f}" for r in m["folds"]) + " |")
    lines.append("")
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _plot(path: Path, result: CrossvalResult) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result.models)
    fold_names = [r["fold"] for r in result.models[names[0]]["folds"]]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(fold_names) + 2) + 2, 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        accs = [r["accuracy"] for r in result.models[name]["folds"]]
        ax.bar(np.arange(len(fold_names)) + (i - (len(names) - 1) / 2) * width, accs, width, label=name)
    ax.axhline(result.chance, color="k", linestyle="--", linewidth=1, label=f"chance {result.chance:.2f}")
    ax.set_xticks(np.arange(len(fold_names)), [f.replace("_eeg.fif", "") for f in fold_names], rotation=20,
                  ha="right", fontsize=7)  # fmt: skip
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(f"per-fold accuracy ({result.split}, {result.n_trials} trials)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
