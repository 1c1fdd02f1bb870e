"""Honest evaluation (METHODS.md, "Honest evaluation"): metrics with chance and a permutation p-value, per-subject
results, confound probes, and a Markdown report that puts a confound warning first.

* :func:`evaluate_predictions`: accuracy, top-5, per-subject accuracy, chance (1/n and majority), permutation p.
* :func:`evaluate`: the above on test predictions (optional) + :func:`training.probes.confound_probes` on the epochs.
* :func:`evaluate_eeg_imagenet`: the same for an :class:`training.data.EEGImageNet` (labelled "block design").
* :func:`write_report`: Markdown; the warning sentence is the first line when the result is confounded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SettingError, TrainingDataError
from .probes import confound_probes


def evaluate_predictions(
    y_true: Sequence[int] | np.ndarray,
    logits: np.ndarray,
    classes: Sequence[str] | None = None,
    subjects: Sequence[Any] | np.ndarray | None = None,
    *,
    n_permutations: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of ``logits`` (n, n_classes) against integer labels ``y_true`` (column indices).

    The permutation p-value is (1 + #{permuted accuracy ≥ observed}) / (1 + n_permutations), permuting the true
    labels against the fixed predictions (seeded; at least 1000 permutations).
    """
    if n_permutations < 1000:
        raise SettingError(f"n_permutations must be >= 1000, got {n_permutations}")
    y = np.asarray(y_true, dtype=np.int64)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or len(logits) != len(y):
        raise TrainingDataError(f"logits shape {logits.shape} does not match {len(y)} labels")
    n_classes = logits.shape[1]
    classes = list(classes) if classes is not None else [str(i) for i in range(n_classes)]
    if len(classes) != n_classes:
        raise TrainingDataError(f"{len(classes)} class names for {n_classes} logit columns")
    pred = logits.argmax(1)
    correct = pred == y
    counts = np.bincount(y, minlength=n_classes)
    out: dict[str, Any] = {
        "n": len(y),
        "n_classes": n_classes,
        "accuracy": float(correct.mean()),
        "chance_uniform": 1.0 / n_classes,
        "chance_majority": float(counts.max() / counts.sum()),
    }
    if n_classes >= 5:
        top5 = np.argsort(-logits, axis=1)[:, :5]
        out["top5"] = float((top5 == y[:, None]).any(1).mean())
    rng = np.random.default_rng(seed)
    perm_acc = np.array([(pred == rng.permutation(y)).mean() for _ in range(n_permutations)])
    out["p_value_permutation"] = float((1 + (perm_acc >= out["accuracy"]).sum()) / (1 + n_permutations))
    out["n_permutations"] = n_permutations
    if subjects is not None:
        subjects = np.asarray(subjects)
        out["per_subject"] = {
            str(s): {"n": int((subjects == s).sum()), "accuracy": float(correct[subjects == s].mean())}
            for s in np.unique(subjects)
        }
    return out


