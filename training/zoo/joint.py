"""The EEG encoder of the joint brain–visual embedding (METHODS.md §2), with a linear head to train it alone."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import SettingError
from ._blocks import conv_stack


class JointEncoder(nn.Module):
    """Four 1-D convolutions (``filters`` 32/64/96/128, kernel ``kernel_size``, BatchNorm, ReLU, max-pool 2 while
    the sequence allows) → one ``rnn`` ("lstm" or "gru", hidden ``rnn_hidden`` 256) read at its last step →
    linear to the ``embedding``-d (128) joint-space embedding; a linear classifier on the embedding gives logits.

    :meth:`embed` is the encoder of the siamese model (compatibility = dot product with an image embedding);
    :meth:`features` is the same embedding. The RNN width is ``rnn_hidden``, not ``hidden``, so the training
    option ``hidden`` (the BLSTM's, default 128) does not shrink it.
    """

    def __init__(
        self,
        n_chans: int,
        n_outputs: int,
        n_times: int,
        sfreq: float,
        *,
        rnn: str = "lstm",
        rnn_hidden: int = 256,
        embedding: int = 128,
        filters: Sequence[int] = (32, 64, 96, 128),
        kernel_size: int = 5,
    ) -> None:
        super().__init__()
        if rnn not in ("lstm", "gru"):
            raise SettingError(f"rnn must be 'lstm' or 'gru', got {rnn!r}")
        self.n_chans, self.n_outputs, self.n_times, self.sfreq = n_chans, n_outputs, n_times, sfreq
        self.convs = conv_stack(n_chans, filters, kernel_size, n_times)
        rnn_cls = nn.LSTM if rnn == "lstm" else nn.GRU
        self.rnn = rnn_cls(input_size=filters[-1], hidden_size=rnn_hidden, num_layers=1, batch_first=True)
        self.project = nn.Linear(rnn_hidden, embedding)
        self.classifier = nn.Linear(embedding, n_outputs)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The joint-space embedding ``(batch, embedding)`` of a batch ``(batch, n_times, n_chans)``."""
        h = self.convs(x.transpose(1, 2)).transpose(1, 2)  # (batch, steps, filters[-1])
        out, _ = self.rnn(h)
        return self.project(out[:, -1])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`embed`."""
        return self.embed(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
