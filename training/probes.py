"""Confound probes for block-design EEG (METHODS.md, "Honest evaluation", point 5).

On simple, fast per-epoch features (per-channel mean and log-variance, or a feature matrix you pass):

* **block probe**: how well cross-validated logistic regression predicts the block id (accuracy vs majority chance);
* **time probe**: how well ridge regression predicts the time in session (cross-validated R²);
* **within-block shuffle**: accuracy of the probe classifier on the true labels and after shuffling the labels
  within blocks: if it stays high, the classifier reads block identity, not the stimulus. When labels are constant
  within blocks (a pure block design) the shuffle changes nothing: the design itself cannot separate the two;
* **high-pass**: the probe classifier's accuracy again after removing each epoch's linear trend and high-passing it.

``confounded`` is True when labels are (nearly) constant within blocks and block identity is predictable well above
chance, or when accuracy after shuffling within blocks stays well above chance. ``sentence`` says so in plain words.
Needs scikit-learn (the ``train`` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Significance and effect size a probe must reach to count as "predictable".
ALPHA = 1e-3
MIN_GAIN = 0.25  # share of the distance from chance to perfect


def epoch_features(X: np.ndarray) -> np.ndarray:
    """Per-channel mean and log-variance of each epoch ``X`` (n, n_times, n_chans) → (n, 2 · n_chans)."""
    X = np.asarray(X, dtype=np.float64)
    return np.concatenate([X.mean(axis=1), np.log(X.var(axis=1) + 1e-20)], axis=1)


def highpass_epochs(X: np.ndarray, sfreq: float, cutoff: float = 1.0, order: int = 4) -> np.ndarray:
    """Each epoch (n, n_times, n_chans) with its linear trend removed, then zero-phase Butterworth high-passed."""
    from scipy.signal import butter, detrend, sosfiltfilt

    Y = detrend(np.asarray(X, dtype=np.float64), axis=1, type="linear")
    sos = butter(order, cutoff, btype="highpass", fs=sfreq, output="sos")
    return sosfiltfilt(sos, Y, axis=1)


def _binom_p(k: int, n: int, p: float) -> float:
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p)) if n else 1.0


def _n_splits(labels: np.ndarray, n_splits: int) -> int:
    _, counts = np.unique(labels, return_counts=True)
    return max(2, min(n_splits, int(counts.min())))


def cv_accuracy(F: np.ndarray, y: Sequence[Any] | np.ndarray, *, n_splits: int = 5, seed: int = 0) -> dict[str, float]:
    """Trial-wise stratified CV accuracy of standardised logistic regression; chance = majority share."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(y)
    _, codes = np.unique(y, return_inverse=True)
    _, counts = np.unique(codes, return_counts=True)
    if len(counts) < 2 or counts.min() < 2:
        return {"accuracy": float("nan"), "chance": 1.0, "p_value": 1.0, "n": len(y)}
    cv = StratifiedKFold(_n_splits(codes, n_splits), shuffle=True, random_state=seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=1.0))
    pred = cross_val_predict(clf, F, codes, cv=cv)
    k = int((pred == codes).sum())
    chance = float(counts.max() / counts.sum())
    return {"accuracy": k / len(codes), "chance": chance, "p_value": _binom_p(k, len(codes), chance), "n": len(codes)}


