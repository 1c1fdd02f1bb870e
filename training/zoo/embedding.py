"""Embedding students (METHODS.md §2, §3): EEG epoch ``(batch, n_times, n_chans)`` → ``dim``-d unit vector.

Every class takes ``(n_chans, dim, n_times, sfreq, **options)``, returns L2-normalised embeddings from ``forward``
(also ``features``) and has ``logit_scale``, the learnable log inverse temperature of InfoNCE (the card's
``output.temperature`` is ``exp(-logit_scale)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .joint import JointEncoder


class _Embedder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encode(x)
        # x / sqrt(sum x² + eps): same as F.normalize, spelled so the ONNX graph is plain arithmetic
        return z / torch.sqrt((z * z).sum(dim=1, keepdim=True) + 1e-12)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    @property
    def temperature(self) -> float:
        return float(torch.exp(-self.logit_scale.detach().clamp(max=4.6052)))


class JointEmbedder(_Embedder):
    """§2's EEG encoder (:class:`training.zoo.JointEncoder`: 4 convs → LSTM/GRU → linear), its ``embed`` normalised."""

    def __init__(self, n_chans: int, dim: int, n_times: int, sfreq: float, **options: object) -> None:
        super().__init__()
        self.n_chans, self.dim, self.n_times, self.sfreq = n_chans, dim, n_times, sfreq
        self.encoder = JointEncoder(n_chans, 2, n_times, sfreq, embedding=dim, **options)  # type: ignore[arg-type]
        del self.encoder.classifier  # unused: the embedding is the output

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.embed(x)


class _ResidualProjector(nn.Module):
    """NICE's projector: x + Dropout(Linear(GELU(x))), then LayerNorm."""

    def __init__(self, dim: int, dropout: float) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.GELU(), nn.Linear(dim, dim), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.mlp(x))


class NiceEncoder(_Embedder):
    """NICE-style (Song et al. 2023): temporal conv (1 × ``kernel``) → average pool over time → spatial conv over
    all channels (``filters``) → BN + ELU → flatten → linear to ``dim`` → residual MLP projector."""

    def __init__(
        self, n_chans: int, dim: int, n_times: int, sfreq: float, *, filters: int = 40, kernel: int = 25,
        pool: int = 4, dropout: float = 0.3,
    ) -> None:  # fmt: skip
        super().__init__()
        self.n_chans, self.dim, self.n_times, self.sfreq = n_chans, dim, n_times, sfreq
        kernel = min(kernel, n_times)
        self.temporal = nn.Conv2d(1, filters, (1, kernel))
        self.pool = nn.AvgPool2d((1, pool), (1, pool))
        self.spatial = nn.Conv2d(filters, filters, (n_chans, 1))
        self.bn = nn.BatchNorm2d(filters)
        self.act = nn.ELU()
        self.drop = nn.Dropout(dropout)
        n_steps = (n_times - kernel + 1) // pool
        self.linear = nn.Linear(filters * n_steps, dim)
        self.projector = _ResidualProjector(dim, dropout)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2).unsqueeze(1)  # (batch, 1, chans, times)
        h = self.drop(self.act(self.bn(self.spatial(self.pool(self.temporal(h))))))
        return self.projector(self.linear(h.flatten(1)))


def stft_kernels(n_fft: int) -> torch.Tensor:
    """Hann-windowed cosine and sine kernels ``(2·(n_fft//2+1), 1, n_fft)``: a strided conv1d with them is the
    real and imaginary part of the short-time Fourier transform (one-sided bins 0 … n_fft/2)."""
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    freqs = np.arange(n_fft // 2 + 1)[:, None]
    phase = 2 * np.pi * freqs * n[None, :] / n_fft
    kernels = np.concatenate([window * np.cos(phase), -window * np.sin(phase)])
    return torch.from_numpy(kernels[:, None, :].astype(np.float32))


class SpectrogramCNN(_Embedder):
    """§3's spectrogram student: per-channel log-power STFT inside the model (a conv1d with fixed Hann cos/sin
    kernels, ``n_fft`` samples, ``hop``; so ONNX Runtime computes it as PyTorch does, offline and live) → 2-D CNN
    over (frequency, frame) with the channels as input planes → global average pool → linear to ``dim``."""

    kernels: torch.Tensor  # a buffer (register_buffer)

    def __init__(
        self, n_chans: int, dim: int, n_times: int, sfreq: float, *, n_fft: int = 32, hop: int = 8,
        filters: tuple[int, ...] = (32, 64),
    ) -> None:  # fmt: skip
        super().__init__()
        self.n_chans, self.dim, self.n_times, self.sfreq = n_chans, dim, n_times, sfreq
        self.n_fft, self.hop, self.n_freqs = min(n_fft, n_times), hop, min(n_fft, n_times) // 2 + 1
        self.register_buffer("kernels", stft_kernels(self.n_fft))
        layers: list[nn.Module] = []
        n_in = n_chans
        for n_out in filters:
            layers += [nn.Conv2d(n_in, n_out, 3, padding=1), nn.BatchNorm2d(n_out), nn.ReLU()]
            n_in = n_out
        self.cnn = nn.Sequential(*layers)
        self.linear = nn.Linear(n_in, dim)

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """log(power + 1e-6) ``(batch, n_chans, n_freqs, n_frames)`` of ``x`` ``(batch, n_times, n_chans)``."""
        batch = x.shape[0]
        flat = x.transpose(1, 2).reshape(batch * self.n_chans, 1, self.n_times)
        spec = F.conv1d(flat, self.kernels, stride=self.hop)  # (batch·chans, 2·freqs, frames)
        re, im = spec[:, : self.n_freqs], spec[:, self.n_freqs :]
        power = torch.log(re * re + im * im + 1e-6)
        return power.reshape(batch, self.n_chans, self.n_freqs, -1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(self.spectrogram(x)).mean(dim=(2, 3)))


#: Embedding students by name: ``cls(n_chans, dim, n_times, sfreq, **options)``.
EMBEDDERS: dict[str, Callable[..., _Embedder]] = {
    "joint-encoder": JointEmbedder,
    "nice": NiceEncoder,
    "spectrogram-cnn": SpectrogramCNN,
}
