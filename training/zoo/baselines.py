"""The baselines CogniNet compares against (METHODS.md §1): the EEG-ImageNet LSTM and a 1-D convolutional net."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._blocks import conv_stack


class EEGImageNetLSTM(nn.Module):
    """The EEG-ImageNet LSTM baseline (Spampinato et al. 2017): one LSTM layer (``hidden`` 128) read at its last
    step → fully connected ``n_features`` (128) + ReLU (the features) → linear to classes."""

    def __init__(
        self, n_chans: int, n_outputs: int, n_times: int, sfreq: float, *, hidden: int = 128, n_features: int = 128
    ) -> None:
        super().__init__()
        self.n_chans, self.n_outputs, self.n_times, self.sfreq = n_chans, n_outputs, n_times, sfreq
        self.lstm = nn.LSTM(input_size=n_chans, hidden_size=hidden, num_layers=1, batch_first=True)
        self.fc = nn.Linear(hidden, n_features)
        self.activation = nn.ReLU()
        self.classifier = nn.Linear(n_features, n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The ``n_features``-d ReLU features of a batch ``(batch, n_times, n_chans)``."""
        out, _ = self.lstm(x)
        return self.activation(self.fc(out[:, -1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Conv1dNet(nn.Module):
    """A 1-D convolutional baseline: Conv1d(``kernel_size``, same padding) + BatchNorm + ReLU + max-pool(2) blocks
    over time with ``filters`` channels (32, 64, 128), global average pool over time (the features, last entry of
    ``filters`` wide), dropout, linear to classes. Pooling stops when the sequence is shorter than 2 steps."""

    def __init__(
        self,
        n_chans: int,
        n_outputs: int,
        n_times: int,
        sfreq: float,
        *,
        filters: Sequence[int] = (32, 64, 128),
        kernel_size: int = 7,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.n_chans, self.n_outputs, self.n_times, self.sfreq = n_chans, n_outputs, n_times, sfreq
        self.convs = conv_stack(n_chans, filters, kernel_size, n_times)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(filters[-1], n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled activations of the last block, ``(batch, filters[-1])``."""
        return self.convs(x.transpose(1, 2)).mean(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))