def time_probe(
    F: np.ndarray,
    order: Sequence[float] | np.ndarray,
    subjects: Sequence[Any] | np.ndarray | None = None,
    *,
    n_splits: int = 5,
    seed: int = 0,
) -> dict[str, float]:
    """Cross-validated R² of ridge regression predicting the time in session (scaled to [0, 1] per subject)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    order = np.asarray(order, dtype=np.float64)
    subjects = np.zeros(len(order)) if subjects is None else np.asarray(subjects)
    t = np.zeros(len(order))
    for s in np.unique(subjects):
        m = subjects == s
        span = order[m].max() - order[m].min()
        t[m] = (order[m] - order[m].min()) / span if span > 0 else 0.0
    reg = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    pred = cross_val_predict(reg, F, t, cv=KFold(min(n_splits, len(t)), shuffle=True, random_state=seed))
    return {"r2": float(r2_score(t, pred)), "chance_r2": 0.0, "n": len(t)}


def shuffle_within_blocks(
    y: Sequence[Any] | np.ndarray, blocks: Sequence[Any] | np.ndarray, seed: int = 0
) -> np.ndarray:
    """The labels permuted within each block (block-level label composition kept)."""
    y, blocks = np.asarray(y), np.asarray(blocks)
    rng = np.random.default_rng(seed)
    out = y.copy()
    for b in np.unique(blocks):
        idx = np.flatnonzero(blocks == b)
        out[idx] = y[rng.permutation(idx)]
    return out


def _predictable(r: dict[str, float]) -> bool:
    acc, chance = r["accuracy"], r["chance"]
    return bool(np.isfinite(acc) and r["p_value"] < ALPHA and acc >= chance + MIN_GAIN * (1 - chance))


def confound_probes(
    y: Sequence[Any] | np.ndarray,
    blocks: Sequence[Any] | np.ndarray,
    *,
    X: np.ndarray | None = None,
    features: np.ndarray | None = None,
    order: Sequence[float] | np.ndarray | None = None,
    subjects: Sequence[Any] | np.ndarray | None = None,
    sfreq: float | None = None,
    highpass: float | None = 1.0,
    n_splits: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the probes on ``features`` (default: :func:`epoch_features` of ``X``); see the module doc.

    ``order`` (time in session) enables the time probe; ``X`` + ``sfreq`` + ``highpass`` the high-pass comparison.
    Returns a dict with the probe results, ``label_purity``, ``confounded`` and ``sentence``.
    """
    from .data.eeg_imagenet import label_purity

    if features is None:
        if X is None:
            raise ValueError("give X (epochs) or features")
        features = epoch_features(X)
    F = np.asarray(features, dtype=np.float64)
    y, blocks = np.asarray(y), np.asarray(blocks).astype(str)
    out: dict[str, Any] = {"n": len(y), "n_blocks": len(np.unique(blocks)), "label_purity": label_purity(y, blocks)}
    out["block"] = cv_accuracy(F, blocks, n_splits=n_splits, seed=seed)
    out["time"] = time_probe(F, order, subjects, n_splits=n_splits, seed=seed) if order is not None else None
    out["labels"] = cv_accuracy(F, y, n_splits=n_splits, seed=seed)
    out["shuffled_within_blocks"] = cv_accuracy(F, shuffle_within_blocks(y, blocks, seed), n_splits=n_splits, seed=seed)
    if X is not None and sfreq and highpass:
        out["highpassed"] = {"cutoff_hz": highpass, **cv_accuracy(
            epoch_features(highpass_epochs(X, sfreq, highpass)), y, n_splits=n_splits, seed=seed)}  # fmt: skip
    else:
        out["highpassed"] = None
    pure = out["label_purity"] >= 0.9
    block_ok, shuffle_ok = _predictable(out["block"]), _predictable(out["shuffled_within_blocks"])
    out["confounded"] = bool((pure and block_ok) or shuffle_ok)
    out["sentence"] = _sentence(out, pure)
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _sentence(r: dict[str, Any], pure: bool) -> str:
    b, s, hp = r["block"], r["shuffled_within_blocks"], r["highpassed"]
    if not r["confounded"]:
        why = (
            f"labels vary within blocks (purity {_pct(r['label_purity'])})"
            if not pure
            else f"blocks are not predictable (block probe {_pct(b['accuracy'])}, chance {_pct(b['chance'])})"
        )
        return (
            f"No block confound detected: {why}, and accuracy after shuffling labels within blocks is "
            f"{_pct(s['accuracy'])} (chance {_pct(s['chance'])})."
        )
    text = (
        f"WARNING: labels are confounded with recording blocks: block identity is predictable at "
        f"{_pct(b['accuracy'])} (chance {_pct(b['chance'])}) and accuracy after shuffling labels within blocks is "
        f"{_pct(s['accuracy'])} (chance {_pct(s['chance'])})."
    )
    if pure:
        text += (
            f" Labels are constant within blocks (purity {_pct(r['label_purity'])}), so the design cannot separate "
            "the stimulus from the block."
        )
    if hp is not None:
        text += f" After high-passing ({hp['cutoff_hz']:g} Hz) the probe accuracy is {_pct(hp['accuracy'])}"
        text += (
            ": part of it may be stimulus information, but this design cannot show it."
            if _predictable(hp)
            else f" (chance {_pct(hp['chance'])}): slow drifts carry the labels."
        )
    return text + " Treat the accuracy as block-design leakage, not stimulus decoding."


__all__ = [
    "confound_probes",
    "cv_accuracy",
    "epoch_features",
    "highpass_epochs",
    "shuffle_within_blocks",
    "time_probe",
]
