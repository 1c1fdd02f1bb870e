"""Cross-validation of valence students: trial-shuffle k-fold and leave-one-subject-out, KD vs no-KD.

Protocol (METHODS.md §4 and "Honest evaluation")
------------------------------------------------
- The unit of every split is the **trial**: a trial's steps are never on both sides. ``trs``: trials of all
  subjects shuffled (seeded) and dealt into ``n_folds`` (10) folds. ``loso``: one fold per subject.
  :func:`check_folds` asserts every trial is tested exactly once and never trained on in its own fold (and, for
  LOSO, that the test subject is absent from training).
- Feature standardisation is fitted on each fold's training trials only (:class:`.fit.Standardizer`).
- No model selection on the test fold: every condition trains a fixed number of optimiser steps.
- Conditions are paired: same fold, same seed (same initial weights and crops); only λ differs.
- Metrics (population moments, :mod:`.metrics`): CCC, Pearson r, RMSE per trial, per fold (all test steps of
  the fold pooled) and overall (all test steps of all folds pooled). Per-trial CCC / r are undefined (NaN) for
  trials with a constant target (DEAP); then use the pooled numbers.
- Paired test: **Wilcoxon signed-rank, two-sided** (``scipy.stats.wilcoxon``, exact for small n) on the per-fold
  pooled CCC of the two conditions; a second Wilcoxon over per-trial CCC is reported as secondary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import SettingError, TrainingDataError
from .data import ValenceSequence
from .fit import FitConfig
from .metrics import all_metrics, pooled_metrics

log = logging.getLogger(__name__)

SCHEMES = ("trs", "loso")
SCHEME_NAMES = {"trs": "trial-level random shuffling", "loso": "leave-one-subject-out"}


@dataclass
class Fold:
    name: str
    train: np.ndarray  # indices into the sequence list
    test: np.ndarray


def trial_shuffle_folds(seqs: Sequence[ValenceSequence], n_folds: int = 10, seed: int = 0) -> list[Fold]:
    """Trials of all subjects shuffled with ``seed`` and dealt into ``n_folds`` folds of near-equal size."""
    n = len(seqs)
    if not 2 <= n_folds <= n:
        raise SettingError(f"n_folds must be between 2 and the number of trials ({n}), got {n_folds}")
    perm = np.random.default_rng(seed).permutation(n)
    folds = []
    for k, test in enumerate(np.array_split(perm, n_folds)):
        test = np.sort(test)
        folds.append(Fold(f"fold{k + 1:02d}", np.setdiff1d(np.arange(n), test), test))
    check_folds(folds, seqs)
    return folds


def loso_folds(seqs: Sequence[ValenceSequence]) -> list[Fold]:
    """One fold per subject: its trials are the test set, every other subject's the training set."""
    subjects = sorted({s.subject for s in seqs})
    if len(subjects) < 2:
        raise TrainingDataError(f"leave-one-subject-out needs at least 2 subjects, got {subjects}")
    idx = np.arange(len(seqs))
    folds = []
    for subj in subjects:
        test = idx[[s.subject == subj for s in seqs]]
        folds.append(Fold(subj, np.setdiff1d(idx, test), test))
    check_folds(folds, seqs, by_subject=True)
    return folds


def make_folds(seqs: Sequence[ValenceSequence], scheme: str, *, n_folds: int = 10, seed: int = 0) -> list[Fold]:
    if scheme == "trs":
        return trial_shuffle_folds(seqs, n_folds, seed)
    if scheme == "loso":
        return loso_folds(seqs)
    raise SettingError(f"unknown split scheme {scheme!r}; known: {', '.join(SCHEMES)}")


def check_folds(folds: Sequence[Fold], seqs: Sequence[ValenceSequence], *, by_subject: bool = False) -> None:
    """Assert: every trial tested exactly once; no trial (id) both trained on and tested in a fold."""
    counts = np.zeros(len(seqs), dtype=int)
    for fold in folds:
        counts[fold.test] += 1
        assert not set(fold.train.tolist()) & set(fold.test.tolist()), f"{fold.name}: index on both sides"
        train_ids = {seqs[i].trial for i in fold.train}
        test_ids = {seqs[i].trial for i in fold.test}
        assert not train_ids & test_ids, f"{fold.name}: trial(s) on both sides: {sorted(train_ids & test_ids)[:5]}"
        if by_subject:
            train_subj = {seqs[i].subject for i in fold.train}
            test_subj = {seqs[i].subject for i in fold.test}
            assert not train_subj & test_subj, (
                f"{fold.name}: subject(s) on both sides: {sorted(train_subj & test_subj)}"
            )
    assert np.all(counts == 1), f"trials tested {sorted(set(counts.tolist()))} times; each must be tested once"
    ids = [s.trial for s in seqs]
    assert len(set(ids)) == len(ids), "trial ids are not unique"


