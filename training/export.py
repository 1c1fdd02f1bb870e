"""Export a trained student to ONNX with its model card, and prove ONNX Runtime computes what PyTorch computes."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bci_stream.card import ModelCard, read_card, write_card
from bci_stream.errors import BciStreamError

log = logging.getLogger(__name__)

#: Largest |ONNX Runtime − PyTorch| accepted on the logits at export time.
PARITY_ATOL = 1e-4
OPSET = 17


class ExportError(BciStreamError):
    """The exported model does not reproduce PyTorch's output, or its card did not survive the round trip."""


def _input_shape(card: ModelCard, batch: int) -> tuple[int, int, int]:
    n_t, n_c = card.input.n_times, len(card.input.channels)
    return (batch, n_t, n_c) if card.input.layout == "NTC" else (batch, n_c, n_t)


def export_onnx(
    model: Any,
    card: ModelCard,
    path: str | Path,
    *,
    check_inputs: np.ndarray | None = None,
    atol: float = PARITY_ATOL,
    opset: int = OPSET,
) -> Path:
    """Write ``model`` to ``path`` as ONNX (input ``card.input.name``, output ``card.output.name``, dynamic batch),
    store ``card`` in it, and check it.

    The exporter is the TorchScript one (``dynamo=False``): it writes a plain ONNX ``LSTM`` node in about a second.
    (The torch.export-based exporter also works for these students, parity 3e-8, but takes ~45 s on 2 cores.)
    The checks: ONNX Runtime (CPU) on ``check_inputs`` (default: 4 random normalised epochs) and on a single epoch
    gives the PyTorch eager logits within ``atol``, and :func:`bci_stream.card.read_card` returns ``card``.
    The file is written atomically: on any failure nothing is left at ``path``.

    Raises
    ------
    ExportError
        If the outputs differ by more than ``atol`` (the message gives the difference) or the card differs.
    """
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    rng = np.random.default_rng(0)
    if check_inputs is None:
        check_inputs = rng.standard_normal(_input_shape(card, 4)).astype(np.float32)
    check_inputs = np.asarray(check_inputs, dtype=np.float32)
    dummy = torch.from_numpy(rng.standard_normal(_input_shape(card, 2)).astype(np.float32))
    in_name, out_name = card.input.name, card.output.name

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same folder: os.replace is atomic
    try:
        # The exporters' warnings (tracer, LSTM batch size, deprecation of the TorchScript path) concern cases
        # the parity check below covers: batch 1 and batch > 1 through ONNX Runtime.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (dummy,),
                str(tmp),
                input_names=[in_name],
                output_names=[out_name],
                dynamic_axes={in_name: {0: "batch"}, out_name: {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        write_card(tmp, card)
        _check(model, tmp, card, check_inputs, atol)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s (%.1f kB)", path, path.stat().st_size / 1024)
    return path


def _check(model: Any, path: Path, card: ModelCard, inputs: np.ndarray, atol: float) -> None:
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    if names != ([card.input.name], [card.output.name]):
        raise ExportError(
            f"{path}: ONNX inputs/outputs are {names}, the card says {card.input.name}/{card.output.name}"
        )
    worst = 0.0
    for batch in (inputs, inputs[:1]):
        with torch.no_grad():
            expected = model(torch.from_numpy(batch)).numpy()
        got = session.run([card.output.name], {card.input.name: batch})[0]
        if got.shape != expected.shape:
            raise ExportError(f"{path}: ONNX Runtime gives shape {got.shape}, PyTorch {expected.shape}")
        worst = max(worst, float(np.max(np.abs(got - expected))))
    if not worst <= atol:
        raise ExportError(
            f"{path}: ONNX Runtime and PyTorch disagree: max |difference| of logits {worst:.3g} > {atol:g}"
        )
    back = read_card(path)
    if back != card:
        raise ExportError(f"{path}: the model card read back differs from the one written")
    log.info("parity ONNX Runtime vs PyTorch: max |diff| %.2g (limit %g); card round-trips", worst, atol)


# ------------------------------------------------------------------------------------------ int8 quantisation

#: Smallest top-1 agreement with the float model for the int8 model to be kept (``--min-agreement``).
MIN_AGREEMENT = 0.98


@dataclass
class QuantizationReport:
    """What :func:`quantize_if_agrees` measured and decided; ``record()`` is what goes into the cards.

    ``agreement`` is the fraction of held-out epochs whose top-1 class is the same for both models; accuracies are
    top-1 against the labels (None without labels), with ``chance_level`` the majority-class share of those labels.
    """

    kept: bool
    path: Path | None
    agreement: float
    min_agreement: float
    n_epochs: int
    float_accuracy: float | None
    int8_accuracy: float | None
    chance_level: float | None
    held_out: str
    float_kb: float
    int8_kb: float

    def record(self) -> dict[str, Any]:
        return {
            "method": "onnxruntime.quantization.quantize_dynamic (int8 weights, QInt8; activations quantised at run "
            "time)",
            "kept": self.kept,
            "file": self.path.name if self.path is not None else None,
            "top1_agreement": round(self.agreement, 6),
            "min_agreement": self.min_agreement,
            "n_epochs": self.n_epochs,
            "float_accuracy": None if self.float_accuracy is None else round(self.float_accuracy, 6),
            "int8_accuracy": None if self.int8_accuracy is None else round(self.int8_accuracy, 6),
            "chance_level": None if self.chance_level is None else round(self.chance_level, 6),
            "held_out": self.held_out,
            "size_kb": {"float": round(self.float_kb, 1), "int8": round(self.int8_kb, 1)},
        }


def _top1(path: Path, card: ModelCard, inputs: np.ndarray, batch: int = 64) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out = [
        session.run([card.output.name], {card.input.name: inputs[i : i + batch]})[0]
        for i in range(0, len(inputs), batch)
    ]
    return np.concatenate(out).argmax(axis=1)


def quantize_if_agrees(
    float_path: str | Path,
    inputs: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    out: str | Path | None = None,
    min_agreement: float = MIN_AGREEMENT,
    held_out: str = "",
) -> QuantizationReport:
    """Quantise an exported model's weights to int8 and keep it only when it agrees with the float model.

    Parameters
    ----------
    float_path : path
        An exported, carded float model (from :func:`export_onnx`).
    inputs : ndarray (n, ...)
        Held-out model inputs, exactly as the daemon feeds the model (normalised, float32, card layout): never
        epochs the model was trained or selected on.
    labels : ndarray (n,) of int, optional
        Class indices (output order) of ``inputs``, for both accuracies; -1 marks an epoch without a label.
    out : path, optional
        Where the int8 model goes; default ``NAME.int8.onnx`` beside ``float_path``.
    min_agreement : float
        Keep the int8 model only when at least this fraction of ``inputs`` get the same top-1 class.
    held_out : str
        Names the held-out set in the cards (files, split).

    Returns
    -------
    QuantizationReport
        Also written, as ``provenance.quantization``, into the float model's card and (when kept) the int8 one's.
        A model that does not agree is deleted, as is an older file at ``out``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    float_path = Path(float_path)
    out = Path(out) if out is not None else float_path.with_name(f"{float_path.stem}.int8.onnx")
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    if len(inputs) == 0:
        raise ExportError(f"{float_path}: no held-out epochs to check the int8 model on")
    if not 0 < min_agreement <= 1:
        raise ExportError(f"min_agreement {min_agreement!r} must be in (0, 1]")
    card = read_card(float_path)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        quantize_dynamic(str(float_path), str(tmp), weight_type=QuantType.QInt8)
        float_top1, int8_top1 = _top1(float_path, card, inputs), _top1(tmp, card, inputs)
        agreement = float(np.mean(float_top1 == int8_top1))
        accuracies: list[float | None] = [None, None]
        chance = None
        if labels is not None:
            y = np.asarray(labels)
            known = y >= 0
            if known.any():
                accuracies = [float(np.mean(p[known] == y[known])) for p in (float_top1, int8_top1)]
                chance = float(np.bincount(y[known]).max() / known.sum())
        kept = agreement >= min_agreement
        report = QuantizationReport(
            kept, out if kept else None, agreement, min_agreement, len(inputs), accuracies[0], accuracies[1],
            chance, held_out, float_path.stat().st_size / 1024, tmp.stat().st_size / 1024,
        )  # fmt: skip
        record = {**card.provenance, "quantization": report.record()}
        if kept:
            write_card(tmp, card.model_copy(update={"provenance": record}))
            os.replace(tmp, out)
        elif out.exists():
            out.unlink()  # an int8 model of an earlier export would no longer match the float one
        write_card(float_path, card.model_copy(update={"provenance": record}))
    finally:
        tmp.unlink(missing_ok=True)
    log.info(
        "int8 model %s: top-1 agreement %.4f (min %.2f) on %d held-out epochs; accuracy float %s, int8 %s",
        "kept" if kept else "rejected", agreement, min_agreement, len(inputs), accuracies[0], accuracies[1],
    )  # fmt: skip
    return report


def held_out_set(card: ModelCard, recordings: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and class indices of held-out recordings, cut and normalised exactly as the daemon does.

    Uses the card's ``provenance.events`` and ``provenance.labels`` (regex and classes in output order, as
    training writes them); an epoch whose label is not one of the classes gets -1 (counted for agreement only).
    """
    import re

    from bci_stream.pipeline import epochs_from_recording
    from bci_stream.signal import normalize

    prov = card.provenance
    raw_labels, raw_events = prov.get("labels"), prov.get("events")
    labels: dict[str, Any] = raw_labels if isinstance(raw_labels, dict) else {}
    regex, classes = labels.get("regex"), list(labels.get("classes") or [])
    events = raw_events if isinstance(raw_events, str) else None
    xs, ys = [], []
    for rec in recordings:
        es = epochs_from_recording(rec, card.input, card.preprocessing, events=events)
        x = normalize(es.X, card.preprocessing.normalization).astype(np.float32)
        xs.append(np.ascontiguousarray(x.transpose(0, 2, 1)) if card.input.layout == "NCT" else x)
        for m in es.markers:
            found = re.search(regex, m.value) if regex else None
            label = found.group("label") if found else None
            ys.append(classes.index(label) if label in classes else -1)
    return np.concatenate(xs), np.asarray(ys, dtype=np.int64)


def quantize_with_recordings(
    float_path: str | Path, recordings: list[str | Path], *, min_agreement: float = MIN_AGREEMENT
) -> QuantizationReport:
    """``bci-train export --quantize``: :func:`quantize_if_agrees` on held-out recordings named by the user.

    The recordings must not have been used to train or select the model (the card names them under
    ``provenance.quantization.held_out``, so a reader can check).
    """
    from bci_stream.recordings import read_recording

    if not recordings:
        raise BciStreamError("--quantize needs held-out recordings: add --held-out REC [REC ...]")
    card = read_card(float_path)
    x, y = held_out_set(card, [read_recording(p) for p in recordings])
    names = ", ".join(Path(p).name for p in recordings)
    return quantize_if_agrees(float_path, x, y, min_agreement=min_agreement, held_out=f"recordings: {names}")
