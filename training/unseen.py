"""Unseen classes (METHODS.md §1): features of an unsupervised-KD student, few-shot classifiers, excerpt voting.

1. Train a student with unsupervised KD (``loss="kd-unsupervised"``: the teacher's outputs only, no labels) on
   the epochs of the *seen* classes.
2. Take the epochs of the *held-out* classes (never in training), cut each into overlapping excerpts (windows of
   ``n_times / 2`` samples, hop ``n_times / 4``), and run every excerpt through ``student.features`` (the last
   hidden representation: for the BLSTM, the 128-d features after the last recurrent layer).
3. Fit SVM, kNN and random forest (scikit-learn) on the excerpts of ``shots`` labelled epochs per held-out class;
   classify every excerpt of the other epochs and give each epoch its excerpts' majority vote.

Accuracy per classifier with chance (the largest class's share of the query epochs), with voting and without
(features of the whole epoch), on synthetic data (:mod:`training.synthetic`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import SettingError, TrainingDataError

log = logging.getLogger(__name__)

CLASSIFIERS = ("svm", "knn", "random-forest")


def excerpts(X: np.ndarray, window: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping windows of every epoch: (n × k, window, n_chans) and the epoch index of each window."""
    n, n_times, _ = X.shape
    if not 0 < window <= n_times or hop < 1:
        raise SettingError(f"need 0 < window <= n_times ({n_times}) and hop >= 1, got window {window}, hop {hop}")
    starts = list(range(0, n_times - window + 1, hop))
    out = np.stack([X[:, s : s + window] for s in starts], axis=1)  # (n, k, window, chans)
    return out.reshape(n * len(starts), window, X.shape[2]), np.repeat(np.arange(n), len(starts))


def features(model: Any, X: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """``model.features`` of a batch of (normalised) epochs or excerpts, eval mode, as float64 numpy."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(X), batch_size):
            out.append(model.features(torch.as_tensor(np.asarray(X[i : i + batch_size], dtype=np.float32))).numpy())
    return np.concatenate(out).astype(np.float64)


def make_classifier(name: str, seed: int = 0) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if name == "svm":
        return make_pipeline(StandardScaler(), SVC(kernel="rbf", C=1.0))
    if name == "knn":
        return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=3))
    if name == "random-forest":
        return RandomForestClassifier(n_estimators=100, random_state=seed)
    raise SettingError(f"unknown classifier {name!r}; known: {', '.join(CLASSIFIERS)}")


def majority_vote(pred: np.ndarray, owner: np.ndarray, n: int, n_classes: int) -> np.ndarray:
    """Per epoch the most frequent prediction among its excerpts (ties: the lowest class index)."""
    counts = np.zeros((n, n_classes), dtype=np.int64)
    np.add.at(counts, (owner, pred), 1)
    return counts.argmax(1)


@dataclass
class UnseenResult:
    accuracy: dict[str, float]  # classifier → accuracy with excerpt voting
    accuracy_whole: dict[str, float]  # classifier → accuracy on whole-epoch features (no voting)
    chance: float
    n_support: int
    n_query: int
    seen: list[str]
    unseen: list[str]
    train_metrics: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        lines = [
            f"Student trained with unsupervised KD on {len(self.seen)} seen classes; {len(self.unseen)} unseen classes, "
            f"{self.n_support} labelled epochs (support) and {self.n_query} test epochs (query); chance {self.chance:.2f}",
            "",
            "| classifier | accuracy (excerpt vote) | accuracy (whole epoch) |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {c} | {self.accuracy[c]:.2f} | {self.accuracy_whole[c]:.2f} |" for c in self.accuracy]
        return "\n".join(lines)


def unseen_classes(
    *,
    n_classes: int = 6,
    n_unseen: int = 2,
    seconds: float = 120.0,
    images_per_class: int = 8,
    evoked_uv: float = 20.0,
    shots: int = 5,
    session_seed: int = 0,
    seed: int = 0,
    n_channels: int = 16,
    classifiers: tuple[str, ...] = CLASSIFIERS,
    window: float = 0.5,
    hop: float = 0.25,
    train: Mapping[str, Any] | None = None,
) -> UnseenResult:
    """Run the unseen-classes protocol on one synthetic session (see the module docstring).

    The last ``n_unseen`` of the ``n_classes`` classes are held out: none of their epochs is used to train the
    student. ``window`` and ``hop`` are fractions of ``n_times``. ``train`` overrides :func:`train_student`
    options (defaults: the small CPU student of :data:`training.sweep.DEFAULTS`, 20 epochs).
    """
    from .fit import normalized_epochs, train_student
    from .sweep import DEFAULTS, posterior_channels
    from .synthetic import synthesize

    if not 2 <= n_unseen < n_classes - 1:
        raise SettingError(f"need 2 <= n_unseen < n_classes - 1, got {n_unseen} of {n_classes}")
    session = synthesize(
        seconds, seed=session_seed, n_classes=n_classes, images_per_class=images_per_class, evoked_uv=evoked_uv
    )
    classes = list(session.classes)
    seen, unseen = classes[: n_classes - n_unseen], classes[n_classes - n_unseen :]
    rec = session.recording

    def only(labels: list[str]):
        keep = set(labels)
        return dataclasses.replace(rec, markers=[m for m in rec.markers if m.value.split("/")[1] in keep])

    kw: dict[str, Any] = {**DEFAULTS["train"], "epochs": 20, **(train or {})}
    kw["bandpass"] = tuple(kw["bandpass"]) if kw.get("bandpass") is not None else None
    kw.setdefault("channels", list(posterior_channels(n_channels)))
    result = train_student(only(seen), teacher=session.teacher, loss="kd-unsupervised", seed=seed, **kw)

    X, markers = normalized_epochs(only(unseen), result.card)
    y = np.array([unseen.index(m.value.split("/")[1]) for m in markers])
    # support: the first `shots` epochs of each unseen class (in time order); query: the rest
    support = np.zeros(len(y), dtype=bool)
    for c in range(len(unseen)):
        support[np.flatnonzero(y == c)[:shots]] = True
    query = ~support
    if query.sum() == 0 or min(np.bincount(y[query], minlength=len(unseen))) == 0:
        raise TrainingDataError("too few epochs of the unseen classes for the query set: use a longer recording")

    n_times = X.shape[1]
    w, h = max(1, round(window * n_times)), max(1, round(hop * n_times))
    Xs, Qs = X[support], X[query]
    ex_s, own_s = excerpts(Xs, w, h)
    ex_q, own_q = excerpts(Qs, w, h)
    f_ex_s, f_ex_q = features(result.model, ex_s), features(result.model, ex_q)
    f_whole_s, f_whole_q = features(result.model, Xs), features(result.model, Qs)
    ys, yq = y[support], y[query]

    acc, acc_whole = {}, {}
    for name in classifiers:
        clf = make_classifier(name, seed).fit(f_ex_s, ys[own_s])
        voted = majority_vote(clf.predict(f_ex_q), own_q, len(yq), len(unseen))
        acc[name] = float((voted == yq).mean())
        clf_w = make_classifier(name, seed).fit(f_whole_s, ys)
        acc_whole[name] = float((clf_w.predict(f_whole_q) == yq).mean())
        log.info("unseen classes, %s: %.3f with voting, %.3f whole epoch", name, acc[name], acc_whole[name])
    return UnseenResult(
        accuracy=acc,
        accuracy_whole=acc_whole,
        chance=float(np.bincount(yq).max() / len(yq)),
        n_support=int(support.sum()),
        n_query=int(query.sum()),
        seen=seen,
        unseen=unseen,
        train_metrics=dict(result.metrics),
    )
