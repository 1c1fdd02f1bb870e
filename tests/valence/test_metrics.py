"""CCC (population normalisation, the same in the torch loss and the numpy metrics), Pearson r, RMSE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.valence.metrics import all_metrics, ccc, pearson, pooled_metrics, rmse
from training.valence.model import ccc as torch_ccc
from training.valence.model import valence_loss


def test_ccc_hand_computed() -> None:
    # x = 1 2 3, y = 2 4 6: means 2, 4; var 2/3, 8/3 (1/N); cov 4/3 → 2·4/3 / (2/3 + 8/3 + 4) = 8/22
    assert ccc(np.array([1.0, 2, 3]), np.array([2.0, 4, 6])) == pytest.approx(8 / 22, abs=1e-12)
    # equal means and variances 1.25, cov 0.75 → CCC = r = 0.6
    x, y = np.array([1.0, 2, 3, 4]), np.array([2.0, 1, 4, 3])
    assert ccc(x, y) == pytest.approx(0.6, abs=1e-12)
    assert pearson(x, y) == pytest.approx(0.6, abs=1e-12)
    # a pure offset: r = 1 but CCC = 2·1.25 / (2.5 + 1) (population variances)
    assert ccc(x, x + 1) == pytest.approx(2.5 / 3.5, abs=1e-12)
    assert rmse(x, x + 1) == pytest.approx(1.0)


def test_ccc_uses_the_population_normalisation() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(7), rng.standard_normal(7) + 0.3
    cov = np.cov(x, y, ddof=0)[0, 1]
    expected = 2 * cov / (x.var(ddof=0) + y.var(ddof=0) + (x.mean() - y.mean()) ** 2)
    assert ccc(x, y) == pytest.approx(expected, abs=1e-12)
    sample = 2 * np.cov(x, y, ddof=1)[0, 1] / (x.var(ddof=1) + y.var(ddof=1) + (x.mean() - y.mean()) ** 2)
    assert abs(ccc(x, y) - sample) > 1e-3  # the choice matters, and it is 1/N


def test_ccc_identical_and_mirrored() -> None:
    x = np.array([0.3, 1.2, -0.7, 2.0, 0.1])
    assert ccc(x, x) == pytest.approx(1.0, abs=1e-12)
    assert ccc(x, 2 * x.mean() - x) == pytest.approx(-1.0, abs=1e-12)  # mirrored about its mean
    z = x - x.mean()
    assert ccc(z, -z) == pytest.approx(-1.0, abs=1e-12)


def test_torch_ccc_equals_numpy_ccc_with_and_without_mask() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((3, 20)), rng.standard_normal((3, 20)) * 2 + 1
    got = float(torch_ccc(torch.tensor(x), torch.tensor(y)))
    assert got == pytest.approx(ccc(x, y), abs=1e-10)
    mask = (rng.random((3, 20)) > 0.3).astype(np.float64)
    got = float(torch_ccc(torch.tensor(x), torch.tensor(y), torch.tensor(mask)))
    assert got == pytest.approx(ccc(x[mask > 0], y[mask > 0]), abs=1e-10)


def test_loss_is_one_minus_ccc_plus_lambda_l1() -> None:
    pred = torch.tensor([[0.1, 0.5, 0.9]])
    label = torch.tensor([[0.0, 0.5, 1.0]])
    s_feat = torch.zeros(1, 3, 4)
    t_feat = torch.full((1, 3, 4), 0.5)
    loss0, parts0 = valence_loss(pred, label, s_feat, None, 0.0)
    assert float(loss0) == pytest.approx(1 - ccc(label.numpy(), pred.numpy()), abs=1e-6)
    assert "l1" not in parts0
    loss1, parts1 = valence_loss(pred, label, s_feat, t_feat, 2.0)  # per-step L1 distance: 4 dims x 0.5
    assert parts1["l1"] == pytest.approx(2.0)
    assert float(loss1) == pytest.approx(float(loss0) + 2.0 * 2.0, abs=1e-6)
    loss2, parts2 = valence_loss(pred, label, s_feat, t_feat, 2.0, l1_reduction="mean")
    assert parts2["l1"] == pytest.approx(0.5)
    assert float(loss2) == pytest.approx(float(loss0) + 2.0 * 0.5, abs=1e-6)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    t_masked = t_feat.clone()
    t_masked[0, 2] = 100.0  # a padded step does not count
    _, parts3 = valence_loss(pred, label, s_feat, t_masked, 1.0, mask)
    assert parts3["l1"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="teacher"):
        valence_loss(pred, label, s_feat, None, 1.0)


def test_metrics_dicts_and_undefined_values() -> None:
    m = all_metrics(np.array([1.0, 2.0]), np.array([1.0, 2.0]))
    assert m == {"ccc": 1.0, "r": 1.0, "rmse": 0.0}
    assert np.isnan(pearson(np.ones(4), np.arange(4.0)))  # constant series: r undefined
    pooled = pooled_metrics([np.array([1.0, 2.0]), np.array([3.0])], [np.array([1.0, 2.0]), np.array([3.0])])
    assert pooled["ccc"] == pytest.approx(1.0)
