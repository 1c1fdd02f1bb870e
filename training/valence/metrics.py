"""Valence metrics in numpy: CCC, Pearson r, RMSE — population (1/N) moments throughout.

``CCC(x, y) = 2·cov(x, y) / (var x + var y + (mean x − mean y)²)`` with ``var`` and ``cov`` divided by N, the
same normalisation as the training loss (:func:`training.valence.model.ccc`). Pearson r is unchanged by the
choice. A metric that is undefined (a constant series for r; both constant and equal for CCC) is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ccc(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or len(x) == 0:
        raise ValueError(f"ccc needs two non-empty series of one length, got {x.shape} and {y.shape}")
    mx, my = x.mean(), y.mean()
    vx, vy = ((x - mx) ** 2).mean(), ((y - my) ** 2).mean()
    cov = ((x - mx) * (y - my)).mean()
    denom = vx + vy + (mx - my) ** 2
    return float(2 * cov / denom) if denom > 0 else float("nan")


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    sx, sy = x.std(), y.std()
    if sx == 0 or sy == 0:
        return float("nan")
    return float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy))


def rmse(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    return float(np.sqrt(((x - y) ** 2).mean()))


def all_metrics(prediction: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """``{"ccc", "r", "rmse"}`` of one pair of series (labels first in the CCC, which is symmetric anyway)."""
    return {"ccc": ccc(labels, prediction), "r": pearson(labels, prediction), "rmse": rmse(labels, prediction)}


def pooled_metrics(predictions: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> dict[str, float]:
    """Metrics of all steps of all trials concatenated ("overall")."""
    return all_metrics(np.concatenate(list(predictions)), np.concatenate(list(labels)))