# ----------------------------------------------------------------------------------------------------- running


@dataclass
class FoldResult:
    fold: str
    condition: str
    pooled: dict[str, float]
    per_trial: list[dict[str, Any]]
    seconds: float


@dataclass
class CVResult:
    scheme: str
    conditions: dict[str, FitConfig]
    folds: list[Fold]
    results: dict[str, list[FoldResult]] = field(default_factory=dict)
    predictions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # condition → trial → per step
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # trial → per step

    def fold_metric(self, condition: str, metric: str = "ccc") -> np.ndarray:
        return np.array([r.pooled[metric] for r in self.results[condition]])

    def overall(self, condition: str) -> dict[str, float]:
        trials = list(self.labels)
        return pooled_metrics([self.predictions[condition][t] for t in trials], [self.labels[t] for t in trials])

    def per_trial(self, condition: str, metric: str = "ccc") -> dict[str, float]:
        return {row["trial"]: row[metric] for r in self.results[condition] for row in r.per_trial}

    def training_seconds(self, condition: str) -> float:
        return float(sum(r.seconds for r in self.results[condition]))


def cross_validate(
    seqs: Sequence[ValenceSequence],
    scheme: str,
    conditions: Mapping[str, FitConfig],
    *,
    n_folds: int = 10,
    seed: int = 0,
) -> CVResult:
    """Train every condition on every fold's training trials and predict its test trials."""
    from .fit import predict, train_valence  # torch only when training

    folds = make_folds(seqs, scheme, n_folds=n_folds, seed=seed)
    cv = CVResult(scheme, dict(conditions), folds)
    for name in conditions:
        cv.results[name] = []
        cv.predictions[name] = {}
    for k, fold in enumerate(folds):
        train = [seqs[i] for i in fold.train]
        test = [seqs[i] for i in fold.test]
        for s in test:
            cv.labels[s.trial] = s.y.astype(np.float64)
        summary = []
        for name, config in conditions.items():
            trained = train_valence(train, config, log_every=max(config.steps, 1) + 1)
            preds = predict(trained, test)
            per_trial = []
            for s, p in zip(test, preds, strict=True):
                cv.predictions[name][s.trial] = p
                per_trial.append({"trial": s.trial, "subject": s.subject, "steps": len(s), **all_metrics(p, s.y)})
            pooled = pooled_metrics(preds, [s.y for s in test])
            cv.results[name].append(FoldResult(fold.name, name, pooled, per_trial, trained.seconds))
            summary.append(f"{name} ccc {pooled['ccc']:.3f} ({trained.seconds:.1f} s)")
        log.info(
            "%s %s (%d/%d): %d train / %d test trials: %s",
            scheme,
            fold.name,
            k + 1,
            len(folds),
            len(train),
            len(test),
            ", ".join(summary),
        )
    return cv


# ------------------------------------------------------------------------------------------------------ tests


