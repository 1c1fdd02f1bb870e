"""braindecode's EEGNet and ShallowFBCSPNet as students: a thin adapter for the NTC layout and ``features``.

braindecode models read ``(batch, n_chans, n_times)``; the adapter transposes. Each braindecode model here is an
``nn.Sequential`` whose last child is ``final_layer`` (classifier convolution + squeeze): the adapter runs the
children before it as ``body`` and ``final_layer`` as ``head``, so ``features`` is the flattened input of the
classifier. Tested with braindecode 0.8.1 (1.x imports torchaudio, whose only wheel on our index is a CUDA build
for another torch and does not load against torch 2.13.0 CPU).
"""

from __future__ import annotations

import warnings
from typing import Any, cast

import torch
from torch import nn


class _CombinedConv(nn.Module):
    """braindecode's ``CombinedConv`` (ShallowFBCSPNet's merged temporal + spatial convolution), same parameters
    and state_dict keys, with the bias computed by reshape + matmul instead of ``squeeze().mm()``: the legacy ONNX
    exporter turns the original into a ``Gemm`` on a rank-3 tensor that ONNX Runtime refuses to load."""

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        # nn.Module.__getattr__ is typed Tensor | Module; in braindecode's CombinedConv both are nn.Conv2d
        self.conv_time = cast(nn.Conv2d, original.conv_time)
        self.conv_spat = cast(nn.Conv2d, original.conv_spat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_time, w_spat = self.conv_time.weight, self.conv_spat.weight  # (Ft, 1, L, 1), (Fs, Ft, 1, C)
        weight = (w_time * w_spat.permute(1, 0, 2, 3)).sum(0).unsqueeze(1)  # (Fs, 1, L, C)
        bias = None
        if self.conv_time.bias is not None:
            bias = torch.matmul(w_spat.sum(dim=(2, 3)), self.conv_time.bias)  # (Fs,)
        if self.conv_spat.bias is not None:
            bias = self.conv_spat.bias if bias is None else bias + self.conv_spat.bias
        return nn.functional.conv2d(x, weight=weight, bias=bias)


def _exportable(module: nn.Module) -> nn.Module:
    return _CombinedConv(module) if type(module).__name__ == "CombinedConv" else module


class _BraindecodeStudent(nn.Module):
    _candidates: tuple[str, ...] = ()

    def __init__(self, n_chans: int, n_outputs: int, n_times: int, sfreq: float, **options: Any) -> None:
        super().__init__()
        self.n_chans, self.n_outputs, self.n_times, self.sfreq = n_chans, n_outputs, n_times, sfreq
        try:
            import braindecode.models as bd
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(f"{type(self).__name__} needs braindecode (the 'train' extra): {e}") from e
        cls = next((getattr(bd, n) for n in self._candidates if hasattr(bd, n)), None)
        if cls is None:  # pragma: no cover
            raise ImportError(f"braindecode {getattr(bd, '__version__', '?')} has none of {self._candidates}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # braindecode's deprecation notices about its own argument names
            model = cls(n_chans=n_chans, n_outputs=n_outputs, n_times=n_times, sfreq=sfreq, **options)
        children = dict(model.named_children())
        if "final_layer" not in children:  # pragma: no cover
            raise TypeError(f"{cls.__name__} has no 'final_layer'; the adapter cannot split off its features")
        body = [_exportable(m) for n, m in children.items() if n != "final_layer"]
        self.body = nn.Sequential(*body)
        self.head = children["final_layer"]
        self.braindecode_model = cls.__name__

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened input of braindecode's classifier layer, ``(batch, d)``."""
        return self.body(x.transpose(1, 2)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.transpose(1, 2)))


class EEGNetStudent(_BraindecodeStudent):
    """braindecode's ``EEGNet`` (``EEGNetv4`` in braindecode < 1.x). ``kernel_length`` (the temporal kernel,
    64 samples at 128 Hz in the paper) defaults to half a second at ``sfreq``, at most ``n_times``; other options
    go to braindecode unchanged (``F1``, ``D``, ``F2``, ``drop_prob``, ...)."""

    _candidates = ("EEGNet", "EEGNetv4")

    def __init__(self, n_chans: int, n_outputs: int, n_times: int, sfreq: float, **options: Any) -> None:
        options.setdefault("kernel_length", max(2, min(n_times, round(sfreq / 2))))
        super().__init__(n_chans, n_outputs, n_times, sfreq, **options)


class ShallowFBCSPStudent(_BraindecodeStudent):
    """braindecode's ``ShallowFBCSPNet`` giving logits (``add_log_softmax=False`` where that argument exists).

    Its defaults are samples at 250 Hz (temporal filter 25, pool 75, stride 15); here they default to the same
    durations at ``sfreq`` (the pool shortened to fit ``n_times``), and ``final_conv_length="auto"``.
    """

    _candidates = ("ShallowFBCSPNet",)

    def __init__(self, n_chans: int, n_outputs: int, n_times: int, sfreq: float, **options: Any) -> None:
        import inspect

        scale = sfreq / 250.0
        filt = options.setdefault("filter_time_length", max(2, min(n_times, round(25 * scale))))
        options.setdefault("pool_time_length", max(1, min(n_times - filt + 1, round(75 * scale))))
        options.setdefault("pool_time_stride", max(1, round(15 * scale)))
        options.setdefault("final_conv_length", "auto")
        try:
            from braindecode.models import ShallowFBCSPNet

            if "add_log_softmax" in inspect.signature(ShallowFBCSPNet).parameters:
                options.setdefault("add_log_softmax", False)
        except ImportError:  # pragma: no cover - the base class raises the explanatory error
            pass
        super().__init__(n_chans, n_outputs, n_times, sfreq, **options)
