"""Train the chosen student on all the given recordings and ship it with its cross-validated numbers in the card.

Used by ``bci-train crossval ... --export OUT.onnx`` (and so by ``make models`` for
``exported/n170-faces-houses.onnx``): the best student of the cross-validation (highest mean fold accuracy;
the baseline is not exportable to ONNX here) is retrained with the same recipe on every epoch (training-set
artefact rejection, normalisation from all of them), exported with parity checks, and its card records the
events and label rule (so the daemon can score it), the cross-validation split, accuracy, AUC, chance and p, the
data files' sha256, the configuration, the seed and the package versions. No time stamps: the same sources give
the same bytes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from bci_stream.card import ModelCard, OutputSpec, Preprocessing
from bci_stream.signal import fit_channel_normalization, normalize

from .crossval import CrossvalResult, StudentSpec, _train_student, reject_mask
from .provenance import package_versions
from .realdata import RealDataError, RealEpochs

log = logging.getLogger(__name__)


def best_student(result: CrossvalResult, students: list[StudentSpec]) -> StudentSpec:
    """The student with the highest mean fold accuracy (ties: the first given)."""
    by_label = {s.label: s for s in students}
    if not by_label:
        raise RealDataError("--export needs at least one student in --students")
    return max(by_label.values(), key=lambda s: result.models[s.label]["accuracy"])


def _round(v: Any) -> Any:
    return float(f"{v:.6g}") if isinstance(v, float) else v


def export_student(
    data: RealEpochs,
    result: CrossvalResult,
    spec: StudentSpec,
    out: str | Path,
    *,
    name: str,
    reject_uv: float | None,
    config: dict[str, Any],
    version: str = "1.0.0",
) -> Path:
    """Retrain ``spec`` on all of ``data`` and export it to ``out`` with its card (see the module docstring)."""
    import torch

    from .export import export_onnx

    keep = reject_mask(data.X, reject_uv)
    norm = fit_channel_normalization(data.X[keep])
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _train_student(normalize(data.X[keep], norm), data.y[keep], spec, n_classes=len(data.classes),
                               sfreq=data.input_spec.sfreq)  # fmt: skip
    finally:
        torch.set_num_threads(previous)
    m = result.models[spec.label]
    metrics = {
        "split": result.split,
        "accuracy": _round(m["accuracy"]),
        "auc": _round(m["auc"]),
        "chance": _round(result.chance),
        "p_value": _round(m["p_value"]),
        "n_trials": result.n_trials,
        "folds": [{k: _round(v) for k, v in row.items()} for row in m["folds"]],
        "others": {
            k: {"accuracy": _round(v["accuracy"]), "auc": _round(v["auc"])}
            for k, v in result.models.items()
            if k != spec.label
        },
        "warnings": result.warnings,
    }
    spec_in = data.input_spec.model_copy(update=data.rule.card_input(data.events))
    card = ModelCard(
        name=name,
        version=version,
        task="classification",
        input=spec_in,
        preprocessing=Preprocessing(
            bandpass=data.preprocessing.bandpass,
            notch=data.preprocessing.notch,
            filter=data.preprocessing.filter,
            normalization=norm,
        ),
        output=OutputSpec(name="logits", classes=list(data.classes)),
        provenance={
            # as JSON reads it back (a tuple option such as conv1d's filters becomes a list), so the card round-trips
            "student": json.loads(
                json.dumps({"name": spec.name, "augment": spec.augment, "balanced": spec.balanced, **spec.options})
            ),
            "teacher": None,
            "loss": "ce",
            "optimizer": {"name": "adam", "lr": spec.lr, "batch_size": spec.batch_size, "epochs": spec.epochs},
            "seed": spec.seed,
            "events": data.events,
            "labels": {**data.rule.describe(), "classes": list(data.classes)},
            "artefact_rejection_uv": reject_uv,
            "n_train": int(keep.sum()),
            "data": [{"file": Path(s).name, "sha256": h} for s, h in zip(data.sources, data.file_hashes, strict=True)],
            "crossval": metrics,
            "config": config,
            "packages": package_versions(),
        },
    )
    check = normalize(data.X[:4], norm).astype(np.float32)
    path = export_onnx(model, card, out, check_inputs=check)
    log.info("exported %s: %s, cross-validated accuracy %.3f (chance %.3f, p %.3g)", path, spec.label,
             m["accuracy"], result.chance, m["p_value"])  # fmt: skip
    return path
