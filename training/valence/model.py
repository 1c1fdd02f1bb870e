"""The causal TCN student and the valence losses (METHODS.md §4). Torch.

CCC normalisation: **population** (1/N) variances and covariance, in the loss here and in every metric
(:func:`training.valence.metrics.ccc`); ``CCC = 2·cov(x, y) / (var x + var y + (mean x − mean y)²)``.

L1 term: by default the L1 *distance* between the teacher's and the student's per-step feature vectors
(``Σ_d |t_d − s_d|``), averaged over steps (``l1_reduction="sum"``); ``"mean"`` divides it by the feature width
(``torch.nn.L1Loss``'s convention), which makes λ = 1 a 128× weaker pull. See :func:`valence_loss`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SettingError

#: METHODS.md §4 student.
DEFAULT_CHANNELS = (128, 128)
DEFAULT_KERNEL = 3
DEFAULT_DILATIONS = (1, 2)
DEFAULT_DROPOUT = 0.1


class CausalConv1d(nn.Module):
    """1-D convolution over time that sees only the present and the past (left padding ``(k − 1)·d``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (batch, channels, steps)
        return self.conv(F.pad(x, (self.pad, 0)))


class TemporalBlock(nn.Module):
    """Bai et al.'s TCN block: two causal convolutions (ReLU, dropout) and a residual (1×1 when widths differ)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = CausalConv1d(in_channels, out_channels, kernel_size, dilation)
        self.conv2 = CausalConv1d(out_channels, out_channels, kernel_size, dilation)
        self.dropout = nn.Dropout(dropout)
        self.residual = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dropout(torch.relu(self.conv1(x)))
        h = self.dropout(torch.relu(self.conv2(h)))
        return torch.relu(h + self.residual(x))


class ValenceTCN(nn.Module):
    """Causal TCN over feature sequences ``(batch, steps, n_features)`` → valence per step ``(batch, steps)``.

    ``forward`` returns ``(valence, features)`` with ``features`` the last block's per-step output
    ``(batch, steps, channels[-1])`` (128-d by default), the representation distilled from the teacher.
    Receptive field: ``1 + 2·(kernel − 1)·Σ dilations`` steps (13 steps = 3.25 s at 4 Hz by default).
    """

    def __init__(
        self,
        n_features: int,
        *,
        channels: Sequence[int] = DEFAULT_CHANNELS,
        kernel_size: int = DEFAULT_KERNEL,
        dilations: Sequence[int] = DEFAULT_DILATIONS,
        dropout: float = DEFAULT_DROPOUT,
    ) -> None:
        super().__init__()
        if len(channels) != len(dilations):
            raise SettingError(f"channels {list(channels)} and dilations {list(dilations)} must have the same length")
        self.n_features = n_features
        self.channels = list(channels)
        self.kernel_size = kernel_size
        self.dilations = list(dilations)
        blocks = []
        width = n_features
        for c, d in zip(channels, dilations, strict=True):
            blocks.append(TemporalBlock(width, c, kernel_size, d, dropout))
            width = c
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(width, 1)

    @property
    def receptive_field(self) -> int:
        return 1 + 2 * (self.kernel_size - 1) * sum(self.dilations)

    @property
    def feature_dim(self) -> int:
        return self.channels[-1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.blocks(x.transpose(1, 2)).transpose(1, 2)  # (batch, steps, channels[-1])
        return self.head(h).squeeze(-1), h


def ccc(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Concordance correlation of all (masked) elements of ``x`` and ``y`` pooled, population (1/N) moments."""
    if mask is None:
        mask = torch.ones_like(x)
    w = mask / mask.sum().clamp_min(1.0)
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cov = (w * (x - mx) * (y - my)).sum()
    return 2 * cov / (vx + vy + (mx - my) ** 2).clamp_min(1e-12)


def valence_loss(
    prediction: torch.Tensor,
    labels: torch.Tensor,
    student_features: torch.Tensor,
    teacher_features: torch.Tensor | None,
    kd_weight: float,
    mask: torch.Tensor | None = None,
    l1_reduction: str = "sum",
) -> tuple[torch.Tensor, dict[str, float]]:
    """``(1 − CCC)(labels, prediction) + kd_weight · L1(teacher, student features)``; λ = 0 is no teacher.

    CCC is pooled over every (unmasked) step of the batch. L1 per step is ``Σ_d |t_d − s_d|`` over the feature
    dimensions (``l1_reduction="sum"``, the L1 distance of the two vectors) or its mean (``"mean"``), then
    averaged over the (unmasked) steps. Returns the loss and its parts (floats) for logging.
    """
    c = ccc(prediction, labels, mask)
    loss = 1 - c
    parts = {"ccc": float(c.detach())}
    if kd_weight > 0:
        if teacher_features is None:
            raise ValueError("kd_weight > 0 needs teacher features")
        if l1_reduction not in ("sum", "mean"):
            raise SettingError(f"l1_reduction must be 'sum' or 'mean', got {l1_reduction!r}")
        diff = (teacher_features - student_features).abs()
        diff = diff.sum(dim=-1) if l1_reduction == "sum" else diff.mean(dim=-1)
        l1 = diff.mean() if mask is None else (diff * mask).sum() / mask.sum().clamp_min(1.0)
        loss = loss + kd_weight * l1
        parts["l1"] = float(l1.detach())
    parts["loss"] = float(loss.detach())
    return loss, parts
