"""Export a trained student to ONNX with its model card, and prove ONNX Runtime computes what PyTorch computes."""

from __future__ import annotations

import logging
import os
import warnings
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
