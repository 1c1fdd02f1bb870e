"""EEG students. Input ``(batch, n_times, n_chans)`` float32 (layout NTC), output logits ``(batch, n_outputs)``.

Constructors take the braindecode-style signal arguments ``(n_chans, n_outputs, n_times, sfreq)`` first, then
options, so any student can be built from a model card's input spec by name through :data:`STUDENTS`.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
from torch import nn

from .errors import SettingError

log = logging.getLogger(__name__)


class CogniNetBLSTM(nn.Module):
    """CogniNet's student (METHODS.md §1): stacked bidirectional LSTM → 128-d features → linear to classes.

    The last recurrent layer's outputs (2 × ``hidden`` per step) are pooled over time and mapped to ``n_features``
    (128) by a linear layer + ELU; a linear layer gives the logits. ``pooling="mean"`` (default) averages the
    outputs over all 440 steps; ``pooling="last"`` takes the forward direction's last and the backward direction's
    first output (the classic final states). We default to the mean because it trains far better on small CPU
    budgets: on the synthetic 8-class task, 7 epochs over 1074 epochs, validation accuracy was 0.80 with "mean"
    and 0.20 with "last" (chance 0.13), which overfitted without learning the evoked responses.
    ``dropout`` (0.5) acts between recurrent layers and on the features. PyTorch's LSTM has no recurrent
    (hidden-to-hidden) dropout, so this is the usual inter-layer dropout, not the paper's recurrent dropout.
    """

    def __init__(
        self,
        n_chans: int,
        n_outputs: int,
        n_times: int,
        sfreq: float,
        *,
        n_layers: int = 2,
        hidden: int = 128,
        n_features: int = 128,
        dropout: float = 0.5,
        pooling: str = "mean",
    ) -> None:
        super().__init__()
        if pooling not in ("last", "mean"):
            raise SettingError(f"pooling must be 'last' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.n_chans, self.n_outputs, self.n_times, self.sfreq = n_chans, n_outputs, n_times, sfreq
        self.lstm = nn.LSTM(
            input_size=n_chans,
            hidden_size=hidden,
            num_layers=n_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if n_layers > 1 else 0.0,
        )
        self.hidden = hidden
        self.features_layer = nn.Linear(2 * hidden, n_features)
        self.activation = nn.ELU()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(n_features, n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 128-d features of a batch ``(batch, n_times, n_chans)``."""
        out, _ = self.lstm(x)
        if self.pooling == "mean":
            pooled = out.mean(dim=1)
        else:
            pooled = torch.cat([out[:, -1, : self.hidden], out[:, 0, self.hidden :]], dim=1)
        return self.activation(self.features_layer(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))


def _registry() -> dict[str, type[nn.Module]]:
    from .zoo import Conv1dNet, EEGImageNetLSTM, EEGNetStudent, JointEncoder, ShallowFBCSPStudent

    return {
        "cogninet-blstm": CogniNetBLSTM,
        "eegimagenet-lstm": EEGImageNetLSTM,
        "conv1d": Conv1dNet,
        "joint-encoder": JointEncoder,
        "eegnet": EEGNetStudent,
        "shallow-fbcsp": ShallowFBCSPStudent,
    }


#: Students by name (the name goes into the model card's provenance). Each is built as
#: ``cls(n_chans, n_outputs, n_times, sfreq, **options)``, reads ``(batch, n_times, n_chans)`` float32, returns
#: logits ``(batch, n_outputs)`` and has ``features(x) -> (batch, d)``, the last hidden representation (used for
#: few-shot classification of unseen classes).
#:
#: ``cogninet-blstm``
#:     :class:`CogniNetBLSTM`, 1–4 layers (``n_layers``), METHODS.md §1. The BLSTM *without a teacher* (CogniNet's
#:     "BLSTM alone" row) is not another student: it is ``train_student(..., teacher=None)`` (``loss="ce"``).
#: ``eegimagenet-lstm``
#:     :class:`training.zoo.EEGImageNetLSTM`: 1 LSTM layer (hidden 128) → FC 128 + ReLU → classes.
#: ``conv1d``
#:     :class:`training.zoo.Conv1dNet`: Conv1d + BN + ReLU + pool blocks, global average pool, linear.
#: ``joint-encoder``
#:     :class:`training.zoo.JointEncoder`: METHODS.md §2's EEG encoder (4 convs 32/64/96/128, ``rnn="lstm"|"gru"``
#:     hidden ``rnn_hidden`` 256, 128-d ``embed(x)``) with a linear classifier head.
#: ``eegnet``, ``shallow-fbcsp``
#:     braindecode's EEGNet(v4) and ShallowFBCSPNet through an NTC adapter (:mod:`training.zoo.braindecode_models`;
#:     needs braindecode, imported when built).
STUDENTS: dict[str, type[nn.Module]] = _registry()

#: Options :func:`training.fit.train_student` passes to every student (with its defaults); a student whose
#: constructor lacks one is built without it (e.g. ``n_layers`` means nothing to ``conv1d``).
TRAINING_OPTIONS = frozenset({"hidden", "n_layers", "dropout", "n_features", "pooling"})


def build_student(name: str, n_chans: int, n_outputs: int, n_times: int, sfreq: float, **options: Any) -> nn.Module:
    """Instantiate the student registered as ``name``.

    Options in :data:`TRAINING_OPTIONS` that the student's constructor does not name as parameters are dropped
    (a ``**options`` catch-all, as in the braindecode adapters, does not count);
    any other option goes to the constructor, which rejects unknown ones with ``TypeError``.

    Raises
    ------
    ValueError
        If no student has that name (the message lists those that exist).
    """
    if name not in STUDENTS:
        raise SettingError(f"unknown student {name!r}; known: {', '.join(sorted(STUDENTS))}")
    cls = STUDENTS[name]
    params = inspect.signature(cls).parameters
    unused = sorted(k for k in options if k in TRAINING_OPTIONS and k not in params)
    if unused:
        log.debug("student %s does not use the options %s", name, unused)
    kwargs = {k: v for k, v in options.items() if k not in unused}
    return cls(n_chans, n_outputs, n_times, sfreq, **kwargs)
