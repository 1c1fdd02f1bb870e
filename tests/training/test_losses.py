"""The KD loss of METHODS.md §1 against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.losses import kd_supervised, kd_unsupervised, l2_logits


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("temperature", [1.0, 5.0])
def test_kd_supervised_matches_hand_computation(temperature):
    student = np.array([[1.0, 2.0, 0.5], [0.1, -1.0, 3.0]])
    teacher = np.array([[3.0, 0.0, 1.0], [0.0, 0.5, 2.0]])
    targets = np.array([0, 2])
    p_t = _softmax(teacher / temperature)
    p_s = _softmax(student / temperature)
    kl = np.mean(np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=1))  # KL(teacher ‖ student), batch mean
    ce = np.mean(-np.log(_softmax(student)[np.arange(2), targets]))
    expected = temperature**2 / 2 * kl + 0.5 * ce
    got = kd_supervised(torch.tensor(student), torch.tensor(teacher), torch.tensor(targets), temperature)
    assert float(got) == pytest.approx(expected, rel=1e-10)
    unsup = kd_unsupervised(torch.tensor(student), torch.tensor(teacher), temperature)
    assert float(unsup) == pytest.approx(temperature**2 * kl, rel=1e-10)


def test_kd_is_zero_kl_when_student_equals_teacher():
    z = torch.tensor([[0.3, -0.2, 1.5]])
    y = torch.tensor([2])
    ce = torch.nn.functional.cross_entropy(z, y)
    assert float(kd_supervised(z, z, y, 5.0)) == pytest.approx(0.5 * float(ce), abs=1e-7)
    assert float(l2_logits(z, z)) == 0.0
