"""ONNX Runtime sessions for carded models: provider choice, card checks, warm-up, batching.

The only module that talks to onnxruntime; its errors are translated into
:class:`~bci_stream.errors.InferenceError` and :class:`~bci_stream.errors.ModelCardError` here.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from .card import ModelCard, read_card
from .errors import InferenceError, ModelCardError

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _providers_for(choice: str) -> list[str]:
    available = ort.get_available_providers()
    if choice == "cpu":
        return [CPU]
    if choice == "cuda" and CUDA not in available:
        raise InferenceError(
            f"provider 'cuda' asked for, but this onnxruntime offers only {available}; "
            "install onnxruntime-gpu with CUDA, or use provider = 'auto'"
        )
    return [CUDA, CPU] if CUDA in available else [CPU]


class OnnxModel:
    """A model file with its card, loaded into an ONNX Runtime session.

    Parameters
    ----------
    path : str or Path
        The ``.onnx`` file; it must carry a model card.
    provider : {"auto", "cuda", "cpu"}
        ``auto`` uses CUDA when onnxruntime can actually create a CUDA session, else the CPU.
    """

    def __init__(self, path: str | Path, provider: Literal["auto", "cuda", "cpu"] = "auto") -> None:
        self.path = Path(path)
        self.card: ModelCard = read_card(self.path)
        self.sha256 = file_sha256(self.path)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # a failed CUDA attempt on a CPU machine is expected, not an error
        providers = _providers_for(provider)
        if CUDA in providers:
            # onnxruntime-gpu on a machine without CUDA logs loud errors before falling back to the CPU;
            # the fallback is expected, and we report the provider actually used below.
            ort.set_default_logger_severity(4)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own unexported exception types
            raise InferenceError(f"{self.path}: ONNX Runtime cannot load the model ({exc})") from exc
        finally:
            ort.set_default_logger_severity(2)
        self.provider = self.session.get_providers()[0]
        if provider == "cuda" and self.provider != CUDA:
            raise InferenceError(f"{self.path}: CUDA provider requested but ONNX Runtime fell back to {self.provider}")
        log.info("model %s %s on %s", self.card.name, self.card.version, self.provider)
        self._check_card()

    @property
    def classes(self) -> list[str]:
        return self.card.output.classes

    @property
    def n_inputs_per_step(self) -> int:
        """Values per time step: channels for epoch models, channels × bands for band-power valence models."""
        spec = self.card.input
        if spec.features is not None:
            return len(spec.channels) * len(spec.features.bands)
        return len(spec.channels)

    def _check_card(self) -> None:
        card = self.card
        inputs = {i.name: i for i in self.session.get_inputs()}
        if card.input.name not in inputs:
            raise ModelCardError(
                f"{self.path}: card input {card.input.name!r} is not a model input (model has {sorted(inputs)})"
            )
        shape = inputs[card.input.name].shape
        per_step = self.n_inputs_per_step
        expected = (
            [None, card.input.n_times, per_step] if card.input.layout == "NTC" else [None, per_step, card.input.n_times]
        )
        if card.task == "valence":
            expected[1 if card.input.layout == "NTC" else 2] = None  # any context length
        if len(shape) != 3 or any(
            isinstance(s, int) and e is not None and s != e for s, e in zip(shape, expected, strict=False)
        ):
            raise ModelCardError(
                f"{self.path}: model input {card.input.name!r} has shape {shape}, but the card says "
                f"{card.input.layout} with n_times={card.input.n_times} and {per_step} values per step"
            )
        outputs = {o.name: o for o in self.session.get_outputs()}
        if card.output.name not in outputs:
            raise ModelCardError(
                f"{self.path}: card output {card.output.name!r} is not a model output (model has {sorted(outputs)})"
            )
        out_shape = outputs[card.output.name].shape
        if (
            card.task == "classification"
            and isinstance(out_shape[-1], int)
            and out_shape[-1] != len(card.output.classes)
        ):
            raise ModelCardError(
                f"{self.path}: model outputs {out_shape[-1]} values but the card lists "
                f"{len(card.output.classes)} classes"
            )

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run a batch shaped (N, n_times, values per step) (always NTC here); returns the output array."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        if self.card.input.layout == "NCT":
            x = np.ascontiguousarray(x.transpose(0, 2, 1))
        try:
            (out,) = self.session.run([self.card.output.name], {self.card.input.name: x})
        except Exception as exc:
            raise InferenceError(f"{self.path}: inference failed on a batch of shape {batch.shape} ({exc})") from exc
        return np.asarray(out)

    def warm_up(self, repeats: int = 3) -> float:
        """Run zeros through the model (first runs allocate); returns the last run's time in ms."""
        x = np.zeros((1, self.card.input.n_times, self.n_inputs_per_step), dtype=np.float32)
        elapsed = 0.0
        for _ in range(repeats):
            t = time.perf_counter()
            self.run(x)
            elapsed = (time.perf_counter() - t) * 1e3
        return elapsed
