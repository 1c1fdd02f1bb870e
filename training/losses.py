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


# ------------------------------------------------------------------------------------- embedding objectives
# (METHODS.md §2 and §3). Embeddings are unit vectors, so dot product = cosine similarity.


def compatibility_hinge(
    eeg: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 0.2,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """The siamese hinge of §2: mean of max(0, margin − eeg·positive + eeg·negative).

    ``eeg`` (batch, d): EEG embeddings; ``positive``: the embedding of the image each epoch was recorded with;
    ``negative``: an image of another class; ``weight`` (batch,) 0/1 masks rows whose negative is not valid.
    """
    compat_pos = (eeg * positive).sum(dim=1)
    compat_neg = (eeg * negative).sum(dim=1)
    hinge = F.relu(margin - compat_pos + compat_neg)
    if weight is None:
        return hinge.mean()
    return (hinge * weight).sum() / weight.sum().clamp(min=1.0)


def symmetric_infonce(eeg: torch.Tensor, images: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP/NICE-style symmetric InfoNCE: cross-entropy of exp(logit_scale)·eeg·imagesᵀ both ways, row i ↔ i.

    ``logit_scale`` is the learnable log inverse temperature (clamped to ≤ log 100 as in CLIP). Repeats of the
    same image in one batch count as negatives of each other (as in NICE); with few images that adds noise only.
    """
    scale = logit_scale.clamp(max=4.6052).exp()
    logits = scale * eeg @ images.T
    target = torch.arange(len(eeg), device=eeg.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


#: Embedding objectives by name (as they go into the card's provenance).
EMBEDDING_LOSSES = ("hinge", "infonce")