def paired_test(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Two-sided Wilcoxon signed-rank test of paired samples ``a`` vs ``b`` (NaN pairs dropped).

    Returns n, mean and median of ``a − b``, the statistic and the p-value (1.0 when every difference is 0).
    """
    from scipy.stats import wilcoxon

    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a_arr) & np.isfinite(b_arr)
    d = a_arr[ok] - b_arr[ok]
    out = {
        "n": int(ok.sum()),
        "mean_diff": float(d.mean()) if len(d) else float("nan"),
        "median_diff": float(np.median(d)) if len(d) else float("nan"),
        "wins": int((d > 0).sum()),
    }
    if len(d) == 0 or np.all(d == 0):
        return {**out, "statistic": float("nan"), "p": 1.0}
    res = wilcoxon(a_arr[ok], b_arr[ok], alternative="two-sided")
    return {**out, "statistic": float(res.statistic), "p": float(res.pvalue)}


def compare(cv: CVResult, kd: str = "kd", baseline: str = "no-kd") -> dict[str, Any]:
    """KD vs baseline: per-fold pooled CCC (primary) and per-trial CCC (secondary) paired tests."""
    by_fold = paired_test(cv.fold_metric(kd), cv.fold_metric(baseline))
    a, b = cv.per_trial(kd), cv.per_trial(baseline)
    trials = sorted(a)
    by_trial = paired_test([a[t] for t in trials], [b[t] for t in trials])
    return {"folds": by_fold, "trials": by_trial}


def summarize(cv: CVResult) -> dict[str, Any]:
    """JSON-ready numbers of one CV run."""
    out: dict[str, Any] = {"scheme": cv.scheme, "n_folds": len(cv.folds), "conditions": {}}
    for name, config in cv.conditions.items():
        per_trial = {
            m: np.array([row[m] for r in cv.results[name] for row in r.per_trial]) for m in ("ccc", "r", "rmse")
        }
        out["conditions"][name] = {
            "config": asdict(config),
            "fold_ccc": cv.fold_metric(name).tolist(),
            "fold_ccc_mean": float(np.mean(cv.fold_metric(name))),
            "fold_ccc_sd": float(np.std(cv.fold_metric(name))),
            "overall": cv.overall(name),
            "per_trial_mean": {
                m: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for m, v in per_trial.items()
            },
            "training_seconds": cv.training_seconds(name),
        }
    if {"kd", "no-kd"} <= set(cv.conditions):
        out["kd_vs_no_kd"] = compare(cv)
    return out


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.{digits}f}"


def _p(x: float) -> str:
    return "n/a" if not np.isfinite(x) else (f"{x:.2g}" if x < 0.001 else f"{x:.3f}")


def markdown_report(runs: Sequence[CVResult], *, title: str, meta: Mapping[str, Any]) -> str:
    """A Markdown report of one or more CV runs (one section per split scheme)."""
    lines = [f"# {title}", ""]
    for key, value in meta.items():
        lines.append(f"- **{key}**: {value}")
    lines += [
        "- **CCC**: 2·cov/(var x + var y + (mean x − mean y)²), population (1/N) moments, loss and metrics alike",
        "- **paired test**: Wilcoxon signed-rank, two-sided, on per-fold pooled CCC (KD vs no-KD, same folds and "
        "seed); per-trial Wilcoxon as secondary",
        "- **model selection**: none; fixed optimiser steps; standardisation fitted on each fold's training trials",
        "",
    ]
    for cv in runs:
        s = summarize(cv)
        lines += [f"## {SCHEME_NAMES.get(cv.scheme, cv.scheme)} ({cv.scheme}, {len(cv.folds)} folds)", ""]
        lines += [
            "| condition | λ | fold CCC mean ± sd | overall CCC | overall r | overall RMSE | "
            "per-trial CCC | per-trial r | per-trial RMSE | training s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, c in s["conditions"].items():
            o, t = c["overall"], c["per_trial_mean"]
            lines.append(
                f"| {name} | {c['config']['kd_weight']:g} | {_f(c['fold_ccc_mean'])} ± {_f(c['fold_ccc_sd'])} | "
                f"{_f(o['ccc'])} | {_f(o['r'])} | {_f(o['rmse'])} | {_f(t['ccc'])} | {_f(t['r'])} | "
                f"{_f(t['rmse'])} | {c['training_seconds']:.1f} |"
            )
        if "kd_vs_no_kd" in s:
            f, t = s["kd_vs_no_kd"]["folds"], s["kd_vs_no_kd"]["trials"]
            lines += [
                "",
                f"KD − no-KD, per fold: mean ΔCCC {_f(f['mean_diff'])}, KD better in {f['wins']}/{f['n']} folds, "
                f"Wilcoxon p = {_p(f['p'])} (primary).",
                f"Per trial: mean ΔCCC {_f(t['mean_diff'])}, KD better in {t['wins']}/{t['n']} trials, "
                f"Wilcoxon p = {_p(t['p'])} (secondary; trials of one fold share a model).",
            ]
        names = list(cv.conditions)
        lines += ["", "| fold | test trials | " + " | ".join(f"{n} CCC" for n in names) + " |"]
        lines.append("|---|---|" + "---|" * len(names))
        for k, fold in enumerate(cv.folds):
            row = " | ".join(_f(cv.results[n][k].pooled["ccc"]) for n in names)
            lines.append(f"| {fold.name} | {len(fold.test)} | {row} |")
        lines.append("")
    return "\n".join(lines)


def run_evaluation(
    seqs: Sequence[ValenceSequence],
    conditions: Mapping[str, FitConfig],
    *,
    schemes: Sequence[str] = SCHEMES,
    n_folds: int = 10,
    seed: int = 0,
) -> list[CVResult]:
    runs = []
    for scheme in schemes:
        t0 = time.perf_counter()
        runs.append(cross_validate(seqs, scheme, conditions, n_folds=n_folds, seed=seed))
        log.info("%s done in %.1f s", scheme, time.perf_counter() - t0)
    return runs
