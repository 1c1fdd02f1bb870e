"""Per-epoch inference time of an exported student: ONNX Runtime (CPU) against PyTorch eager, batch 1."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bci_stream.card import read_card
from bci_stream.errors import ModelCardError


def _median_ms(fn: Any, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def inference_speed(
    onnx_path: str | Path, *, runs: int = 50, warmup: int = 5, threads: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """Median milliseconds to classify one epoch (batch 1) with ONNX Runtime (CPU) and with PyTorch eager.

    The PyTorch model is rebuilt from the card's provenance (student name and options) with the same shapes;
    its weights are random, which does not change the time an LSTM takes. ``threads`` sets the intra-op
    threads of both (default: each library's own default).

    Returns a dict: ``onnxruntime_ms``, ``torch_ms``, ``speedup`` (torch / ORT), ``runs``, ``threads``,
    ``model_bytes``, ``input_shape``.
    """
    import onnxruntime as ort
    import torch

    from .students import build_student

    path = Path(onnx_path)
    card = read_card(path)
    shape = (1, card.input.n_times, len(card.input.channels))
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {card.input.name: x}
    ort_ms = _median_ms(lambda: session.run(None, feed), runs, warmup)

    spec = card.provenance.get("student")
    if not isinstance(spec, dict) or "name" not in spec:
        raise ModelCardError(f"{path}: the card's provenance does not name the student; cannot rebuild it in PyTorch")
    options = {k: v for k, v in spec.items() if k != "name"}
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(seed)
        model = build_student(
            str(spec["name"]), len(card.input.channels), len(card.output.classes), card.input.n_times,
            card.input.sfreq, **options,
        ).eval()  # fmt: skip
        xt = torch.from_numpy(x)

        def run_torch() -> None:
            with torch.no_grad():
                model(xt)

        torch_ms = _median_ms(run_torch, runs, warmup)
    finally:
        torch.set_num_threads(previous)
    return {
        "onnxruntime_ms": round(ort_ms, 3),
        "torch_ms": round(torch_ms, 3),
        "speedup": round(torch_ms / ort_ms, 2),
        "runs": runs,
        "threads": threads if threads is not None else "default",
        "model_bytes": path.stat().st_size,
        "input_shape": list(shape),
    }
