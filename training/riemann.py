"""The classical baseline: xDAWN covariances + tangent space + logistic regression (pyriemann, scikit-learn).

The standard ERP pipeline of the field (Barachant's eeg-notebooks use it for the N170 task): xDAWN spatial filters
(``nfilter`` per class) estimated on the training fold, the covariance of filtered epochs stacked with the class
prototypes, projected to the tangent space of the Riemannian mean, and an L2 logistic regression. Everything is
fitted on the training fold only; it sees the same filtered epochs as the students (volts are rescaled to µV so
the covariances are well conditioned — a fixed factor, not a statistic of the data).
"""

from __future__ import annotations

import numpy as np

BASELINES = ("xdawn",)


def xdawn_pipeline(nfilter: int = 2, seed: int = 0):
    from pyriemann.estimation import XdawnCovariances
    from pyriemann.tangentspace import TangentSpace
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        XdawnCovariances(nfilter=nfilter, estimator="oas"),
        TangentSpace(metric="riemann"),
        LogisticRegression(max_iter=1000, random_state=seed),
    )


def fit_predict_proba(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, *, nfilter: int = 2) -> np.ndarray:
    """Class probabilities (n_test, n_classes) for ``X_test``; ``X`` is (n, n_times, n_chans) volts."""
    pipe = xdawn_pipeline(nfilter)
    to_nct = lambda X: np.ascontiguousarray(np.transpose(X, (0, 2, 1))) * 1e6  # noqa: E731
    pipe.fit(to_nct(X_train), y_train)
    return pipe.predict_proba(to_nct(X_test))
