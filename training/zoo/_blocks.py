"""Shared pieces: a Conv1d + BatchNorm + ReLU (+ max-pool) stack over time."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def conv_stack(n_in: int, filters: Sequence[int], kernel_size: int, n_times: int, pool: int = 2) -> nn.Sequential:
    """Conv1d(same padding) + BN + ReLU per entry of ``filters``, each followed by ``MaxPool1d(pool)`` while the
    sequence is still at least ``pool`` long (so short epochs never pool down to zero steps)."""
    layers: list[nn.Module] = []
    length = n_times
    for n_out in filters:
        layers += [
            nn.Conv1d(n_in, n_out, kernel_size, padding=kernel_size // 2),
            nn.BatchNorm1d(n_out),
            nn.ReLU(),
        ]
        length = length + 2 * (kernel_size // 2) - kernel_size + 1
        if pool > 1 and length >= pool:
            layers.append(nn.MaxPool1d(pool))
            length //= pool
        n_in = n_out
    return nn.Sequential(*layers)