def evaluate(
    y: Sequence[Any] | np.ndarray,
    blocks: Sequence[Any] | np.ndarray,
    *,
    X: np.ndarray | None = None,
    features: np.ndarray | None = None,
    logits: np.ndarray | None = None,
    test_index: Sequence[int] | np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    subjects: Sequence[Any] | np.ndarray | None = None,
    order: Sequence[float] | np.ndarray | None = None,
    sfreq: float | None = None,
    highpass: float | None = 1.0,
    dataset: str = "",
    design: str | None = None,
    n_permutations: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Predictions metrics (when ``logits`` for the trials ``test_index`` are given) + confound probes on all trials.

    ``y`` integer labels of every trial, ``blocks`` their block ids; ``X`` (n, n_times, n_chans) or ``features``.
    """
    y = np.asarray(y)
    probes = confound_probes(
        y, blocks, X=X, features=features, order=order, subjects=subjects, sfreq=sfreq, highpass=highpass, seed=seed
    )
    results: dict[str, Any] = {
        "dataset": dataset,
        "design": design or ("block design" if probes["label_purity"] >= 0.9 else "mixed blocks"),
        "probes": probes,
        "confounded": probes["confounded"],
        "sentence": probes["sentence"],
        "predictions": None,
    }
    if logits is not None:
        idx = np.arange(len(y)) if test_index is None else np.asarray(test_index)
        subs = None if subjects is None else np.asarray(subjects)[idx]
        results["predictions"] = evaluate_predictions(
            y[idx], logits, classes, subs, n_permutations=n_permutations, seed=seed
        )
    return results


def evaluate_eeg_imagenet(data: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`evaluate` on an :class:`training.data.EEGImageNet` (1 kHz), labelled "block design"."""
    kwargs.setdefault("classes", data.classes or None)
    kwargs.setdefault("sfreq", 1000.0)
    return evaluate(
        data.y, data.blocks, X=data.X, subjects=data.subjects, order=data.order,
        dataset=f"EEG-ImageNet ({data.source})", design="block design", **kwargs,
    )  # fmt: skip


def _pct(x: float | None) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def write_report(path: str | Path, results: dict[str, Any]) -> Path:
    """Markdown report of :func:`evaluate`'s results (warning first when confounded); a JSON copy beside it."""
    path = Path(path)
    lines: list[str] = []
    if results["confounded"]:
        lines += [f"**{results['sentence']}**", ""]
    title = results.get("dataset") or "Evaluation"
    lines += [f"# {title} — {results['design']}", ""]
    if results["design"] == "block design":
        lines += ["Result on a **block design** recording: all trials of a class were recorded in one block.", ""]
    p = results.get("predictions")
    if p:
        lines += ["## Test predictions", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| trials | {p['n']} |", f"| classes | {p['n_classes']} |", f"| accuracy | {_pct(p['accuracy'])} |"]
        if "top5" in p:
            lines.append(f"| top-5 | {_pct(p['top5'])} |")
        lines += [
            f"| chance (1/n) | {_pct(p['chance_uniform'])} |",
            f"| chance (majority) | {_pct(p['chance_majority'])} |",
            f"| permutation p ({p['n_permutations']}) | {p['p_value_permutation']:.3g} |",
            "",
        ]
        if p.get("per_subject"):
            lines += ["| subject | trials | accuracy |", "| --- | --- | --- |"]
            lines += [f"| {s} | {v['n']} | {_pct(v['accuracy'])} |" for s, v in p["per_subject"].items()]
            lines.append("")
    r = results["probes"]
    lines += [
        "## Confound probes (per-channel mean and log-variance features, cross-validated)",
        "",
        "| probe | result | chance |",
        "| --- | --- | --- |",
        f"| label purity of blocks | {_pct(r['label_purity'])} | – |",
        f"| block id ({r['n_blocks']} blocks) | {_pct(r['block']['accuracy'])} | {_pct(r['block']['chance'])} |",
    ]
    if r["time"] is not None:
        lines.append(f"| time in session (R²) | {r['time']['r2']:.2f} | 0.00 |")
    lines += [
        f"| labels | {_pct(r['labels']['accuracy'])} | {_pct(r['labels']['chance'])} |",
        f"| labels shuffled within blocks | {_pct(r['shuffled_within_blocks']['accuracy'])} | "
        f"{_pct(r['shuffled_within_blocks']['chance'])} |",
    ]
    if r["highpassed"] is not None:
        hp = r["highpassed"]
        lines.append(f"| labels, high-passed {hp['cutoff_hz']:g} Hz | {_pct(hp['accuracy'])} | {_pct(hp['chance'])} |")
    lines += ["", f"Verdict: {'CONFOUNDED' if results['confounded'] else 'no block confound detected'}. "
              f"{results['sentence']}", ""]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    path.with_suffix(".json").write_text(json.dumps(results, indent=2, default=jsonable))
    return path


def jsonable(o: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars and arrays (reports, metrics, evaluations)."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


__all__ = ["evaluate", "evaluate_eeg_imagenet", "evaluate_predictions", "write_report"]
