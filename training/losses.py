"""Distillation losses (METHODS.md §1).

``kd_supervised``: (T²/2)·KL(softmax(teacher/T) ‖ softmax(student/T)) + 0.5·CE(student, labels), T = 5.
``kd_unsupervised``: KL only (scaled by T² so gradients keep their size across temperatures).
``l2_logits``: the paper's ablation, L2 regression on the teacher's outputs.
KL is averaged over the batch (``batchmean``), CE is the mean over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_TEMPERATURE = 5.0
DEFAULT_CE_WEIGHT = 0.5


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(teacher/T) ‖ softmax(student/T)), averaged over the batch."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)


def kd_supervised(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = DEFAULT_TEMPERATURE,
    ce_weight: float = DEFAULT_CE_WEIGHT,
) -> torch.Tensor:
    """(T²/2)·KL(teacher ‖ student at T) + ce_weight·CE(student, targets)."""
    kl = kd_kl(student_logits, teacher_logits, temperature)
    return temperature**2 / 2 * kl + ce_weight * F.cross_entropy(student_logits, targets)


def kd_unsupervised(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE
) -> torch.Tensor:
    """T²·KL(teacher ‖ student at T): distillation without labels."""
    return temperature**2 * kd_kl(student_logits, teacher_logits, temperature)


def l2_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean squared error between student and teacher logits (ablation)."""
    return F.mse_loss(student_logits, teacher_logits)


#: Loss names as they go into the model card.
LOSSES = ("kd-supervised", "kd-unsupervised", "l2", "ce")
